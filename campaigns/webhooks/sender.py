"""One HTTP POST of one event to a receiver, and what became of it.

One rule: an attempt is bounded — a timeout for the whole exchange, at most RESPONSE_LIMIT bytes
of the answer read, no redirect followed — and connects only to an address `safety` checked
(TLS still verifies the certificate against the URL's host name, sent as SNI).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from campaigns.webhooks.safety import Resolver, Target, UnsafeUrl, checked_addresses

RESPONSE_LIMIT = 4096
USER_AGENT = "contexto-webhooks/1"

Verdict = Literal["delivered", "retry", "dead"]


@dataclass(frozen=True)
class Answer:
    verdict: Verdict  # before the retry window is applied: "retry" may still end "dead"
    latency_ms: float
    status: int | None = None
    error: str | None = None
    retry_after_seconds: float | None = None


def verdict_of(status: int) -> Verdict:
    """2xx delivered; 408, 429 and 5xx are worth another try; any other answer (3xx: no
    redirect is followed; 4xx: the receiver refuses this request) will not change."""
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "dead"


def retry_after_of(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at.tzinfo is None:
        return None
    return max(0.0, (at - now).total_seconds())


def _pinned(target: Target, address: str) -> str:
    """The URL with its host replaced by a checked address."""
    parts = urlsplit(target.url)
    host = f"[{address}]" if ":" in address else address
    return urlunsplit((parts.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))


async def post(client: httpx.AsyncClient, target: Target, body: bytes, headers: dict[str, str],
               *, seconds: float, now: datetime, resolver: Resolver | None = None) -> Answer:
    started = time.monotonic()

    def elapsed() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    try:
        addresses = await (checked_addresses(target) if resolver is None
                           else checked_addresses(target, resolver))
    except UnsafeUrl as exc:
        return Answer("dead", elapsed(), error=f"refused: {exc}")
    url = target.url if not addresses else _pinned(target, addresses[0])
    extensions = {} if not addresses or target.scheme != "https" else {"sni_hostname": target.host}
    all_headers = {**headers, "Host": target.authority, "User-Agent": USER_AGENT,
                   "Content-Type": "application/json"}
    try:
        async with asyncio.timeout(seconds):
            request = client.build_request("POST", url, content=body, headers=all_headers,
                                           extensions=extensions)
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= RESPONSE_LIMIT:
                        break
            finally:
                await response.aclose()
    except TimeoutError:
        return Answer("retry", elapsed(), error=f"timed out after {seconds:g} s")
    except httpx.HTTPError as exc:
        return Answer("retry", elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
    except OSError as exc:
        return Answer("retry", elapsed(), error=f"connection failed: {exc}"[:500])
    code = response.status_code
    verdict = verdict_of(code)
    error = None if verdict == "delivered" else f"the receiver answered {code}"
    return Answer(verdict, elapsed(), status=code, error=error,
                  retry_after_seconds=retry_after_of(response.headers.get("Retry-After"), now)
                  if code in (429, 503) else None)
