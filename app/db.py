"""The PostgreSQL pool: codecs registered once per connection, migrations on start.

One rule: callers take a connection and own its transaction; nothing here hides one.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from app.migrate import migrate

_json_encoder = msgspec.json.Encoder()


def _encode_json(value: Any) -> str:
    return _json_encoder.encode(value).decode()


# jsonb goes in binary format (a version byte, 1, then the JSON text): COPY, which bulk writes
# use, speaks only binary, and has no encoder for a text-format codec.
_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + _json_encoder.encode(value)


def _decode_jsonb(data: bytes) -> Any:
    return msgspec.json.decode(data[1:])


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb,
        format="binary",
    )
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=_encode_json, decoder=msgspec.json.decode,
        format="text",
    )


async def _no_session_reset(conn: asyncpg.Connection) -> None:
    """The service sets no session state (no SET, no session advisory locks, no LISTEN on pool
    connections), so a released connection needs no `RESET ALL` round trip."""


async def open_pool(dsn: str, *, min_size: int = 2, max_size: int = 10,
                    migrate_first: bool = True) -> asyncpg.Pool:
    if migrate_first:
        async with _Connection(dsn) as conn:
            await migrate(conn)
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection,
        command_timeout=30, reset=_no_session_reset,
    )
    assert pool is not None
    return pool


class _Connection:
    """`async with` around a single connection (asyncpg.connect is not a context manager)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> asyncpg.Connection:
        self._conn = await asyncpg.connect(self._dsn)
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()
