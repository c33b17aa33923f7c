"""The signature a receiver checks, and the seal that keeps secrets out of a database dump."""

from __future__ import annotations

import hashlib
import hmac
from uuid import uuid4

import pytest

from campaigns.webhooks.sealing import Sealer, SecretUnreadable
from campaigns.webhooks.signing import signature, verify

SECRET = "whsec_test-secret-0123456789"
BODY = b'{"id":"e1","type":"moment","created_at":"2026-06-17T10:00:00Z","data":{}}'
T = 1_781_690_400


def test_the_signature_is_the_hmac_sha256_of_the_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, T, BODY) == f"t={T},v1={expected}"


@pytest.mark.parametrize(("name", "secret", "header", "body", "now", "valid"), [
    ("the request as signed", SECRET, signature(SECRET, T, BODY), BODY, T + 10, True),
    ("four minutes later", SECRET, signature(SECRET, T, BODY), BODY, T + 240, True),
    ("a replay six minutes later", SECRET, signature(SECRET, T, BODY), BODY, T + 360, False),
    ("a body changed on the way", SECRET, signature(SECRET, T, BODY), BODY + b" ", T, False),
    ("another subscription's secret", "whsec_other-0123456789", signature(SECRET, T, BODY),
     BODY, T, False),
    ("a timestamp moved forward", SECRET,
     signature(SECRET, T, BODY).replace(f"t={T}", f"t={T + 400}"), BODY, T + 400, False),
    ("no v1", SECRET, f"t={T}", BODY, T, False),
    ("garbage", SECRET, "nonsense", BODY, T, False),
])
def test_a_receiver_accepts_only_a_fresh_untouched_request(
        name: str, secret: str, header: str, body: bytes, now: float, valid: bool) -> None:
    assert verify(secret, header, body, now) is valid, name


def test_a_sealed_secret_opens_with_its_key_and_row_only() -> None:
    sealer = Sealer("k" * 40)
    row = uuid4()
    sealed = sealer.seal(row, SECRET)
    assert SECRET.encode() not in sealed
    assert sealer.open(row, sealed) == SECRET
    assert sealer.seal(row, SECRET) != sealed  # a fresh nonce each time
    with pytest.raises(SecretUnreadable):
        sealer.open(uuid4(), sealed)  # copied onto another subscription
    with pytest.raises(SecretUnreadable):
        Sealer("j" * 40).open(row, sealed)  # another key
    with pytest.raises(SecretUnreadable):
        sealer.open(row, sealed[:-1] + bytes([sealed[-1] ^ 1]))  # tampered


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Sealer("short")
