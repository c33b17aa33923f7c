"""The OpenAPI document's error side: every problem+json status an operation can answer.

The error mapping (`app.errors`) answers the same way on every route, so what a route can answer
follows from what the route is: one that needs a token can answer 401 and 403, one that takes
input 400, one that reads a body 413, one that names an id (in its path or query) 404, one that
writes 409, one with a device budget 429 with `Retry-After`. `ProblemResponses` declares those
on every operation as the routes are registered, so a route added later is documented like the
others; `DocumentedOperation` adds what litestar's response specs cannot say (headers, and which
operations need the bearer token at all); `StrictStructSchemas` says which bodies refuse unknown
fields.

One rule: a status is declared from the facts of the route, never by hand on a handler; a handler
declares only what is its own (readyz's 503, a CSV body).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from litestar._openapi.schema_generation import SchemaCreator
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.constants import RESERVED_KWARGS
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.typing import FieldDefinition

from app.errors import PROBLEM_JSON, Problem

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BEARER = "bearer"

_WHEN = {
    400: "The input is malformed or breaks a rule; `errors` names each field and the reason.",
    401: "The bearer token is missing, unknown or revoked.",
    403: "The caller's role may not do this.",
    404: "No such id, or one outside the caller's scope.",
    409: "The request is valid but conflicts with the current state.",
    413: "The body is larger than the limit.",
    429: "Too many requests from this device; retry after `Retry-After` seconds.",
}


def problem_response(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=Problem, media_type=PROBLEM_JSON,
                        description=description, generate_examples=False)


def _parameters(handler: HTTPRouteHandler) -> list[FieldDefinition]:
    """What the caller passes in the path or the query (not injected, not the body)."""
    dependencies = handler.resolve_dependencies()
    return [field for name, field in handler.parsed_fn_signature.parameters.items()
            if name not in dependencies and name not in RESERVED_KWARGS]


def _names_an_id(field: FieldDefinition) -> bool:
    return field.is_subclass_of(UUID) or field.has_inner_subclass_of(UUID)


def _in_path(handler: HTTPRouteHandler) -> bool:
    """A path parameter names a resource (a uuid, or a customer id), which may not exist."""
    return any("{" in path for path in handler.paths)


def _reads_body(handler: HTTPRouteHandler) -> bool:
    return ("data" in handler.parsed_fn_signature.parameters
            or issubclass(handler.operation_class, RawBodyOperation))


def statuses_of(handler: HTTPRouteHandler) -> list[int]:
    """The error statuses the route can answer, from what it is."""
    public = bool(handler.opt.get("public"))
    roles: frozenset[str] = handler.opt.get("roles", frozenset())
    body = _reads_body(handler)
    parameters = _parameters(handler)
    found = {
        400: body or bool(parameters),
        401: not public,
        403: not public,
        # A path parameter or an id in the query may be unknown or out of scope; a device's own
        # routes look the device up again, and one erased meanwhile is not found.
        404: _in_path(handler) or any(map(_names_an_id, parameters)) or "device" in roles,
        409: bool(WRITES & handler.http_methods) and not public,
        413: body,
        429: bool(handler.opt.get("budget")),
    }
    return [status for status, answers in found.items() if answers]


class ProblemResponses(ReceiveRoutePlugin):
    """Declares the problem+json responses of every documented route as it is registered."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            own = dict(handler.responses or {})
            declared = {status: problem_response(_WHEN[status])
                        for status in statuses_of(handler)}
            # Handlers are copied when registered, so this changes this app's copy only.
            handler.responses = {**declared, **own}
            if handler.operation_class is Operation:
                handler.operation_class = DocumentedOperation
            elif not issubclass(handler.operation_class, DocumentedOperation):
                raise TypeError(f"{handler.handler_name}: an operation_class must derive from "
                                "DocumentedOperation so its error responses stay documented")


_HEADERS = {
    "429": {"Retry-After": OpenAPIHeader(
        schema=Schema(type=OpenAPIType.INTEGER, minimum=1), required=True,
        description="Seconds to wait before sending again.")},
    "401": {"WWW-Authenticate": OpenAPIHeader(
        schema=Schema(type=OpenAPIType.STRING), required=True,
        description="`Bearer`: the scheme the service expects.")},
}


@dataclass
class DocumentedOperation(Operation):
    """An operation whose error responses carry their headers, and that asks for the bearer
    token exactly when it can answer 401."""

    def __post_init__(self) -> None:
        responses: dict[str, Any] = dict(self.responses or {})
        for status, headers in _HEADERS.items():
            if status in responses:
                responses[status].headers = {**(responses[status].headers or {}), **headers}
        self.security = [{BEARER: []}] if "401" in responses else []


@dataclass
class RawBodyOperation(DocumentedOperation):
    """An operation whose handler reads its body itself, in `media_type` (not JSON)."""

    media_type = "application/octet-stream"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.request_body = RequestBody(required=True, content={
            self.media_type: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
        })


@dataclass
class CsvBodyOperation(RawBodyOperation):
    media_type = "text/csv"


class StrictStructSchemas(StructSchemaPlugin):
    """Struct schemas that say what the decoder does: a body struct with
    `forbid_unknown_fields` refuses unknown fields, so its schema has `additionalProperties:
    false` (litestar's own struct schemas leave objects open, which tells clients and fuzzers
    that a typo passes)."""

    def to_openapi_schema(self, field_definition: FieldDefinition,
                          schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if isinstance(info, msgspec.inspect.StructType) and info.forbid_unknown_fields:
            schema.additional_properties = False
        return schema
