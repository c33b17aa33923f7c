"""The signature a receiver checks: `Contexto-Signature: t=<unix>,v1=<hex HMAC-SHA256>` over
"<t>.<body>" with the subscription's secret.

One rule: the timestamp is inside what is signed, so a receiver that refuses a `t` older than
five minutes refuses a replayed request; the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "Contexto-Signature"
EVENT_ID_HEADER = "Contexto-Event-Id"
TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={digest(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float,
           tolerance: float = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: the header is well formed, `t` is within `tolerance` seconds of
    `now`, and one `v1` matches."""
    parts = [p.split("=", 1) for p in header.split(",")]
    fields = [(p[0].strip(), p[1].strip()) for p in parts if len(p) == 2]
    stamps = [v for k, v in fields if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")
