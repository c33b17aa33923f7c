"""Request bodies are decoded strictly: `"48.85"` is not a number here.

litestar converts bodies with msgspec's lax mode (strings accepted as numbers and booleans), which
a public API must not do: an app that sends `"lat": "48.85"` has a bug that should be reported,
not guessed around. This hook decodes the raw body once, strictly, against the handler's `data`
type before litestar does; litestar's own conversion then only ever sees valid bodies.

One rule: the same msgspec error, with its `$.path`, becomes the same 400 as any other
validation error.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException


@cache
def _decoder(annotation: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(annotation)


async def strict_body(request: Request[Any, Any, Any]) -> None:
    handler = request.route_handler
    field = handler.parsed_fn_signature.parameters.get("data")
    if field is None or request.headers.get("content-type", "").split(";")[0].strip() not in (
        "", "application/json",
    ):
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
        raise ValidationException(detail=f"the body is not valid JSON: {exc}") from exc
