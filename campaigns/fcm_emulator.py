"""A local stand-in for the FCM HTTP v1 send API, so the service and its tests never talk to Google.

It owns the emulated endpoint `POST /v1/projects/{project}/messages:send`, the inspection endpoints
under `/emulator/` (messages kept, faults injected) and `run_emulator`, which serves it in-process.

One rule: answer exactly as FCM would — same validation, same status codes, same JSON error body
(`google.rpc.Status` with a `google.firebase.fcm.v1.FcmError` detail) — so that the real
firebase-admin client, pointed here, raises the same exception classes it raises in production.

    python -m campaigns.fcm_emulator --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import socket
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeAlias

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, delete, get, post
from litestar.datastructures import State
from msgspec import Meta

PAYLOAD_LIMIT_BYTES = 4096
# FCM keeps a message for at most four weeks.
MAX_TTL_SECONDS = 2_419_200

_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"

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
_TARGETS = ("token", "topic", "condition", "fid")

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


def _snake_keys(value: dict[str, Any]) -> dict[str, Any]:
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
    fields = _snake_keys(message)

    targets = [t for t in _TARGETS if t in fields]
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

    android = _snake_keys(fields.get("android", {}))
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

    apns = _snake_keys(fields.get("apns", {}))
    violations.extend(_check_headers(apns.get("headers", {}), "message.apns.headers",
                                     _APNS_HEADER_RULES))
    webpush = _snake_keys(fields.get("webpush", {}))
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


# ---------------------------------------------------------------------------------------------
# Errors in FCM's own format.
# ---------------------------------------------------------------------------------------------
_STATUS_OF_HTTP = {
    400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
    503: "UNAVAILABLE",
}


def fcm_error(http_status: int, fcm_code: str, message: str,
              violations: list[Violation] | None = None,
              retry_after: float | None = None) -> Response[bytes]:
    """An error response shaped as FCM sends it (google.rpc.Status with an FcmError detail)."""
    details: list[dict[str, Any]] = [{"@type": _FCM_ERROR_TYPE, "errorCode": fcm_code}]
    if violations:
        details.append({
            "@type": _BAD_REQUEST_TYPE,
            "fieldViolations": [{"field": v.field, "description": v.description}
                                for v in violations],
        })
    body = {"error": {"code": http_status, "message": message,
                      "status": _STATUS_OF_HTTP[http_status], "details": details}}
    headers = {} if retry_after is None else {"Retry-After": _retry_after_header(retry_after)}
    return Response(msgspec.json.encode(body), status_code=http_status,
                    media_type="application/json", headers=headers)


def _retry_after_header(seconds: float) -> str:
    # HTTP allows only whole seconds in Retry-After; round up so a client never comes back early.
    whole = int(seconds)
    return str(whole if whole == seconds else whole + 1)


_FAULTS: dict[int, tuple[str, str]] = {
    429: ("QUOTA_EXCEEDED", "Quota exceeded for quota metric 'Send requests'."),
    500: ("INTERNAL", "Internal error encountered."),
    503: ("UNAVAILABLE", "The service is currently unavailable."),
}


# ---------------------------------------------------------------------------------------------
# The emulator's state and routes.
# ---------------------------------------------------------------------------------------------
class ReceivedMessage(msgspec.Struct, frozen=True):
    received_at: datetime
    project: str
    message: dict[str, Any]


class ReceivedMessages(msgspec.Struct, frozen=True):
    messages: list[ReceivedMessage]


class FaultRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    status: Literal[429, 500, 503]
    count: Annotated[int, Meta(ge=0, le=1_000_000)] = 1
    retry_after: Annotated[float, Meta(ge=0)] | None = None


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None


@dataclass
class EmulatorState:
    """What the emulator has received and the faults still to inject, in arrival order."""

    messages: list[ReceivedMessage] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_fault(self) -> _Fault | None:
        while self.faults and self.faults[0].remaining <= 0:
            self.faults.pop(0)
        if not self.faults:
            return None
        self.faults[0].remaining -= 1
        return self.faults[0]


def _state(request: Request[Any, Any, State]) -> EmulatorState:
    emulator: EmulatorState = request.app.state.emulator
    return emulator


@post("/v1/projects/{project:str}/messages:send", status_code=200, operation_id="send")
async def send(request: Request[Any, Any, State], project: str) -> Response[bytes]:
    """Validate and keep one message, as FCM's `projects.messages.send` does."""
    state = _state(request)
    fault = state.next_fault()
    if fault is not None:
        code, text = _FAULTS[fault.status]
        return fcm_error(fault.status, code, text, retry_after=fault.retry_after)

    try:
        body = msgspec.json.decode(await request.body())
    except msgspec.DecodeError as exc:
        return fcm_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}")
    violations = validate_send_request(body)
    if violations:
        return fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                         violations)

    message: dict[str, Any] = body["message"]
    fields = _snake_keys(message)
    target_kind = next(t for t in _TARGETS if t in fields)
    target: str = fields[target_kind]
    if target_kind in {"token", "fid"}:
        if target.startswith("unregistered-"):
            return fcm_error(404, "UNREGISTERED", "Requested entity was not found.")
        if target.startswith("invalid-"):
            noun = "registration token" if target_kind == "token" else "installation ID"
            return fcm_error(
                400, "INVALID_ARGUMENT", f"The {noun} is not a valid FCM {noun}",
                [Violation(f"message.{target_kind}", f"Invalid {noun}")])

    if body.get("validate_only"):
        # FCM answers a dry run with this fixed name and delivers nothing.
        return _json({"name": f"projects/{project}/messages/fake_message_id"})
    name = f"projects/{project}/messages/0:{next(state.ids)}%emulator"
    state.messages.append(ReceivedMessage(datetime.now(UTC), project, message))
    return _json({"name": name})


def _json(body: Any, status_code: int = 200) -> Response[bytes]:
    return Response(msgspec.json.encode(body), status_code=status_code,
                    media_type="application/json")


@get("/emulator/messages", operation_id="listMessages")
async def list_messages(request: Request[Any, Any, State]) -> ReceivedMessages:
    """Every message received since the last clear, oldest first."""
    return ReceivedMessages(list(_state(request).messages))


@delete("/emulator/messages", operation_id="clearMessages")
async def clear_messages(request: Request[Any, Any, State]) -> None:
    """Forget every message received."""
    _state(request).messages.clear()


@post("/emulator/faults", status_code=204, operation_id="injectFaults")
async def inject_faults(request: Request[Any, Any, State], data: FaultRequest) -> None:
    """Make the next `count` sends fail with `status` (after any faults already queued)."""
    _state(request).faults.append(_Fault(data.status, data.count, data.retry_after))


@delete("/emulator/faults", operation_id="clearFaults")
async def clear_faults(request: Request[Any, Any, State]) -> None:
    """Drop every fault still queued (not in the contract; lets a test start clean)."""
    _state(request).faults.clear()


def create_emulator_app() -> Litestar:
    """A fresh emulator with nothing received and no faults queued."""
    return Litestar(
        route_handlers=[send, list_messages, clear_messages, inject_faults, clear_faults],
        state=State({"emulator": EmulatorState()}),
        openapi_config=None,
        # Served inside the service or a test run: leave the host process's logging alone.
        logging_config=None,
    )


# ---------------------------------------------------------------------------------------------
# Serving it.
# ---------------------------------------------------------------------------------------------
class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the host process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def run_emulator(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve a fresh emulator on this event loop; yields its base URL (`http://host:port`).

    Port 0 picks a free port; the URL carries the real one.
    """
    # Binding the socket ourselves tells us the real port before uvicorn starts.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it every response waits ~40 ms for Nagle and delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    real_port: int = sock.getsockname()[1]
    config = uvicorn.Config(create_emulator_app(), log_level="warning", access_log=False,
                            lifespan="off")
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # re-raises why it could not start
                raise RuntimeError("the FCM emulator stopped before it started")
            await asyncio.sleep(0.005)
        url_host = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{url_host}:{real_port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local FCM HTTP v1 emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    uvicorn.run(create_emulator_app(), host=args.host, port=args.port, log_level="info",
                lifespan="off")


if __name__ == "__main__":
    main()
