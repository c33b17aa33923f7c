"""What FCM's HTTP v1 send API accepts: the message schema and the rules beyond its shape.

It owns `validate_send_request`, which the emulator (campaigns/fcm_emulator.py) answers with.
One rule: refuse exactly what FCM refuses, naming each field as FCM's `google.rpc.BadRequest`
field violations do; accept everything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

import msgspec

PAYLOAD_LIMIT_BYTES = 4096
# FCM keeps a message for at most four weeks.
MAX_TTL_SECONDS = 2_419_200


# ---------------------------------------------------------------------------------------------
# What FCM accepts. A schema maps each field (snake_case; camelCase is accepted too, as proto3
# JSON does) to its kind: a nested schema, or one of the leaf kinds checked by `_check_leaf`.
# ---------------------------------------------------------------------------------------------
Leaf = Literal["string", "bool", "int", "number", "string_map", "string_list", "object", "any_list"]
Schema: TypeAlias = Mapping[str, "Leaf | Schema"]

_COLOR: Schema = {"red": "number", "green": "number", "blue": "number", "alpha": "number"}
_LIGHT_SETTINGS: Schema = {
    "color": _COLOR, "light_on_duration": "string", "light_off_duration": "string",
}
_ANDROID_NOTIFICATION: Schema = {
    "title": "string", "body": "string", "icon": "string", "color": "string", "sound": "string",
    "tag": "string", "click_action": "string", "body_loc_key": "string",
    "body_loc_args": "string_list", "title_loc_key": "string", "title_loc_args": "string_list",
    "channel_id": "string", "ticker": "string", "sticky": "bool", "event_time": "string",
    "local_only": "bool", "notification_priority": "string", "default_sound": "bool",
    "default_vibrate_timings": "bool", "default_light_settings": "bool",
    "vibrate_timings": "string_list", "visibility": "string", "notification_count": "int",
    "light_settings": _LIGHT_SETTINGS, "image": "string", "bypass_proxy_notification": "bool",
    "proxy": "string",
}
_ANDROID: Schema = {
    "collapse_key": "string", "priority": "string", "ttl": "string",
    "restricted_package_name": "string", "data": "string_map",
    "notification": _ANDROID_NOTIFICATION, "fcm_options": {"analytics_label": "string"},
    "direct_boot_ok": "bool", "bandwidth_constrained_ok": "bool",
    "restricted_satellite_ok": "bool",
}
_APNS: Schema = {
    "headers": "string_map", "payload": "object", "live_activity_token": "string",
    "fcm_options": {"analytics_label": "string", "image": "string"},
}
_WEBPUSH: Schema = {
    "headers": "string_map", "data": "string_map", "notification": "object",
    "fcm_options": {"link": "string", "analytics_label": "string"},
}
_MESSAGE: Schema = {
    "name": "string", "data": "string_map",
    "notification": {"title": "string", "body": "string", "image": "string"},
    "android": _ANDROID, "webpush": _WEBPUSH, "apns": _APNS,
    "fcm_options": {"analytics_label": "string"},
    "token": "string", "topic": "string", "condition": "string", "fid": "string",
}
TARGETS = ("token", "topic", "condition", "fid")

_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
_TOPIC = re.compile(r"^[A-Za-z0-9\-_.~%]+$")
_URL_SAFE_BASE64 = re.compile(r"^[A-Za-z0-9\-_]+$")
_RESERVED_DATA_KEY = re.compile(r"^(from|notification|message_type|google\..*|gcm\..*)$")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


class Violation(msgspec.Struct, frozen=True):
    """One reason FCM would refuse a message, in `google.rpc.BadRequest.FieldViolation` form."""

    field: str
    description: str


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _check_leaf(kind: Leaf, value: Any, path: str) -> list[Violation]:
    ok: bool
    match kind:
        case "string":
            ok = isinstance(value, str)
        case "bool":
            ok = isinstance(value, bool)
        case "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        case "number":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        case "object":
            ok = isinstance(value, dict)
        case "any_list":
            ok = isinstance(value, list)
        case "string_list":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        case "string_map":
            if not isinstance(value, dict):
                return [Violation(path, "Invalid value: expected a map of string to string.")]
            return [
                Violation(f"{path}[{key!r}]", "Invalid value: map values must be strings.")
                for key, item in value.items() if not isinstance(item, str)
            ]
    return [] if ok else [Violation(path, f"Invalid value at '{path}': expected {kind}.")]


def _check_shape(schema: Schema, value: Any, path: str) -> list[Violation]:
    if not isinstance(value, dict):
        return [Violation(path, f"Invalid value at '{path}': expected an object.")]
    violations: list[Violation] = []
    for key, item in value.items():
        kind = schema.get(_snake(key))
        child = f"{path}.{key}"
        if kind is None:
            violations.append(Violation(
                path, f"Invalid JSON payload received. Unknown name \"{key}\" at '{path}': "
                      "Cannot find field."))
        elif isinstance(kind, str):
            violations.extend(_check_leaf(kind, item, child))
        else:
            violations.extend(_check_shape(kind, item, child))
    return violations


def snake_keys(value: dict[str, Any]) -> dict[str, Any]:
    return {_snake(k): v for k, v in value.items()}


def _check_headers(headers: Mapping[str, str], path: str,
                   rules: Mapping[str, Callable[[str], bool]]) -> list[Violation]:
    # Header names are case-insensitive on the wire, so the rules are looked up in lower case.
    return [
        Violation(f"{path}[{name!r}]", f"Invalid value for header {name}: {value!r}.")
        for name, value in headers.items()
        if (rule := rules.get(name.lower())) is not None and not rule(value)
    ]


_APNS_HEADER_RULES: Mapping[str, Callable[[str], bool]] = {
    "apns-expiration": str.isdigit,
    "apns-priority": lambda v: v in {"1", "5", "10"},
    "apns-collapse-id": lambda v: 0 < len(v.encode()) <= 64,
    "apns-push-type": lambda v: v in {
        "alert", "background", "location", "voip", "complication", "fileprovider", "mdm",
        "liveactivity", "pushtotalk"},
}
_WEBPUSH_HEADER_RULES: Mapping[str, Callable[[str], bool]] = {
    "ttl": str.isdigit,
    "urgency": lambda v: v in {"very-low", "low", "normal", "high"},
    "topic": lambda v: len(v) <= 32 and _URL_SAFE_BASE64.match(v) is not None,
}


def _check_semantics(message: dict[str, Any]) -> list[Violation]:
    """The rules beyond shape; runs only on a message whose shape is already right."""
    violations: list[Violation] = []
    fields = snake_keys(message)

    targets = [t for t in TARGETS if t in fields]
    if len(targets) != 1:
        violations.append(Violation(
            "message", "Exactly one of token, topic, condition or fid must be specified; "
                       f"got {len(targets)}."))
    for target in targets:
        if not fields[target]:
            violations.append(Violation(f"message.{target}", f"The {target} must not be empty."))
    if "topic" in fields and fields["topic"] and not _TOPIC.match(fields["topic"]):
        violations.append(Violation("message.topic", "Malformed topic name."))

    data: dict[str, str] = fields.get("data", {})
    violations.extend(
        Violation(f"message.data[{key!r}]", f"Invalid data key {key!r}: the name is reserved.")
        for key in data if _RESERVED_DATA_KEY.match(key)
    )
    size = len(msgspec.json.encode({"notification": fields.get("notification", {}), "data": data}))
    if size > PAYLOAD_LIMIT_BYTES:
        violations.append(Violation(
            "message", f"Message is too big: {size} bytes of payload, the limit is "
                       f"{PAYLOAD_LIMIT_BYTES}."))

    android = snake_keys(fields.get("android", {}))
    if "ttl" in android:
        ttl = android["ttl"]
        if not _DURATION.match(ttl):
            violations.append(Violation(
                "message.android.ttl", f"Invalid value at 'message.android.ttl' ({ttl!r}): "
                                       "expected a non-negative duration like \"3.5s\"."))
        elif float(ttl[:-1]) > MAX_TTL_SECONDS:
            violations.append(Violation("message.android.ttl", "TTL exceeds four weeks."))
    if "priority" in android and android["priority"].upper() not in {"NORMAL", "HIGH"}:
        violations.append(Violation("message.android.priority", "Invalid priority."))

    apns = snake_keys(fields.get("apns", {}))
    violations.extend(_check_headers(apns.get("headers", {}), "message.apns.headers",
                                     _APNS_HEADER_RULES))
    webpush = snake_keys(fields.get("webpush", {}))
    violations.extend(_check_headers(webpush.get("headers", {}), "message.webpush.headers",
                                     _WEBPUSH_HEADER_RULES))
    return violations


def validate_send_request(body: Any) -> list[Violation]:
    """Every reason FCM would answer 400 INVALID_ARGUMENT to this request body; empty if none."""
    violations = _check_shape({"message": "object", "validate_only": "bool"}, body, "")
    if violations:
        return violations
    if "message" not in body:
        return [Violation("message", "Required field message is missing.")]
    violations = _check_shape(_MESSAGE, body["message"], "message")
    return violations or _check_semantics(body["message"])
