"""Schema migrations: numbered, forward-only SQL files under `app/migrations/`.

One rule: every pending file is applied inside one transaction while holding an
advisory lock (per database), so any number of processes may call `migrate` at once and on
every start.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# Any constant works; it only has to be the same in every process of the fleet.
MIGRATION_LOCK_KEY = 0x636F6E7465787430  # "context0"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str


def available() -> list[Migration]:
    folder = resources.files("app") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.number)
    numbers = [m.number for m in found]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"two migrations share a number: {numbers}")
    return found


async def migrate(conn: asyncpg.Connection | PoolConnectionProxy) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   number integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["number"] for r in await conn.fetch("SELECT number FROM schema_migrations")}
        applied = []
        for m in available():
            if m.number in done:
                continue
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (number, name) VALUES ($1, $2)", m.number, m.name
            )
            applied.append(m.name)
        return applied


async def _main(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m app.migrate DATABASE_URL")
    asyncio.run(_main(sys.argv[1]))
