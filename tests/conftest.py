"""Test databases: one real PostgreSQL, a migrated template, and a fresh clone per test.

`DATABASE_URL` names a server to use (any database on it; tests create their own); without it
an embedded PostgreSQL from `pgserver` is started in a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.dsn import with_database
from app.migrate import migrate
from app.partitions import DAYS_AHEAD
from geo.partitions import create_days, days_from
from tests.clock import CLOCK, PINNED


@pytest.fixture(autouse=True)
def pinned_clock() -> Iterator[None]:
    """Every test starts at the same pinned instant (see tests/clock.py), whatever the hour."""
    CLOCK.set(PINNED)
    CLOCK.running = True
    yield


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate(dsn: str) -> None:
    """Migrate, and make the pings partitions a service started at the pinned instant makes, so
    that each app a test starts finds them there instead of creating them again."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await create_days(conn, days_from(PINNED, DAYS_AHEAD))
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """A URL of a PostgreSQL server on which tests may create databases."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    import pgserver

    folder = Path(tempfile.mkdtemp(prefix="contexto-test-pg-"))
    server: Any = pgserver.get_server(folder, cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    """A migrated template database; its name."""
    name = f"contexto_tpl_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}"'))
    asyncio.run(_migrate(with_database(server_dsn, name)))
    try:
        yield name
    finally:
        asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database_url(server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated template, dropped after the test."""
    name = f"contexto_test_{uuid.uuid4().hex[:12]}"
    await _admin(server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield with_database(server_dsn, name)
    finally:
        await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_database_url(server_dsn: str) -> AsyncIterator[str]:
    """A database with no schema at all, for migration tests."""
    name = f"contexto_empty_{uuid.uuid4().hex[:12]}"
    await _admin(server_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_dsn, name)
    finally:
        await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def module_database_url(server_dsn: str, template_db: str) -> Iterator[str]:
    """One fresh database for a whole module, whose tests each build their own objects in it
    (a clone per test costs about a second; building a few objects costs milliseconds)."""
    name = f"contexto_mod_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    try:
        yield with_database(server_dsn, name)
    finally:
        asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
