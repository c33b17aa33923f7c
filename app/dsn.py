"""Database URLs: the same server with another database name."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
