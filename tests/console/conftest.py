"""The console in a real browser: Debian's Chromium driven by Playwright, against the service
served for real by uvicorn on a free loopback port (its own thread and event loop) on a module
database. Tiles are off (`CONSOLE_TILE_URL` empty): the page may talk to the service only, and
every test fails if it logged a console error or asked any other host for anything."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from app.dsn import with_database
from app.main import create_app
from tests.api.conftest import ADMIN_TOKEN, settings_for
from tests.clock import CLOCK
from tests.conftest import _admin

CHROMIUM = os.environ.get("CONTEXTO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SHOTS = Path(os.environ.get("CONTEXTO_SCREENSHOTS", "/tmp/contexto-console-screenshots"))

if not Path(CHROMIUM).exists():  # pragma: no cover - the Makefile's install step puts it there
    pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (make install does)",
                pytrace=False)


@dataclass
class Service:
    url: str
    admin: httpx.Client

    def ok(self, method: str, path: str, token: str = ADMIN_TOKEN, expect: int | None = None,
           **kwargs: Any) -> Any:
        response = self.admin.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                      **kwargs)
        wanted = expect or {"POST": 201, "DELETE": 204}.get(method, 200)
        assert response.status_code == wanted, (method, path, response.status_code,
                                                response.text)
        return response.json() if response.content else None

    def key(self, role: str, store_ids: list[str] | None = None, name: str | None = None) -> str:
        body: dict[str, Any] = {"name": name or f"{role} key", "role": role}
        if store_ids:
            body["store_ids"] = store_ids
        token: str = self.ok("POST", "/v1/api-keys", json=body)["token"]
        return token


def _off_thread(*statements: str, dsn: str) -> None:
    """SQL run from another thread: Playwright's sync API keeps an event loop running in this
    one, where `asyncio.run` is refused."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _admin(dsn, *statements)).result()


@pytest.fixture(scope="module")
def console_database_url(server_dsn: str, template_db: str) -> Iterator[str]:
    """A fresh database for the module, cloned from the migrated template."""
    name = f"contexto_console_{uuid.uuid4().hex[:12]}"
    _off_thread(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"', dsn=server_dsn)
    try:
        yield with_database(server_dsn, name)
    finally:
        _off_thread(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dsn=server_dsn)


@pytest.fixture(scope="module")
def service(console_database_url: str) -> Iterator[Service]:
    """The service, served by uvicorn on a free loopback port for the whole module."""
    app = create_app(settings_for(console_database_url, console_tile_url=""), clock=CLOCK)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                          timeout_graceful_shutdown=1))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])),
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as admin:
            yield Service(url, admin)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def browser(template_db: str) -> Iterator[Any]:
    """One headless Chromium per module (starting one costs about a second). Not one per
    session: Playwright's sync API keeps an event loop running in the main thread while it is
    open, which the other test folders' synchronous fixtures (`asyncio.run`) cannot share."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Watch:
    """What a page did besides its job: console errors and requests to other hosts."""
    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def page(service: Service, browser: Any) -> Iterator[Any]:
    """A fresh browser context (its own sessionStorage) at 1280x800. Requests to any host but
    the service are recorded and aborted; the test fails on them and on console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB",
                                  timezone_id="UTC", accept_downloads=True)
    watch = Watch(origin=service.url)

    def route(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in {"data", "blob"} or f"{parts.scheme}://{parts.netloc}" == service.url:
            watch.requests.append(url)
            route.continue_()
        else:
            watch.foreign.append(url)
            route.abort()

    context.route("**/*", route)
    tab = context.new_page()
    tab.on("console", lambda m: watch.errors.append(f"{m.text} at {m.location}")
           if m.type == "error" else None)
    tab.on("pageerror", lambda e: watch.errors.append(f"uncaught: {e}"))
    tab.set_default_timeout(10_000)
    tab.watch = watch
    try:
        yield tab
        assert (watch.errors, watch.foreign) == ([], [])
    finally:
        context.close()


def sign_in(page: Any, service: Service, token: str) -> None:
    page.goto(f"{service.url}/console")
    page.get_by_label("API key").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#who").wait_for(state="visible")


def screenshot(page: Any, name: str, *, full_page: bool = False) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
