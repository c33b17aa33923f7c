"""A real webhook receiver on loopback for tests: an ASGI app served by uvicorn on its own thread
and event loop, keeping every POST it gets (headers, body, when) and answering as the test
scripts it — fail an event's first n arrivals, hold each request a while, or always answer one
status.

It verifies nothing itself: tests check signatures with `campaigns.webhooks.signing.verify`,
exactly as a customer's receiver would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn


@dataclass
class Arrival:
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.time()

    @property
    def event(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded


@dataclass
class Script:
    """How the receiver answers: `fail_first` 503s per event id (with `retry_after`, if set),
    then `status`; each request held `delay` seconds first."""

    status: int = 200
    fail_first: int = 0
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class Receiver:
    script: Script = field(default_factory=Script)
    arrivals: list[Arrival] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)
    url: str = ""

    def ids(self) -> list[str]:
        return [a.headers.get("contexto-event-id", "") for a in self.arrivals]

    def delivered(self) -> list[Arrival]:
        """The arrivals answered 2xx (the others were refused on purpose)."""
        return [a for a, ok in zip(self.arrivals, self._answers, strict=True) if ok]

    def __post_init__(self) -> None:
        self._answers: list[bool] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        script = self.script
        event_id = headers.get("contexto-event-id", "")
        # Kept as it arrives, before any delay: a request held here is one the sender has
        # sent and not yet heard back about.
        with self._lock:
            self.seen[event_id] += 1
            status = 503 if self.seen[event_id] <= script.fail_first else script.status
            self.arrivals.append(Arrival(headers, body, time.time()))
            self._answers.append(200 <= status < 300)
        if script.delay:
            await asyncio.sleep(script.delay)
        extra = [(b"retry-after", str(script.retry_after).encode())] \
            if status == 503 and script.retry_after is not None else []
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain"), *extra]})
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"no"})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.contextmanager
def receiver_thread(script: Script | None = None, path: str = "/hooks") -> Iterator[Receiver]:
    """A receiver on 127.0.0.1 (a free port) on its own thread; `receiver.url` is its URL."""
    receiver = Receiver(script or Script())
    ready: queue.Queue[str] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # Critical only: requests still held when it stops are cut short, which uvicorn logs.
        server = _Server(uvicorn.Config(receiver, log_level="critical", access_log=False,
                                        lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        ready.put(f"http://127.0.0.1:{port}{path}")
        await stop.wait()
        server.should_exit = True
        server.force_exit = True
        await task
        # Requests still held (a hanging script) end with the server, not with the loop.
        held = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in held:
            t.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        sock.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        receiver.url = ready.get(timeout=30)
        yield receiver
    finally:
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
