"""The FCM gateway: turns outgoing pushes into FCM HTTP v1 messages and sends them.

It owns the shape of the push a device receives (see CONTRACT.md, "The push a device receives")
and the reading of FCM's answers into outcomes the dispatcher acts on: sent, retry, failed,
retire (the address is dead) or expired (the offer's time ran out before it could go).

One rule: this is the only module that touches firebase-admin. Every private corner of it that
we lean on (where the send URL lives, how its HTTP client retries) is confined to
`_RoutedMessagingService` below and checked when a gateway starts, so a firebase-admin upgrade
that moves them fails at start-up rather than sending somewhere else.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import math
import ssl
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

import certifi
import firebase_admin
import google.auth.credentials
import httpx
import msgspec
from firebase_admin import _http_client, credentials, exceptions, messaging

BATCH_SIZE = 500  # pushes a dispatcher claims and hands to the gateway at once
QUOTA_RETRY_FLOOR_SECONDS = 60.0  # FCM asks senders over quota to back off at least a minute
DEFAULT_TIMEOUT_SECONDS = 10
DEFAULT_MAX_IN_FLIGHT = 50  # concurrent send requests per gateway
# A push is not started with less of its offer left than this: the request itself takes time to
# reach FCM (more on a busy machine), so a push started in its offer's last moments would arrive
# after the offer ran out — and could not be shown to anyone in time anyway.
MIN_SEND_LIFETIME = timedelta(seconds=1)

Outcome = Literal["sent", "retry", "failed", "retire", "expired"]


class OutgoingPush(msgspec.Struct, frozen=True):
    """One delivery ready to go: the device's push address and the offer it gets."""

    delivery_id: UUID
    campaign_id: UUID
    token: str | None
    fid: str | None
    title: str
    body: str
    image_url: str | None
    deep_link: str | None
    data: dict[str, str]
    expires_at: datetime

    def __post_init__(self) -> None:
        if (self.token is None) == (self.fid is None):
            raise ValueError("a push needs exactly one address: token or fid")
        if not (self.token or self.fid):
            raise ValueError("a push address must not be empty")
        if self.expires_at.tzinfo is None:
            raise ValueError("expires_at must carry a time zone")


class SendResult(msgspec.Struct, frozen=True):
    delivery_id: UUID
    outcome: Outcome
    message_name: str | None = None
    error_code: str | None = None
    retry_after_seconds: float | None = None
    # "sent": the instant FCM's acceptance was heard (the clock read as its answer arrived),
    # which becomes the delivery's `sent_at`; the dispatcher records outcomes a little later.
    accepted_at: datetime | None = None


def build_message(push: OutgoingPush, now: datetime) -> messaging.Message | None:
    """The FCM message for `push` at `now`, or None when the offer's time is already up."""
    left = (push.expires_at - now).total_seconds()
    if left <= 0:
        return None
    # Whole seconds, rounded down so no platform keeps the push past the offer — except in the
    # offer's last second, where 1 s is the shortest lifetime every platform understands.
    ttl_seconds = max(1, math.floor(left))
    collapse_id = str(push.delivery_id)
    data = dict(push.data)
    # Our own keys are set last: an offer's data may not impersonate them. expires_at is written
    # to the second, the width campaigns.model.payload_size budgets for.
    data.update(
        delivery_id=collapse_id,
        campaign_id=str(push.campaign_id),
        expires_at=push.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    if push.deep_link is not None:
        data["deep_link"] = push.deep_link
    with warnings.catch_warnings():
        # firebase-admin 7 deprecates `token` for `fid`, but devices that registered a token
        # can only be reached through it.
        warnings.simplefilter("ignore", DeprecationWarning)
        return messaging.Message(
            token=push.token,
            fid=push.fid,
            notification=messaging.Notification(
                title=push.title, body=push.body, image=push.image_url),
            data=data,
            android=messaging.AndroidConfig(
                ttl=timedelta(seconds=ttl_seconds), collapse_key=collapse_id, priority="high"),
            apns=messaging.APNSConfig(headers={
                "apns-expiration": str(math.floor(push.expires_at.timestamp())),
                "apns-collapse-id": collapse_id,
                "apns-priority": "10",
            }),
            webpush=messaging.WebpushConfig(headers={
                "TTL": str(ttl_seconds),
                # Web Push allows at most 32 URL-safe base64 characters: the bare hex fits.
                "Topic": push.delivery_id.hex,
                "Urgency": "high",
            }),
        )


# --------------------------------------------------------------------------------------------
# Reading FCM's answers.
# --------------------------------------------------------------------------------------------
_RETIRE_CODES = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})
_RETRY_CODES = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "QUOTA_EXCEEDED"})
_ADDRESS_FIELDS = frozenset({"message.token", "message.fid"})
_ADDRESS_WORDS = ("registration token", "installation id")


def _fcm_error_code(error: exceptions.FirebaseError) -> str:
    """FCM's own error code when it gave one (UNREGISTERED...), else the canonical code."""
    specific: list[tuple[type[Any], str]] = [
        (messaging.UnregisteredError, "UNREGISTERED"),
        (messaging.QuotaExceededError, "QUOTA_EXCEEDED"),
        (messaging.SenderIdMismatchError, "SENDER_ID_MISMATCH"),
        (messaging.ThirdPartyAuthError, "THIRD_PARTY_AUTH_ERROR"),
    ]
    for kind, code in specific:
        if isinstance(error, kind):
            return code
    return str(error.code)


def _error_body(error: exceptions.FirebaseError) -> dict[str, Any]:
    response = error.http_response
    if response is None:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    inner = body.get("error") if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else {}


def _is_about_address(error: exceptions.FirebaseError) -> bool:
    """Whether an INVALID_ARGUMENT blames the token or fid rather than the message."""
    body = _error_body(error)
    for detail in body.get("details", []):
        for violation in detail.get("fieldViolations", []) if isinstance(detail, dict) else []:
            if isinstance(violation, dict) and violation.get("field") in _ADDRESS_FIELDS:
                return True
    text = str(body.get("message") or error).lower()
    return any(word in text for word in _ADDRESS_WORDS)


def _retry_after(error: exceptions.FirebaseError, now: datetime) -> float | None:
    response = error.http_response
    header = None if response is None else response.headers.get("Retry-After")
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    parsed = email.utils.parsedate_tz(header)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - now.timestamp())


def classify(delivery_id: UUID, error: exceptions.FirebaseError, now: datetime, *,
             quota_floor_seconds: float = QUOTA_RETRY_FLOOR_SECONDS) -> SendResult:
    """What the dispatcher should do about a push FCM refused (`now` reads an HTTP-date
    Retry-After)."""
    code = _fcm_error_code(error)
    if code in _RETIRE_CODES or (code == "INVALID_ARGUMENT" and _is_about_address(error)):
        return SendResult(delivery_id, "retire", error_code=code)
    if code in _RETRY_CODES:
        wait = _retry_after(error, now)
        if code == "QUOTA_EXCEEDED":
            wait = max(quota_floor_seconds, wait or 0.0)
        return SendResult(delivery_id, "retry", error_code=code, retry_after_seconds=wait)
    return SendResult(delivery_id, "failed", error_code=code)


# --------------------------------------------------------------------------------------------
# The firebase-admin plumbing.
# --------------------------------------------------------------------------------------------
class _AnonymousCredential(credentials.Base):  # type: ignore[misc]
    """No credential at all: for the emulator, which needs no token and must never cause a
    request to Google's token endpoint."""

    def get_credential(self) -> google.auth.credentials.Credentials:
        return google.auth.credentials.AnonymousCredentials()  # type: ignore[no-untyped-call]


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~0.1 s; one context serves every gateway in the process.
    return ssl.create_default_context(cafile=certifi.where())


class _FcmHttpClient:
    """The async HTTP client our messaging service sends through, in place of firebase-admin's.

    It keeps what firebase-admin's client does (HTTP/2, its metrics header, Google OAuth2 on
    every request through firebase-admin's own auth flow) and changes three things:
    - no retries inside a call: the dispatcher owns retrying (through the outbox, honouring
      Retry-After); firebase-admin's loop would hold a batch for up to ~7 s on a 503 and ignore
      Retry-After;
    - a pool of `max_in_flight` connections, the most the gateway ever has in flight;
    - no OAuth2 at all with the anonymous credential, so the emulator path never reaches Google.
    """

    def __init__(self, credential: google.auth.credentials.Credentials, timeout: float,
                 max_in_flight: int) -> None:
        anonymous = isinstance(credential, google.auth.credentials.AnonymousCredentials)
        self._client = httpx.AsyncClient(
            http2=True,
            timeout=timeout,
            headers=dict(_http_client.METRICS_HEADERS),
            auth=None if anonymous else _http_client.GoogleAuthCredentialFlow(credential),
            limits=httpx.Limits(max_connections=max_in_flight,
                                max_keepalive_connections=max_in_flight),
            verify=_tls_context(),
        )

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """What firebase-admin's HttpxAsyncClient.request promises: a 2xx response, or
        httpx.HTTPStatusError carrying the response it turns into a FirebaseError."""
        response = await self._client.request(method, url, **kwargs)
        return response.raise_for_status()

    async def aclose(self) -> None:
        await self._client.aclose()


class _RoutedMessagingService(messaging._MessagingService):  # type: ignore[misc]
    """firebase-admin's own messaging service for one App, with two per-instance changes:
    the send URL points at `endpoint` when one is given (firebase-admin builds it from a class
    constant, so it is overridden on this instance only), and sends go through `_FcmHttpClient`.
    """

    _async_client: Any
    _fcm_url: str

    def __init__(self, app: firebase_admin.App, endpoint: str | None, timeout: float,
                 max_in_flight: int) -> None:
        super().__init__(app)
        for attribute in ("_fcm_url", "_async_client", "_credential", "_client"):
            if not hasattr(self, attribute):
                raise RuntimeError(
                    f"firebase-admin {firebase_admin.__version__} no longer has "
                    f"_MessagingService.{attribute}; campaigns/fcm.py needs updating")
        if endpoint:
            self._fcm_url = f"{endpoint.rstrip('/')}/v1/projects/{app.project_id}/messages:send"
        self._firebase_async_client = self._async_client
        self._async_client = _FcmHttpClient(self._credential, timeout, max_in_flight)

    def refusal(self, message: messaging.Message) -> str | None:
        """Why firebase-admin would refuse to encode `message`, or None if it would not.

        send_each_async raises ValueError (not a FirebaseError) for a message it cannot
        encode; checking first turns that into the push's own failure instead of an exception
        that would sink the batch being gathered.
        """
        try:
            self.encode_message(message)
        except ValueError as error:
            return str(error)
        return None

    async def aclose(self) -> None:
        await self._async_client.aclose()
        await self._firebase_async_client.aclose()
        self._client.close()

    def close(self) -> None:
        # firebase-admin calls this from delete_app and would asyncio.run() inside our running
        # loop; `aclose` closes the clients instead.
        pass


class FcmGateway:
    """Sends pushes through one firebase-admin App of its own."""

    def __init__(self, *, project_id: str, endpoint: str | None, credentials_path: str | None,
                 name: str | None = None,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 quota_retry_floor_seconds: float = QUOTA_RETRY_FLOOR_SECONDS) -> None:
        credential: credentials.Base
        if credentials_path:
            credential = credentials.Certificate(credentials_path)
        elif endpoint:
            credential = _AnonymousCredential()
        else:
            credential = credentials.ApplicationDefault()
        self._app = firebase_admin.initialize_app(
            credential,
            options={"projectId": project_id, "httpTimeout": timeout_seconds},
            name=name or f"contexto-fcm-{uuid4().hex}",
        )
        # Registering our service under firebase-admin's own name makes every messaging call
        # for this App (send_each_async(..., app=...)) use it; other Apps are untouched.
        self._service: _RoutedMessagingService = self._app._get_service(
            messaging._MESSAGING_ATTRIBUTE,
            lambda app: _RoutedMessagingService(app, endpoint, timeout_seconds, max_in_flight))
        if messaging._get_messaging_service(self._app) is not self._service:
            raise RuntimeError("firebase-admin did not keep the routed messaging service")
        self._slots = asyncio.Semaphore(max_in_flight)
        self._quota_floor = quota_retry_floor_seconds

    @property
    def send_url(self) -> str:
        """Where sends go (the emulator's or Google's URL)."""
        return self._service._fcm_url

    async def send(self, pushes: Sequence[OutgoingPush],
                   now: datetime | Callable[[], datetime], *,
                   on_result: Callable[[SendResult], None] | None = None) -> list[SendResult]:
        """Send every push still in time; one result per push, in the same order.

        `now` is a clock (or one instant, for a clock standing still). It is read as each push
        gets its turn, not once for the batch: with `max_in_flight` sends at a time, the last of
        a batch may wait seconds behind the others on a slow FCM, and must neither leave after
        its offer ran out nor carry a lifetime counted from before the wait. `on_result` hears
        each result as soon as it is known, so the caller can record it without waiting for the
        slowest push of the batch.
        """
        clock: Callable[[], datetime] = now if callable(now) else (lambda: now)

        async def one(push: OutgoingPush) -> SendResult:
            result = await self._send_one(push, clock)
            if on_result is not None:
                on_result(result)
            return result

        return list(await asyncio.gather(*(one(push) for push in pushes)))

    async def _send_one(self, push: OutgoingPush, clock: Callable[[], datetime]) -> SendResult:
        async with self._slots:
            now = clock()
            message = build_message(push, now)
            if message is None or push.expires_at - now < MIN_SEND_LIFETIME:
                return SendResult(push.delivery_id, "expired")
            if self._service.refusal(message) is not None:
                return SendResult(push.delivery_id, "failed", error_code="INVALID_MESSAGE")
            try:
                response = await messaging.send_each_async([message], app=self._app)
            except exceptions.FirebaseError as error:
                # Failed before FCM judged the message: try again, no sooner than asked.
                return SendResult(push.delivery_id, "retry", error_code=str(error.code),
                                  retry_after_seconds=_retry_after(error, clock()))
        [answer] = response.responses
        if answer.success:
            return SendResult(push.delivery_id, "sent", message_name=answer.message_id,
                              accepted_at=clock())
        return classify(push.delivery_id, answer.exception, clock(),
                        quota_floor_seconds=self._quota_floor)

    async def close(self) -> None:
        await self._service.aclose()
        firebase_admin.delete_app(self._app)


__all__ = ["FcmGateway", "OutgoingPush", "SendResult", "build_message", "classify"]
