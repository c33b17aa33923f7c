"""Migrations: applied once each, however often and however concurrently `migrate` is called.

Each test starts from an empty database; `available()` is the list of migration files.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.migrate import available, migrate


async def run_migrate(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def recorded(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT number, name FROM schema_migrations ORDER BY number, name")
    finally:
        await conn.close()
    return [(r["number"], r["name"]) for r in rows]


ALL = [(m.number, m.name) for m in available()]


async def test_the_first_run_applies_every_migration_in_order(empty_database_url: str) -> None:
    applied = await run_migrate(empty_database_url)

    assert applied == [name for _, name in ALL]


async def test_a_second_run_applies_nothing(empty_database_url: str) -> None:
    await run_migrate(empty_database_url)

    assert await run_migrate(empty_database_url) == []


async def test_a_second_run_records_each_migration_once(empty_database_url: str) -> None:
    await run_migrate(empty_database_url)
    await run_migrate(empty_database_url)

    assert await recorded(empty_database_url) == ALL


@pytest.mark.parametrize("callers", [2, 5], ids=lambda n: f"{n} concurrent callers")
async def test_concurrent_runs_on_an_empty_database_apply_each_migration_once(
        empty_database_url: str, callers: int) -> None:
    results = await asyncio.gather(*(run_migrate(empty_database_url) for _ in range(callers)))

    applied = sorted(name for names in results for name in names)
    assert (applied, await recorded(empty_database_url)) == (
        sorted(name for _, name in ALL), ALL)

