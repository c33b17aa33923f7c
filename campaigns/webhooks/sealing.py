"""Webhook secrets at rest: sealed with AES-GCM under a key that is not in the database.

One rule: the HMAC needs each secret in clear at send time, so secrets are recoverable — but only
with `WEBHOOK_SECRET_KEY`; a database dump holds nonces and ciphertexts. Each seal is bound to its
subscription's id (associated data), so a sealed secret copied onto another row does not open.
"""

from __future__ import annotations

import hashlib
import os
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
NONCE_BYTES = 12
MIN_KEY_CHARS = 32


class SecretUnreadable(Exception):
    """A sealed secret that this key does not open (another key, or a tampered row)."""


class Sealer:
    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"WEBHOOK_SECRET_KEY must be at least {MIN_KEY_CHARS} characters")
        # Any long random string is a key; SHA-256 makes it the 256 bits AES-GCM takes.
        self._aead = AESGCM(hashlib.sha256(key.encode()).digest())

    def seal(self, webhook_id: UUID, secret: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, secret.encode(), webhook_id.bytes)

    def open(self, webhook_id: UUID, sealed: bytes) -> str:
        if sealed[:1] != VERSION:
            raise SecretUnreadable(f"webhook {webhook_id}: unknown seal version")
        nonce, body = sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, webhook_id.bytes).decode()
        except InvalidTag as exc:
            raise SecretUnreadable(
                f"webhook {webhook_id}: its secret does not open with WEBHOOK_SECRET_KEY") from exc
