"""The app over HTTP (httpx through ASGI, lifespan included) on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from app.main import create_app
from app.settings import Settings
from tests.clock import CLOCK

ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"
WEBHOOK_KEY = "test-webhook-key-0123456789abcdef0123456789"


class Api:
    """A thin client that sends each request with a given token."""

    def __init__(self, client: AsyncTestClient[Any]) -> None:
        self.client = client

    async def call(self, method: str, path: str, token: str | None = None,
                   **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, token: str | None = ADMIN_TOKEN,
                 expect: int | None = None, **kwargs: Any) -> Any:
        """Call and assert success; return the decoded JSON body (or None)."""
        response = await self.call(method, path, token, **kwargs)
        wanted = expect or {"POST": 201, "DELETE": 204}.get(method, 200)
        assert response.status_code == wanted, (method, path, response.status_code,
                                                response.text)
        return response.json() if response.content else None


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(database_url=database_url, admin_token=ADMIN_TOKEN,
                                  run_dispatcher=False, pool_min_size=1, pool_max_size=5,
                                  webhook_secret_key=WEBHOOK_KEY,
                                  webhook_allow_hosts=("127.0.0.1",))
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    app = create_app(settings_for(database_url), clock=CLOCK)
    async with AsyncTestClient(app=app) as client:
        yield Api(client)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_api(module_database_url: str) -> AsyncIterator[Api]:
    """The app built once per module (building it costs ~0.2 s) on `module_database_url`.
    A module using it runs its tests in one loop: `pytestmark = pytest.mark.asyncio(
    loop_scope="module")`; it looks at the database through `module_db`."""
    app = create_app(settings_for(module_database_url), clock=CLOCK)
    async with AsyncTestClient(app=app) as client:
        yield Api(client)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_db(module_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to `module_database_url` for looking at what the API stored (the app's own
    pool lives in the test client's event loop, not the test's)."""
    conn = await asyncpg.connect(module_database_url)
    try:
        yield conn
    finally:
        await conn.close()
