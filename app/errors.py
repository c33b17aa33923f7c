"""Every error leaves the service as RFC 9457 problem+json, mapped here once.

One rule: the body names the field and the reason; domain packages raise HTTP-free errors.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap

from geo.errors import Conflict, InvalidField, NotFound
from geo.fences import InvalidGeometry

log = logging.getLogger("contexto")

PROBLEM_JSON = "application/problem+json"


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] = msgspec.field(default_factory=list)


class TooManyRequests(Exception):
    def __init__(self, retry_after_seconds: int, detail: str) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


def problem(status: int, detail: str, errors: list[FieldError] | None = None,
            headers: dict[str, str] | None = None) -> Response[bytes]:
    phrase = HTTPStatus(status).phrase
    body = Problem(
        type=f"https://contexto.dev/problems/{phrase.lower().replace(' ', '-')}",
        title=phrase, status=status, detail=detail, errors=errors or [],
    )
    return Response(
        content=msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON,
        headers=headers,
    )


_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)


def json_path_to_field(path: str) -> str:
    """`$.pings[3].lat` → `pings[3].lat`; `$` → `body`."""
    field = path.removeprefix("$").removeprefix(".")
    return field or "body"


_NAMED = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*): (?P<message>.+)$", re.DOTALL)
# msgspec reports an unknown or missing field at the object holding it; the field is named.
_UNKNOWN = re.compile(r"^Object (?:contains unknown|missing required) field `(?P<name>[^`]+)`$")


def decode_error_fields(message: str) -> list[FieldError]:
    """Turn a msgspec decode error text into a field error.

    Cross-field checks (`__post_init__`) are reported by msgspec at their struct's path; they
    start their message with `field: ` to name the field inside it.
    """
    match = _AT_PATH.match(message.strip())
    if not match:
        return [FieldError("body", message)]
    path = match.group("path")
    field = json_path_to_field(path) if path else "body"
    text = match.group("message")
    unknown = _UNKNOWN.match(text)
    named = _NAMED.match(text)
    if unknown:
        inner = unknown.group("name")
        field = inner if field == "body" else f"{field}.{inner}"
    elif named:
        inner = named.group("name")
        field = inner if field == "body" else f"{field}.{inner}"
        text = named.group("message")
    return [FieldError(field, text)]


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    errors: list[FieldError] = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(item, dict):
            continue
        key = item.get("key")
        message = str(item.get("message", ""))
        if key is None and " - at `$" in message:  # a strict decode error keeps its own path
            errors.extend(decode_error_fields(message))
            continue
        path = "$" if key in (None, "data") else "$." + str(key).removeprefix("data.")
        errors.extend(decode_error_fields(f"{message} - at `{path}`"))
    if not errors:
        errors = [FieldError("body", exc.detail)]
    return problem(400, "the request is invalid: " + "; ".join(
        f"{e.field}: {e.message}" for e in errors), errors)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = exc.detail
    if status == 404 and detail == "Not Found":
        detail = f"no such resource: {request.url.path}"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    elif status == 413:
        detail = "the request body is larger than the limit"
    headers = {k: v for k, v in (exc.headers or {}).items()} if exc.headers else None
    errors = [FieldError("body", detail)] if status == 400 else None
    return problem(status, detail, errors, headers=headers)


def _not_authorized(request: Request[Any, Any, Any],
                    exc: NotAuthorizedException) -> Response[bytes]:
    return problem(401, exc.detail, headers={"WWW-Authenticate": "Bearer"})


def _forbidden(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[bytes]:
    return problem(403, exc.detail)


def _not_found(request: Request[Any, Any, Any], exc: NotFound) -> Response[bytes]:
    return problem(404, str(exc))


def _conflict(request: Request[Any, Any, Any], exc: Conflict) -> Response[bytes]:
    return problem(409, str(exc))


def _invalid_field(request: Request[Any, Any, Any], exc: InvalidField) -> Response[bytes]:
    return problem(400, f"{exc.field}: {exc.message}", [FieldError(exc.field, exc.message)])


def _invalid_geometry(request: Request[Any, Any, Any], exc: InvalidGeometry) -> Response[bytes]:
    return problem(400, f"{exc.field}: {exc.message}", [FieldError(exc.field, exc.message)])


def _too_many(request: Request[Any, Any, Any], exc: TooManyRequests) -> Response[bytes]:
    return problem(429, str(exc), headers={"Retry-After": str(exc.retry_after_seconds)})


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "an internal error occurred; it has been logged")


def exception_handlers() -> ExceptionHandlersMap:
    return {
        ValidationException: _validation,
        NotAuthorizedException: _not_authorized,
        PermissionDeniedException: _forbidden,
        HTTPException: _http,
        NotFound: _not_found,
        Conflict: _conflict,
        InvalidField: _invalid_field,
        InvalidGeometry: _invalid_geometry,
        TooManyRequests: _too_many,
        Exception: _unexpected,
    }


def invalid_field_of(exc: msgspec.ValidationError) -> InvalidField:
    """A msgspec validation error (with its `$.path`) as a domain `InvalidField`."""
    (error,) = decode_error_fields(str(exc))
    return InvalidField(error.field, error.message)
