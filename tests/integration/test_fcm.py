"""The FCM gateway and the FCM emulator together: the real firebase-admin client over loopback.

No database. One emulator on a free port and one gateway (its own firebase-admin App) serve the
module; the emulator is emptied of messages and faults before each test that uses it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import pytest_asyncio
from firebase_admin import messaging

from app.clock import PinnedClock, system_clock
from campaigns.fcm import MIN_SEND_LIFETIME, FcmGateway, OutgoingPush, SendResult, build_message
from campaigns.fcm_emulator import run_emulator

# The async tests share the module's event loop, where the emulator and the gateway live.
in_module_loop = pytest.mark.asyncio(loop_scope="module")

NOW = datetime(2026, 11, 22, 18, 0, 0, tzinfo=UTC)
DELIVERY = UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
CAMPAIGN = UUID("11111111-2222-3333-4444-555555555555")


def push(*, token: str | None = "device-token", fid: str | None = None,
         expires_in: float = 900.0, delivery_id: UUID | None = None,
         data: dict[str, str] | None = None, deep_link: str | None = "shop://offers/42",
         image_url: str | None = "https://cdn.example.com/offer.png",
         body: str = "20% off coats, today only") -> OutgoingPush:
    return OutgoingPush(
        delivery_id=delivery_id or uuid4(),
        campaign_id=CAMPAIGN,
        token=None if fid is not None else token,
        fid=fid,
        title="Welcome back",
        body=body,
        image_url=image_url,
        deep_link=deep_link,
        data={"offer_code": "COATS20"} if data is None else data,
        expires_at=NOW + timedelta(seconds=expires_in),
    )


# ---------------------------------------------------------------------------------------------
# build_message, pure.
# ---------------------------------------------------------------------------------------------
def encoded(message: messaging.Message) -> dict[str, Any]:
    encoded_message: dict[str, Any] = json.loads(str(message))
    return encoded_message


@dataclass(frozen=True)
class BuildCase:
    name: str
    push: OutgoingPush
    now: datetime
    expected: dict[str, Any] = field(default_factory=dict)  # dotted path -> value
    absent: tuple[str, ...] = ()


def at(message: dict[str, Any], path: str) -> Any:
    node: Any = message
    for part in path.split("/"):
        node = node[part]
    return node


BUILD_CASES = [
    BuildCase("a device with a token is addressed by its token",
              push(token="tok-1"), NOW, {"token": "tok-1"}, absent=("fid",)),
    BuildCase("a device with a fid is addressed by its fid",
              push(fid="fid-1"), NOW, {"fid": "fid-1"}, absent=("token",)),
    BuildCase("the android ttl is the whole seconds the offer has left",
              push(expires_in=300.7), NOW, {"android/ttl": "300s"}),
    BuildCase("the webpush TTL is the same seconds left",
              push(expires_in=300.7), NOW, {"webpush/headers/TTL": "300"}),
    BuildCase("an offer in its last second still gets a one-second lifetime",
              push(expires_in=0.4), NOW, {"android/ttl": "1s", "webpush/headers/TTL": "1"}),
    BuildCase("apns-expiration is the absolute expiry in Unix seconds",
              push(expires_in=900), NOW,
              {"apns/headers/apns-expiration": str(int(NOW.timestamp()) + 900)}),
    BuildCase("every platform collapses on the delivery id",
              push(delivery_id=DELIVERY), NOW,
              {"android/collapse_key": str(DELIVERY),
               "apns/headers/apns-collapse-id": str(DELIVERY),
               "webpush/headers/Topic": DELIVERY.hex}),
    BuildCase("the push is sent with high priority everywhere",
              push(), NOW, {"android/priority": "high", "apns/headers/apns-priority": "10",
                            "webpush/headers/Urgency": "high"}),
    BuildCase("the notification carries the offer's title, body and image",
              push(), NOW, {"notification": {"title": "Welcome back",
                                             "body": "20% off coats, today only",
                                             "image": "https://cdn.example.com/offer.png"}}),
    BuildCase("the data carries the delivery, the campaign, the expiry and the deep link",
              push(delivery_id=DELIVERY, expires_in=900), NOW,
              {"data": {"offer_code": "COATS20", "delivery_id": str(DELIVERY),
                        "campaign_id": str(CAMPAIGN), "expires_at": "2026-11-22T18:15:00Z",
                        "deep_link": "shop://offers/42"}}),
    BuildCase("an offer's data cannot impersonate the delivery id",
              push(delivery_id=DELIVERY, data={"delivery_id": "forged"}), NOW,
              {"data/delivery_id": str(DELIVERY)}),
    BuildCase("a push without a deep link or image carries neither",
              push(deep_link=None, image_url=None), NOW, {},
              absent=("data/deep_link", "notification/image")),
    BuildCase("an expiry in another time zone is written in UTC",
              OutgoingPush(DELIVERY, CAMPAIGN, "t", None, "T", "B", None, None, {},
                           datetime.fromisoformat("2026-11-22T19:30:00+01:00")), NOW,
              {"data/expires_at": "2026-11-22T18:30:00Z", "android/ttl": "1800s"}),
]


@pytest.mark.parametrize("case", BUILD_CASES, ids=lambda c: c.name)
def test_build_message(case: BuildCase) -> None:
    message = build_message(case.push, case.now)
    assert message is not None
    body = encoded(message)
    for path, value in case.expected.items():
        assert at(body, path) == value, path
    for path in case.absent:
        with pytest.raises(KeyError):
            at(body, path)


@pytest.mark.parametrize(("name", "expires_in"), [
    ("an offer expiring right now is not built", 0.0),
    ("an offer that expired a minute ago is not built", -60.0),
])
def test_build_message_when_time_is_up(name: str, expires_in: float) -> None:
    assert build_message(push(expires_in=expires_in), NOW) is None


@pytest.mark.parametrize(("name", "token", "fid"), [
    ("a push with neither token nor fid is refused", None, None),
    ("a push with both token and fid is refused", "t", "f"),
    ("a push with an empty token is refused", "", None),
])
def test_outgoing_push_needs_exactly_one_address(name: str, token: str | None,
                                                 fid: str | None) -> None:
    with pytest.raises(ValueError):
        OutgoingPush(DELIVERY, CAMPAIGN, token, fid, "T", "B", None, None, {},
                     NOW + timedelta(minutes=5))


# ---------------------------------------------------------------------------------------------
# Through firebase-admin to the emulator.
# ---------------------------------------------------------------------------------------------
# One emulator and one gateway for the module: a gateway costs ~0.3 s to build (TLS contexts), and
# the emulator is emptied before every test instead.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fcm_emulator_url() -> AsyncIterator[str]:
    async with run_emulator(port=0) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fcm_emulator_client(fcm_emulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fcm_emulator_url) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="module")
async def fcm_emulator(fcm_emulator_client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The module's emulator, emptied of messages and faults for this test."""
    (await fcm_emulator_client.delete("/emulator/messages")).raise_for_status()
    (await fcm_emulator_client.delete("/emulator/faults")).raise_for_status()
    return fcm_emulator_client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fcm_gateway(fcm_emulator_url: str) -> AsyncIterator[FcmGateway]:
    # The emulator speaks HTTP/1.1 on the test's own event loop, where a few connections go
    # faster than many (FCM itself is reached over HTTP/2, where the default suits).
    gateway = FcmGateway(project_id="contexto-test", endpoint=fcm_emulator_url,
                         credentials_path=None, max_in_flight=4)
    yield gateway
    await gateway.close()


async def received(emulator: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await emulator.get("/emulator/messages")
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


@in_module_loop
async def test_run_emulator_reports_the_port_it_really_got(fcm_emulator_url: str) -> None:
    assert fcm_emulator_url.startswith("http://127.0.0.1:")
    assert int(fcm_emulator_url.rsplit(":", 1)[1]) > 0


@in_module_loop
async def test_the_gateway_sends_to_the_emulator_not_to_google(fcm_gateway: FcmGateway,
                                                               fcm_emulator_url: str) -> None:
    assert fcm_gateway.send_url == f"{fcm_emulator_url}/v1/projects/contexto-test/messages:send"


@in_module_loop
async def test_a_push_arrives_with_its_lifetime_collapse_ids_and_data(
        fcm_gateway: FcmGateway, fcm_emulator: httpx.AsyncClient) -> None:
    [result] = await fcm_gateway.send([push(delivery_id=DELIVERY, expires_in=600)], NOW)

    assert result.outcome == "sent"
    assert result.message_name is not None
    assert result.message_name.startswith("projects/contexto-test/messages/")
    [arrived] = await received(fcm_emulator)
    assert arrived["project"] == "contexto-test"
    message = arrived["message"]
    assert message["token"] == "device-token"
    assert message["android"] == {"ttl": "600s", "collapse_key": str(DELIVERY),
                                  "priority": "high"}
    assert message["apns"]["headers"] == {
        "apns-expiration": str(int(NOW.timestamp()) + 600),
        "apns-collapse-id": str(DELIVERY), "apns-priority": "10"}
    assert message["webpush"]["headers"] == {"TTL": "600", "Topic": DELIVERY.hex,
                                              "Urgency": "high"}
    assert message["data"] == {"offer_code": "COATS20", "delivery_id": str(DELIVERY),
                               "campaign_id": str(CAMPAIGN),
                               "expires_at": "2026-11-22T18:10:00Z",
                               "deep_link": "shop://offers/42"}


@in_module_loop
async def test_a_push_with_under_a_second_of_its_offer_left_is_not_started(
        fcm_gateway: FcmGateway, fcm_emulator: httpx.AsyncClient) -> None:
    last_moment = push(expires_in=0.9)

    [result] = await fcm_gateway.send([last_moment], NOW)

    assert result.outcome == "expired"
    assert await received(fcm_emulator) == []


@in_module_loop
async def test_an_expired_push_is_never_sent(fcm_gateway: FcmGateway,
                                             fcm_emulator: httpx.AsyncClient) -> None:
    stale = push(expires_in=-1)
    fresh = push(expires_in=60)

    results = await fcm_gateway.send([stale, fresh], NOW)

    assert [(r.delivery_id, r.outcome) for r in results] == [
        (stale.delivery_id, "expired"), (fresh.delivery_id, "sent")]
    assert [m["message"]["data"]["delivery_id"] for m in await received(fcm_emulator)] == [
        str(fresh.delivery_id)]


@dataclass(frozen=True)
class OutcomeCase:
    name: str
    push: OutgoingPush
    expected: SendResult  # delivery_id and message_name are not compared
    fault: dict[str, Any] | None = None
    arrives: bool = False


OUTCOME_CASES = [
    OutcomeCase("a device known by its fid receives the push",
                push(fid="fid-1"), SendResult(DELIVERY, "sent"), arrives=True),
    OutcomeCase("an unregistered token is retired",
                push(token="unregistered-abc"),
                SendResult(DELIVERY, "retire", error_code="UNREGISTERED")),
    OutcomeCase("an unregistered fid is retired",
                push(fid="unregistered-abc"),
                SendResult(DELIVERY, "retire", error_code="UNREGISTERED")),
    OutcomeCase("an invalid token is retired",
                push(token="invalid-abc"),
                SendResult(DELIVERY, "retire", error_code="INVALID_ARGUMENT")),
    OutcomeCase("an invalid fid is retired",
                push(fid="invalid-abc"),
                SendResult(DELIVERY, "retire", error_code="INVALID_ARGUMENT")),
    OutcomeCase("a push too big for FCM fails and keeps its token",
                push(body="x" * 5000),
                SendResult(DELIVERY, "failed", error_code="INVALID_ARGUMENT")),
    OutcomeCase("an unavailable FCM is retried after the Retry-After it asked for",
                push(), SendResult(DELIVERY, "retry", error_code="UNAVAILABLE",
                                   retry_after_seconds=7.0),
                fault={"status": 503, "count": 1, "retry_after": 7}),
    OutcomeCase("an unavailable FCM without Retry-After is retried at the dispatcher's pace",
                push(), SendResult(DELIVERY, "retry", error_code="UNAVAILABLE"),
                fault={"status": 503, "count": 1}),
    OutcomeCase("an exhausted quota is retried no sooner than a minute",
                push(), SendResult(DELIVERY, "retry", error_code="QUOTA_EXCEEDED",
                                   retry_after_seconds=60.0),
                fault={"status": 429, "count": 1, "retry_after": 5}),
    OutcomeCase("an exhausted quota asking for longer is retried that much later",
                push(), SendResult(DELIVERY, "retry", error_code="QUOTA_EXCEEDED",
                                   retry_after_seconds=120.0),
                fault={"status": 429, "count": 1, "retry_after": 120}),
    OutcomeCase("an internal FCM error is retried",
                push(), SendResult(DELIVERY, "retry", error_code="INTERNAL"),
                fault={"status": 500, "count": 1}),
]


@in_module_loop
@pytest.mark.parametrize("case", OUTCOME_CASES, ids=lambda c: c.name)
async def test_send_outcome(case: OutcomeCase, fcm_gateway: FcmGateway,
                            fcm_emulator: httpx.AsyncClient) -> None:
    if case.fault is not None:
        (await fcm_emulator.post("/emulator/faults", json=case.fault)).raise_for_status()

    [result] = await fcm_gateway.send([case.push], NOW)

    assert result.delivery_id == case.push.delivery_id
    assert (result.outcome, result.error_code, result.retry_after_seconds) == (
        case.expected.outcome, case.expected.error_code, case.expected.retry_after_seconds)
    assert len(await received(fcm_emulator)) == (1 if case.arrives else 0)


@in_module_loop
async def test_a_fault_hits_only_the_next_n_sends(fcm_gateway: FcmGateway,
                                                  fcm_emulator: httpx.AsyncClient) -> None:
    fault = {"status": 503, "count": 2}
    (await fcm_emulator.post("/emulator/faults", json=fault)).raise_for_status()

    outcomes = [(await fcm_gateway.send([push()], NOW))[0].outcome for _ in range(3)]

    assert outcomes == ["retry", "retry", "sent"]


@in_module_loop
async def test_six_hundred_pushes_all_arrive_never_more_than_max_in_flight_at_once(
        fcm_gateway: FcmGateway, fcm_emulator: httpx.AsyncClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    in_flight = 0
    most_in_flight = 0
    real_send_each_async = messaging.send_each_async

    async def counting_send_each_async(messages: list[messaging.Message],
                                       **kwargs: Any) -> messaging.BatchResponse:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            return await real_send_each_async(messages, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(messaging, "send_each_async", counting_send_each_async)
    pushes = [push(token=f"device-{i}") for i in range(600)]

    results = await fcm_gateway.send(pushes, NOW)

    assert most_in_flight == 4  # the module's gateway allows four
    assert [r.delivery_id for r in results] == [p.delivery_id for p in pushes]
    assert {r.outcome for r in results} == {"sent"}
    arrived = {m["message"]["token"] for m in await received(fcm_emulator)}
    assert arrived == {f"device-{i}" for i in range(600)}


@in_module_loop
async def test_a_push_whose_offer_runs_out_while_it_waits_its_turn_is_never_sent(
        fcm_gateway: FcmGateway, fcm_emulator: httpx.AsyncClient) -> None:
    (await fcm_emulator.post("/emulator/latency", json={"delay_ms": 300})).raise_for_status()
    clock = PinnedClock(NOW)
    first = [push(token=f"first-{i}", expires_in=60) for i in range(4)]
    # Still in time when the batch starts, but behind four sends that take 300 ms each.
    waiting = [push(token=f"waiting-{i}", expires_in=MIN_SEND_LIFETIME.total_seconds() + 0.2)
               for i in range(4)]

    results = await fcm_gateway.send(first + waiting, clock)

    assert [r.outcome for r in results] == ["sent"] * 4 + ["expired"] * 4
    assert {m["message"]["token"] for m in await received(fcm_emulator)} == {
        f"first-{i}" for i in range(4)}


@in_module_loop
async def test_a_push_that_waited_its_turn_carries_the_lifetime_left_when_it_leaves(
        fcm_gateway: FcmGateway, fcm_emulator: httpx.AsyncClient) -> None:
    (await fcm_emulator.post("/emulator/latency", json={"delay_ms": 300})).raise_for_status()
    clock = PinnedClock(NOW)
    pushes = [push(token=f"device-{i}", expires_in=100.25) for i in range(8)]

    await fcm_gateway.send(pushes, clock)

    ttl = {m["message"]["token"]: m["message"]["android"]["ttl"]
           for m in await received(fcm_emulator)}
    # The last four left at least 300 ms after the batch began, with under 100 s to go.
    assert {ttl[f"device-{i}"] for i in range(4, 8)} <= {"99s", "98s"}


@in_module_loop
async def test_a_sent_push_is_accepted_when_fcm_answers_not_when_it_left(
        fcm_gateway: FcmGateway, fcm_emulator: httpx.AsyncClient) -> None:
    (await fcm_emulator.post("/emulator/latency", json={"delay_ms": 300})).raise_for_status()
    clock = PinnedClock(NOW)

    [result] = await fcm_gateway.send([push()], clock)

    assert result.outcome == "sent"
    assert result.accepted_at is not None
    assert result.accepted_at - NOW >= timedelta(milliseconds=300)


@in_module_loop
async def test_clearing_the_emulator_forgets_what_it_received(
        fcm_gateway: FcmGateway, fcm_emulator: httpx.AsyncClient) -> None:
    await fcm_gateway.send([push()], NOW)

    assert (await fcm_emulator.delete("/emulator/messages")).status_code == 204
    assert await received(fcm_emulator) == []


@in_module_loop
async def test_two_gateways_coexist(fcm_emulator_url: str,
                                    fcm_emulator: httpx.AsyncClient) -> None:
    first = FcmGateway(project_id="project-a", endpoint=fcm_emulator_url, credentials_path=None)
    second = FcmGateway(project_id="project-b", endpoint=fcm_emulator_url, credentials_path=None)
    try:
        await first.send([push()], NOW)
        await second.send([push()], NOW)
    finally:
        await first.close()
        await second.close()

    assert [m["project"] for m in await received(fcm_emulator)] == ["project-a", "project-b"]


# ---------------------------------------------------------------------------------------------
# The emulator validates as FCM does.
# ---------------------------------------------------------------------------------------------
def a_message(**changes: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "token": "device-token",
        "notification": {"title": "T", "body": "B"},
        "data": {"k": "v"},
        "android": {"ttl": "3600s", "priority": "high", "collapse_key": "c"},
        "apns": {"headers": {"apns-expiration": "1795392000", "apns-priority": "10"}},
        "webpush": {"headers": {"TTL": "3600", "Topic": "abc"}},
    }
    for key, value in changes.items():
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    return message


INVALID_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("a message with two targets is refused",
     {"message": a_message(topic="news")}),
    ("a message with a token and a fid is refused",
     {"message": a_message(fid="fid-1")}),
    ("a message with no target is refused",
     {"message": a_message(token=None)}),
    ("a message with an empty token is refused",
     {"message": a_message(token="")}),
    ("a message with a malformed topic is refused",
     {"message": a_message(token=None, topic="not a topic!")}),
    ("an android ttl without its unit is refused",
     {"message": a_message(android={"ttl": "3600"})}),
    ("a negative android ttl is refused",
     {"message": a_message(android={"ttl": "-1s"})}),
    ("an android ttl in minutes is refused",
     {"message": a_message(android={"ttl": "5m"})}),
    ("an android ttl beyond four weeks is refused",
     {"message": a_message(android={"ttl": "2419201s"})}),
    ("an unknown android priority is refused",
     {"message": a_message(android={"priority": "urgent"})}),
    ("a data value that is not a string is refused",
     {"message": a_message(data={"count": 3})}),
    ("a reserved data key is refused",
     {"message": a_message(data={"google.sent_time": "1"})}),
    ("a payload over 4 KB is refused",
     {"message": a_message(data={"blob": "x" * 4100})}),
    ("an unknown message field is refused",
     {"message": a_message(priority="high")}),
    ("an unknown android field is refused",
     {"message": a_message(android={"ttl": "1s", "time_to_live": 3})}),
    ("an unknown notification field is refused",
     {"message": a_message(notification={"title": "T", "subtitle": "S"})}),
    ("an unknown request field is refused",
     {"message": a_message(), "dry_run": True}),
    ("a request without a message is refused",
     {"validate_only": True}),
    ("an apns header that is not a string is refused",
     {"message": a_message(apns={"headers": {"apns-expiration": 1795392000}})}),
    ("an apns-expiration that is not Unix seconds is refused",
     {"message": a_message(apns={"headers": {"apns-expiration": "tomorrow"}})}),
    ("a webpush TTL that is not seconds is refused",
     {"message": a_message(webpush={"headers": {"TTL": "1h"}})}),
    ("a webpush Topic over 32 characters is refused",
     {"message": a_message(webpush={"headers": {"Topic": "a" * 33}})}),
    ("a webpush Topic outside URL-safe base64 is refused",
     {"message": a_message(webpush={"headers": {"Topic": "a/b"}})}),
    ("a message that is not an object is refused",
     {"message": "hello"}),
]


@in_module_loop
@pytest.mark.parametrize(("name", "request_body"), INVALID_REQUESTS,
                         ids=[name for name, _ in INVALID_REQUESTS])
async def test_the_emulator_refuses_what_fcm_refuses(
        name: str, request_body: dict[str, Any], fcm_emulator: httpx.AsyncClient) -> None:
    response = await fcm_emulator.post("/v1/projects/p/messages:send", json=request_body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": "INVALID_ARGUMENT"} in error["details"]
    assert await received(fcm_emulator) == []


VALID_REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("a complete message is accepted", {"message": a_message()}),
    ("a fractional android ttl is accepted",
     {"message": a_message(android={"ttl": "3.5s"})}),
    ("a message to a fid is accepted", {"message": a_message(token=None, fid="fid-1")}),
    ("a message to a topic is accepted", {"message": a_message(token=None, topic="offers")}),
    ("camelCase field names are accepted, as in proto3 JSON",
     {"message": a_message(android={"collapseKey": "c", "ttl": "1s"})}),
    ("a payload of exactly 4 KB is accepted",
     {"message": a_message(notification=None, data={"b": "x" * 4061})}),
]


@in_module_loop
@pytest.mark.parametrize(("name", "request_body"), VALID_REQUESTS,
                         ids=[name for name, _ in VALID_REQUESTS])
async def test_the_emulator_accepts_and_keeps_what_fcm_accepts(
        name: str, request_body: dict[str, Any], fcm_emulator: httpx.AsyncClient) -> None:
    response = await fcm_emulator.post("/v1/projects/p/messages:send", json=request_body)

    assert response.status_code == 200, response.text
    assert response.json()["name"].startswith("projects/p/messages/")
    [kept] = await received(fcm_emulator)
    assert kept["message"] == request_body["message"]


@in_module_loop
async def test_a_dry_run_is_validated_but_not_kept(fcm_emulator: httpx.AsyncClient) -> None:
    response = await fcm_emulator.post("/v1/projects/p/messages:send",
                                       json={"message": a_message(), "validate_only": True})

    assert response.status_code == 200
    assert await received(fcm_emulator) == []


ERROR_STATUS_CASES: list[tuple[str, dict[str, Any], int, str, str, str | None]] = [
    ("a 429 fault answers RESOURCE_EXHAUSTED with QUOTA_EXCEEDED and Retry-After",
     {"status": 429, "count": 1, "retry_after": 30}, 429, "RESOURCE_EXHAUSTED",
     "QUOTA_EXCEEDED", "30"),
    ("a 503 fault answers UNAVAILABLE, rounding Retry-After up to whole seconds",
     {"status": 503, "count": 1, "retry_after": 1.5}, 503, "UNAVAILABLE", "UNAVAILABLE", "2"),
    ("a 500 fault answers INTERNAL without Retry-After",
     {"status": 500, "count": 1}, 500, "INTERNAL", "INTERNAL", None),
]


@in_module_loop
@pytest.mark.parametrize(("name", "fault", "http_status", "status", "fcm_code", "retry_after"),
                         ERROR_STATUS_CASES, ids=[c[0] for c in ERROR_STATUS_CASES])
async def test_faults_answer_in_fcm_error_format(
        name: str, fault: dict[str, Any], http_status: int, status: str, fcm_code: str,
        retry_after: str | None, fcm_emulator: httpx.AsyncClient) -> None:
    (await fcm_emulator.post("/emulator/faults", json=fault)).raise_for_status()

    response = await fcm_emulator.post("/v1/projects/p/messages:send",
                                       json={"message": a_message()})

    assert response.status_code == http_status
    assert response.headers.get("Retry-After") == retry_after
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (http_status, status)
    assert error["details"][0]["errorCode"] == fcm_code


@in_module_loop
@pytest.mark.parametrize(("name", "fault"), [
    ("a fault with an unsupported status is refused", {"status": 502, "count": 1}),
    ("a fault with a negative count is refused", {"status": 503, "count": -1}),
    ("a fault with an unknown field is refused", {"status": 503, "count": 1, "delay": 2}),
])
async def test_bad_fault_requests_are_refused(name: str, fault: dict[str, Any],
                                              fcm_emulator: httpx.AsyncClient) -> None:
    assert (await fcm_emulator.post("/emulator/faults", json=fault)).status_code == 400


ATTEMPT_CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any], int, float | None]] = [
    ("an accepted send is logged as 200", None, {"message": a_message()}, 200, None),
    ("a send refused by a 503 fault is logged with the Retry-After it was given",
     {"status": 503, "count": 1, "retry_after": 1.5}, {"message": a_message()}, 503, 2.0),
    ("a send refused by a 429 fault is logged with its Retry-After",
     {"status": 429, "count": 1, "retry_after": 3}, {"message": a_message()}, 429, 3.0),
    ("an invalid message is logged as 400", None, {"message": a_message(token="")}, 400, None),
    ("an unregistered token is logged as 404", None,
     {"message": a_message(token="unregistered-1")}, 404, None),
]


@in_module_loop
@pytest.mark.parametrize(("name", "fault", "request_body", "status", "retry_after"),
                         ATTEMPT_CASES, ids=[c[0] for c in ATTEMPT_CASES])
async def test_every_send_attempt_is_logged_with_its_answer(
        name: str, fault: dict[str, Any] | None, request_body: dict[str, Any], status: int,
        retry_after: float | None, fcm_emulator: httpx.AsyncClient) -> None:
    if fault is not None:
        (await fcm_emulator.post("/emulator/faults", json=fault)).raise_for_status()
    before = system_clock()

    await fcm_emulator.post("/v1/projects/p/messages:send", json=request_body)

    [attempt] = (await fcm_emulator.get("/emulator/attempts")).json()["attempts"]
    assert (attempt["project"], attempt["status"], attempt["retry_after"],
            attempt["message"]) == ("p", status, retry_after, request_body["message"])
    assert datetime.fromisoformat(attempt["received_at"]) >= before


@in_module_loop
async def test_a_slowed_emulator_keeps_the_message_on_arrival_and_answers_later(
        fcm_emulator: httpx.AsyncClient) -> None:
    (await fcm_emulator.post("/emulator/latency", json={"delay_ms": 250})).raise_for_status()
    before = system_clock()

    response = await fcm_emulator.post("/v1/projects/p/messages:send",
                                       json={"message": a_message()})

    answered = system_clock()
    assert response.status_code == 200
    [kept] = await received(fcm_emulator)
    arrived = datetime.fromisoformat(kept["received_at"])
    assert answered - before >= timedelta(milliseconds=250)
    assert arrived - before < timedelta(milliseconds=250)


@in_module_loop
async def test_clearing_faults_also_ends_the_latency(fcm_emulator: httpx.AsyncClient) -> None:
    (await fcm_emulator.post("/emulator/latency", json={"delay_ms": 2000})).raise_for_status()
    (await fcm_emulator.delete("/emulator/faults")).raise_for_status()

    response = await fcm_emulator.post("/v1/projects/p/messages:send",
                                       json={"message": a_message()}, timeout=1.0)

    assert response.status_code == 200


@in_module_loop
async def test_clearing_the_messages_also_forgets_the_attempts(
        fcm_emulator: httpx.AsyncClient) -> None:
    await fcm_emulator.post("/v1/projects/p/messages:send", json={"message": a_message()})

    (await fcm_emulator.delete("/emulator/messages")).raise_for_status()

    assert (await fcm_emulator.get("/emulator/attempts")).json() == {"attempts": []}


@in_module_loop
@pytest.mark.parametrize(("name", "latency"), [
    ("a negative latency is refused", {"delay_ms": -1}),
    ("a latency over a minute is refused", {"delay_ms": 60_001}),
    ("a latency with an unknown field is refused", {"delay_ms": 10, "jitter_ms": 5}),
])
async def test_bad_latency_requests_are_refused(name: str, latency: dict[str, Any],
                                                fcm_emulator: httpx.AsyncClient) -> None:
    assert (await fcm_emulator.post("/emulator/latency", json=latency)).status_code == 400
