"""Which URLs a webhook may call, and which addresses it may connect to.

One rule: outside the configured allow-list (`WEBHOOK_ALLOW_HOSTS`), a URL is `https`, and every
address its host resolves to is public — not private, loopback, link-local, multicast, reserved
or unspecified. The check runs when a subscription is made and again before every attempt, and
the attempt connects to an address that was checked (so a DNS answer that changes in between,
as in DNS rebinding, cannot point it inside).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
RESOLVE_TIMEOUT_SECONDS = 3.0


class UnsafeUrl(Exception):
    """A URL or an address a webhook may not call; the message says why."""


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # lower case, without brackets for IPv6
    port: int
    allowed: bool  # on the allow-list: http and any address are fine

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class AllowList:
    """`host` (any port) or `host:port` entries, as WEBHOOK_ALLOW_HOSTS lists them."""

    entries: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> AllowList:
        items = text.split(",") if isinstance(text, str) else list(text)
        return cls(frozenset(e.strip().lower() for e in items if e.strip()))

    def allows(self, host: str, port: int) -> bool:
        bare = host.lower()
        shown = f"[{bare}]" if ":" in bare else bare
        return bare in self.entries or shown in self.entries or f"{shown}:{port}" in self.entries


def target_of(url: str, allow: AllowList) -> Target:
    """The URL's parts, or UnsafeUrl saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeUrl("must be an https URL")
    if not parts.hostname:
        raise UnsafeUrl("has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not carry credentials (user:password@); sign with the secret")
    if parts.fragment:
        raise UnsafeUrl("must not have a #fragment")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UnsafeUrl("must not contain spaces or control characters")
    host = parts.hostname.lower()
    port = port or (443 if scheme == "https" else 80)
    allowed = allow.allows(host, port)
    if scheme == "http" and not allowed:
        raise UnsafeUrl("must be an https URL (http only for hosts in WEBHOOK_ALLOW_HOSTS)")
    return Target(url=url, scheme=scheme, host=host, port=port, allowed=allowed)


def forbidden(address: IpAddress) -> str | None:
    """Why a connection to `address` is refused, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden(address.ipv4_mapped)
    # Most specific first: Python counts loopback and link-local as private too.
    for reason, hit in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                        ("multicast", address.is_multicast),
                        ("unspecified", address.is_unspecified),
                        ("reserved", address.is_reserved), ("private", address.is_private),
                        ("not globally routable", not address.is_global)):
        if hit:
            return reason
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_SECONDS)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(target: Target, resolver: Resolver = system_resolver) -> list[str]:
    """The public addresses to connect to for `target` (empty for an allow-listed host, which
    is connected to by name); UnsafeUrl when the host does not resolve or any of its addresses
    is not public."""
    if target.allowed:
        return []
    try:
        literal: IpAddress | None = ipaddress.ip_address(target.host)
    except ValueError:
        literal = None
    if literal is not None:
        found: Sequence[str] = [str(literal)]
    else:
        try:
            found = await resolver(target.host, target.port)
        except (OSError, TimeoutError, UnicodeError) as exc:
            raise UnsafeUrl(f"host {target.host!r} could not be resolved") from exc
    if not found:
        raise UnsafeUrl(f"host {target.host!r} could not be resolved")
    for text in found:
        reason = forbidden(ipaddress.ip_address(text.split("%", 1)[0]))
        if reason is not None:
            raise UnsafeUrl(f"host {target.host!r} resolves to {text}, a {reason} address "
                            "(allowed only for hosts in WEBHOOK_ALLOW_HOSTS)")
    return list(found)
