"""Requests are read strictly: `"48.85"` is not a number here, and no text holds NUL.

litestar converts bodies with msgspec's lax mode (strings accepted as numbers and booleans), which
a public API must not do: an app that sends `"lat": "48.85"` has a bug that should be reported,
not guessed around. This hook decodes the raw body once, strictly, against the handler's `data`
type before litestar does; litestar's own conversion then only ever sees valid bodies.

NUL (U+0000) is valid JSON (`"\\u0000"`) and valid in a query string (`%00`), but PostgreSQL
cannot store it in text: a NUL would reach the database and fail there. No text of this API has
a use for it, so it is refused at the edge, in the body and in the query alike.

One rule: the same msgspec error, with its `$.path`, becomes the same 400 as any other
validation error; a NUL is a 400 naming the field that holds it; a body that is not JSON at all is
named at the value where it stops being JSON (`NaN` and `Infinity` are not JSON numbers, so
`{"lat": NaN}` names `lat`).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.exceptions import ValidationException
from litestar.params import BodyKwarg
from litestar.typing import FieldDefinition

from geo.errors import InvalidField

NUL = "\x00"
NO_NUL = "must not contain NUL (U+0000)"


@cache
def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(annotation)


def _json_body(field: FieldDefinition) -> bool:
    """litestar reads a JSON `data` whatever the Content-Type says, so it is decoded strictly
    whatever it says too (a `text/plain` label must not be a way around the checks)."""
    body = field.kwarg_definition
    return not isinstance(body, BodyKwarg) or body.media_type == RequestEncodingType.JSON


def nul_at(value: Any, path: str = "") -> str | None:
    """The field path (`signals[0].attributes`) of the first text holding NUL, or None."""
    if isinstance(value, str):
        return (path or "body") if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            if NUL in str(key):
                return path or "body"
            found = nul_at(item, inner)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_at(item, f"{path}[{index}]" if path else f"[{index}]")
            if found:
                return found
    return None


def refuse_nul_in_query(request: Request[Any, Any, Any]) -> None:
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            raise InvalidField(name.replace(NUL, "\\u0000"), NO_NUL)


async def strict_body(request: Request[Any, Any, Any]) -> None:
    refuse_nul_in_query(request)
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None or not _json_body(field):
        return
    body = await request.body()
    try:
        _decoder(field.annotation).decode(body)
    except msgspec.ValidationError as exc:
        raise ValidationException(
            detail="the request is invalid",
            extra=[{"message": str(exc), "key": None, "source": "body"}],
        ) from exc
    except msgspec.DecodeError as exc:
        raise ValidationException(
            detail="the body is not valid JSON",
            extra=[{"message": malformed(body, str(exc)), "key": None, "source": "body"}],
        ) from exc
    # JSON can carry NUL only as the escape `\u0000`; the walk runs only when that is there.
    if b"\\u0000" in body:
        found = nul_at(msgspec.json.decode(body))
        if found:
            raise InvalidField(found, NO_NUL)


_AT_BYTE = re.compile(r"\(byte (\d+)\)")
_NOT_JSON_NUMBERS = (b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"+Infinity")


def malformed(body: bytes, error: str) -> str:
    """msgspec's decode error as `reason - at `$.path``, the path of the value it stopped at."""
    found = _AT_BYTE.search(error)
    if found is None or not body.strip():
        return f"the body is not valid JSON: {error}"
    offset = int(found.group(1))
    reason = f"not valid JSON: {error.removeprefix('JSON is malformed: ')}"
    word = next((w for w in _NOT_JSON_NUMBERS if body.startswith(w, offset)), None)
    if word is not None:
        reason = f"{word.decode()} is not a JSON number (JSON has no NaN or Infinity)"
    return f"{reason} - at `{json_path_at(body, offset)}`"


def json_path_at(text: bytes, offset: int) -> str:
    """The `$.a[1].b` path of the value being read at `offset` of a JSON text valid before it.

    A small scanner of the prefix: it tracks the open objects (with the last key read) and
    arrays (with the element index); strings are skipped whole so their brackets do not count.
    """
    frames: list[list[Any]] = []  # ["{", key, reading_key] or ["[", index]
    i = 0
    while i < min(offset, len(text)):
        c = text[i:i + 1]
        if c == b'"':
            end = i + 1
            while end < len(text) and text[end:end + 1] != b'"':
                end += 2 if text[end:end + 1] == b"\\" else 1
            if frames and frames[-1][0] == "{" and frames[-1][2]:
                try:
                    frames[-1][1] = msgspec.json.decode(text[i:end + 1], type=str)
                except msgspec.DecodeError:
                    frames[-1][1] = text[i + 1:end].decode("utf-8", "replace")
            i = end + 1
            continue
        if c == b"{":
            frames.append(["{", None, True])
        elif c == b"[":
            frames.append(["[", 0])
        elif c in (b"}", b"]") and frames:
            frames.pop()
        elif c == b":" and frames and frames[-1][0] == "{":
            frames[-1][2] = False
        elif c == b"," and frames:
            if frames[-1][0] == "[":
                frames[-1][1] += 1
            else:
                frames[-1][2] = True
        i += 1
    path = "$"
    for frame in frames:
        if frame[0] == "[":
            path += f"[{frame[1]}]"
        elif frame[1] is not None and not frame[2]:
            path += f".{frame[1]}"
    return path
