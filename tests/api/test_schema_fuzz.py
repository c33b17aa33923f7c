"""The whole OpenAPI document, fuzzed with schemathesis against the app in-process.

Every operation of `/schema/openapi.json` gets generated requests (valid ones, invalid ones, and
the boundary values of its coverage phase); each request is sent once with a valid token of each
role, so the routes a role may not call are checked to answer their documented 403 too. Every
answer must be no server error, a status the operation documents, with the documented content
type, headers and body schema.

The app runs with its lifespan (a real PostgreSQL pool, the catalog) on a pinned clock, in a
world seeded through the API — a store, its fence, a campaign naming them, a sent delivery, a
key per role and a device — and path parameters draw those ids as well as random ones, so the
routes are exercised past "not found". Requests that would wreck the shared world act on a
throwaway instead (a device changing or erasing itself), and a world whose store, fence or
campaign was deleted is seeded again.

`make test` runs a few examples per operation (CONTEXTO_FUZZ_EXAMPLES, default 5); `make fuzz`
runs many more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.clock import PinnedClock
from app.main import create_app
from tests.api.conftest import settings_for
from tests.api.fuzz_world import ROLES, World, seed_world

EXAMPLES = int(os.environ.get("CONTEXTO_FUZZ_EXAMPLES", "5"))
# A Wednesday at noon UTC: inside the seeded campaign's schedule, outside default quiet hours.
PINNED_AT = datetime(2026, 6, 10, 12, 0, tzinfo=UTC)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
# Besides what the schema says, one value of a body or query is sometimes swapped for one known
# to break services (see the hooks below): NUL (PostgreSQL refuses it in text), odd unicode,
# integers past PostgreSQL's and JSON's ranges. Some fields draw valid values often, so requests
# get past the first check to the code behind it (a store needs a real time zone, a ping a
# recent instant).
HOSTILE_STRINGS = ["\x00", "a\x00b", "\x00\x00\x00", "\ufeff", "\u202e\u0645", "\U0001d54f",
                   "\r\n", " ", "İı", "ß", "\u0663", "%00", "../..", "' OR 1=1 --", "null",
                   "NaN", "1e309", "-0", "Europe/Paris", "2026-06-10T11:59:00Z"]
EDGE_INTEGERS = [0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, 2**63,
                 -(2**63) - 1, 2**64, 10**30]
EDGE_NUMBERS = [0.0, -0.0, 5e-324, 1e-7, 1e16, 1.7976931348623157e308, -1.7976931348623157e308]
ZONES = ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Asia/Kathmandu",
         "Pacific/Chatham", "Etc/GMT+12"]
INSTANTS = [(PINNED_AT - timedelta(seconds=s)).isoformat() for s in (0, 30, 600, 7200, 86000)]
CONFIG = schemathesis.Config.from_dict({
    "seed": int(os.environ.get("CONTEXTO_FUZZ_SEED", "20261123")),
    "dictionaries": {
        "zones": {"values": ZONES},
        "instants": {"values": INSTANTS},
    },
    "generation": {
        "mode": "all", "max-examples": EXAMPLES,
    },
    "parameters": {
        "body.timezone": {"dictionary": "zones", "probability": 0.6},
        "body.pings[*].ts": {"dictionary": "instants", "probability": 0.6},
        "body.signals[*].ts": {"dictionary": "instants", "probability": 0.6},
        "body.ts": {"dictionary": "instants", "probability": 0.6},
    },
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
})


# The document is built at collection, from an app that is never started (building it needs no
# database); `test_the_fuzzed_document_is_the_one_the_service_serves` holds it to the served one.
DOCUMENT = create_app(settings_for("postgresql://unused.invalid/documents-only")
                      ).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
# The world of the running module, for the hook below (filled by the `world` fixture).
SEEDED: list[World] = []


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the time, well-formed ids are swapped for the seeded ones of their kind (drawn as
    each case is built, so a re-seeded world is used)."""
    ids = SEEDED[-1].ids if SEEDED else {}
    seeded = {name: ids[name] for name, value in (path_parameters or {}).items()
              if name in ids and _is_uuid(value)}
    if not seeded:
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, **seeded}])


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    return _sometimes_hostile(body)


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> Any:
    return _sometimes_hostile(query)


Path = tuple[str | int, ...]


def _sometimes_hostile(value: Any) -> Any:
    """One time in four, one scalar inside `value` is swapped for a hostile one of its type."""
    leaves = list(_scalars(value, ()))
    if not leaves:
        return st.just(value)
    swapped = st.sampled_from(leaves).flatmap(lambda leaf: st.sampled_from(
        HOSTILE_STRINGS if isinstance(leaf[1], str)
        else EDGE_INTEGERS if isinstance(leaf[1], int) else EDGE_NUMBERS,
    ).map(lambda hostile: _replaced(value, leaf[0], hostile)))
    return st.integers(0, 3).flatmap(lambda n: swapped if n == 0 else st.just(value))


def _scalars(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _scalars(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _scalars(item, (*path, index))
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        yield path, value


def _replaced(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[int(head)] = _replaced(value[int(head)], rest, new)
    return copy


def _is_uuid(value: object) -> bool:
    try:
        UUID(str(value))
    except ValueError:
        return False
    return True


class Tally:
    """What the run did, for its closing line."""

    def __init__(self) -> None:
        self.cases = 0
        self.requests = 0
        self.operations: set[str] = set()


@pytest.fixture(scope="module")
def fuzzed_app(module_database_url: str) -> Iterator[Litestar]:
    # The device budget is out of the way here (its 429 has its own test): a budget spent by
    # the fuzzer would leave the device's routes answering nothing but 429.
    settings = settings_for(module_database_url, device_burst=1e9,
                            device_batches_per_second=1e9)
    app = create_app(settings, clock=PinnedClock(PINNED_AT))
    try:
        yield app
    finally:
        asgi.shutdown_lifespans()  # the pool closes before the database is dropped


@pytest.fixture(scope="module")
def world(fuzzed_app: Litestar, module_database_url: str) -> Iterator[World]:
    SEEDED.append(seed_world(fuzzed_app, module_database_url, PINNED_AT))
    try:
        yield SEEDED[-1]
    finally:
        SEEDED.pop()


@pytest.fixture(scope="module")
def client(fuzzed_app: Litestar, world: World) -> Iterator[asgi.ASGIClient]:
    """A session into the app in-process (the one whose lifespan holds the pool)."""
    with asgi.get_client(fuzzed_app) as session:
        yield session


def test_the_fuzzed_document_is_the_one_the_service_serves(client: asgi.ASGIClient) -> None:
    assert client.get("/schema/openapi.json").json() == DOCUMENT


@pytest.fixture(scope="module")
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    counts = Tally()
    yield counts
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nschemathesis {schemathesis.__version__}: {counts.cases} cases on "
                f"{len(counts.operations)} operations, {counts.requests} requests (up to "
                f"{EXAMPLES} generated examples per operation and phase, {len(ROLES)} roles)")


@schema.parametrize()
@hypothesis.settings(deadline=None, database=None, print_blob=False,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_answers_every_role_as_documented(
        case: schemathesis.Case, client: asgi.ASGIClient, world: World, tally: Tally) -> None:
    tally.cases += 1
    tally.operations.add(case.operation.label)
    for role in ROLES:
        token = world.token_for(role, case.operation.method.upper(), case.operation.path)
        response = case.call_and_validate(
            session=client, base_url=client.base_url, checks=CHECKS,
            headers={"Authorization": f"Bearer {token}"})
        tally.requests += 1
        if case.operation.method.upper() == "DELETE" and response.status_code == 204:
            world.repair()
