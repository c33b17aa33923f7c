"""Resources that live as long as the app: the database pool (migrated on start).

One rule: each resource is an async context manager that puts itself on `app.state`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from app.db import open_pool


@asynccontextmanager
async def database(app: Litestar) -> AsyncIterator[None]:
    settings = app.state.settings
    pool = await open_pool(settings.database_url, min_size=settings.pool_min_size,
                           max_size=settings.pool_max_size)
    app.state.pool = pool
    try:
        yield
    finally:
        await pool.close()
