"""A local stand-in for the FCM HTTP v1 send API, so the service and its tests never talk to Google.

It owns the emulated endpoint `POST /v1/projects/{project}/messages:send`, the inspection endpoints
under `/emulator/` and `run_emulator`, which serves it in-process:
- `GET|DELETE /emulator/messages`: the messages accepted (DELETE also forgets the attempts);
- `GET /emulator/attempts`: every send request, accepted or refused, with its arrival time, the
  status answered, the `Retry-After` given and the message (for checking how a client retries);
- `POST /emulator/faults {"status": 429|500|503, "count": n, "retry_after"?: seconds}`: the next
  n sends fail that way; `DELETE /emulator/faults` drops queued faults and the latency;
- `POST /emulator/latency {"delay_ms": n}`: every send is answered n ms after it arrives (a slow
  FCM). The message is judged and kept on arrival, so a client that dies while waiting for the
  answer has delivered it without knowing — the case a resend must collapse.

One rule: answer exactly as FCM would — same validation (campaigns/fcm_validation.py), same
status codes, same JSON error body (`google.rpc.Status` with a `google.firebase.fcm.v1.FcmError`
detail) — so that the real firebase-admin client, pointed here, raises the same exception classes
it raises in production.

    python -m campaigns.fcm_emulator --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, delete, get, post
from litestar.datastructures import State
from msgspec import Meta

from campaigns.fcm_validation import TARGETS, Violation, snake_keys, validate_send_request

_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


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


class Attempt(msgspec.Struct, frozen=True):
    """One send request as it arrived, and what it was answered."""

    received_at: datetime
    project: str
    status: int
    retry_after: float | None  # the whole seconds the Retry-After header said
    message: dict[str, Any] | None  # None when the body was not a JSON object with a message


class Attempts(msgspec.Struct, frozen=True):
    attempts: list[Attempt]


class FaultRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    status: Literal[429, 500, 503]
    count: Annotated[int, Meta(ge=0, le=1_000_000)] = 1
    retry_after: Annotated[float, Meta(ge=0)] | None = None


class LatencyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    delay_ms: Annotated[int, Meta(ge=0, le=60_000)]


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: float | None


@dataclass
class EmulatorState:
    """What the emulator has received and the faults still to inject, in arrival order."""

    messages: list[ReceivedMessage] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    delay_seconds: float = 0.0
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
    arrived = datetime.now(UTC)
    raw = await request.body()
    answer = _judge(state, project, raw, arrived)
    header = answer.headers.get("Retry-After")
    state.attempts.append(Attempt(arrived, project, answer.status_code or 200,
                                  None if header is None else float(header), _message_of(raw)))
    if state.delay_seconds > 0:
        await asyncio.sleep(state.delay_seconds)
    return answer


def _judge(state: EmulatorState, project: str, raw: bytes, arrived: datetime) -> Response[bytes]:
    """FCM's answer to one send request; an accepted message is kept as it arrives."""
    fault = state.next_fault()
    if fault is not None:
        code, text = _FAULTS[fault.status]
        return fcm_error(fault.status, code, text, retry_after=fault.retry_after)

    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        return fcm_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {exc}")
    violations = validate_send_request(body)
    if violations:
        return fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.",
                         violations)

    message: dict[str, Any] = body["message"]
    fields = snake_keys(message)
    target_kind = next(t for t in TARGETS if t in fields)
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
    state.messages.append(ReceivedMessage(arrived, project, message))
    return _json({"name": name})


def _message_of(raw: bytes) -> dict[str, Any] | None:
    with contextlib.suppress(msgspec.DecodeError):
        body = msgspec.json.decode(raw)
        if isinstance(body, dict) and isinstance(body.get("message"), dict):
            message: dict[str, Any] = body["message"]
            return message
    return None


def _json(body: Any, status_code: int = 200) -> Response[bytes]:
    return Response(msgspec.json.encode(body), status_code=status_code,
                    media_type="application/json")


@get("/emulator/messages", operation_id="listMessages")
async def list_messages(request: Request[Any, Any, State]) -> ReceivedMessages:
    """Every message received since the last clear, oldest first."""
    return ReceivedMessages(list(_state(request).messages))


@delete("/emulator/messages", operation_id="clearMessages")
async def clear_messages(request: Request[Any, Any, State]) -> None:
    """Forget every message received, and every attempt."""
    _state(request).messages.clear()
    _state(request).attempts.clear()


@get("/emulator/attempts", operation_id="listAttempts")
async def list_attempts(request: Request[Any, Any, State]) -> Attempts:
    """Every send request since the last clear, refused ones included, in arrival order (not in
    the contract; lets a test check how a client retries)."""
    return Attempts(list(_state(request).attempts))


@post("/emulator/faults", status_code=204, operation_id="injectFaults")
async def inject_faults(request: Request[Any, Any, State], data: FaultRequest) -> None:
    """Make the next `count` sends fail with `status` (after any faults already queued)."""
    _state(request).faults.append(_Fault(data.status, data.count, data.retry_after))


@delete("/emulator/faults", operation_id="clearFaults")
async def clear_faults(request: Request[Any, Any, State]) -> None:
    """Drop every fault still queued and the latency (not in the contract; lets a test start
    clean)."""
    _state(request).faults.clear()
    _state(request).delay_seconds = 0.0


@post("/emulator/latency", status_code=204, operation_id="setLatency")
async def set_latency(request: Request[Any, Any, State], data: LatencyRequest) -> None:
    """Answer every send `delay_ms` after it arrives, from now on (0: at once)."""
    _state(request).delay_seconds = data.delay_ms / 1000


def create_emulator_app() -> Litestar:
    """A fresh emulator with nothing received and no faults queued."""
    return Litestar(
        route_handlers=[send, list_messages, clear_messages, list_attempts, inject_faults,
                        clear_faults, set_latency],
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
