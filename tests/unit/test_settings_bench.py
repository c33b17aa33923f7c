"""The benchmark controls `CONTEXTO_BENCH_SKIP_CONTEXT` and `CONTEXTO_BENCH_SKIP_ARBITRATION`:
off unless set to a true value."""

from __future__ import annotations

import pytest

from app.settings import Settings, from_environment

URL = "postgresql://x/y"


def test_settings_built_in_code_keep_the_context_engine_and_arbitration_on() -> None:
    settings = Settings(database_url=URL)
    assert settings.bench_skip_context is False
    assert settings.bench_skip_arbitration is False


@pytest.mark.parametrize(("environment", "skipped"), [
    pytest.param({}, False, id="an environment without the variable keeps the context on"),
    pytest.param({"CONTEXTO_BENCH_SKIP_CONTEXT": ""}, False, id="an empty value keeps it on"),
    pytest.param({"CONTEXTO_BENCH_SKIP_CONTEXT": "0"}, False, id="zero keeps it on"),
    pytest.param({"CONTEXTO_BENCH_SKIP_CONTEXT": "no"}, False, id="no keeps it on"),
    pytest.param({"CONTEXTO_BENCH_SKIP_CONTEXT": "1"}, True, id="one skips it"),
    pytest.param({"CONTEXTO_BENCH_SKIP_CONTEXT": "true"}, True, id="true skips it"),
])
def test_the_skip_switch_is_read_from_the_environment(environment: dict[str, str],
                                                      skipped: bool) -> None:
    settings = from_environment(environment, database_url=URL, admin_token=None)
    assert settings.bench_skip_context is skipped


@pytest.mark.parametrize(("environment", "skipped"), [
    pytest.param({}, False, id="an environment without the variable keeps arbitration on"),
    pytest.param({"CONTEXTO_BENCH_SKIP_ARBITRATION": ""}, False, id="an empty value keeps it on"),
    pytest.param({"CONTEXTO_BENCH_SKIP_ARBITRATION": "0"}, False, id="zero keeps it on"),
    pytest.param({"CONTEXTO_BENCH_SKIP_CONTEXT": "1"}, False,
                 id="skipping the context keeps arbitration on"),
    pytest.param({"CONTEXTO_BENCH_SKIP_ARBITRATION": "1"}, True, id="one skips it"),
    pytest.param({"CONTEXTO_BENCH_SKIP_ARBITRATION": "yes"}, True, id="yes skips it"),
])
def test_the_arbitration_switch_is_read_from_the_environment(environment: dict[str, str],
                                                             skipped: bool) -> None:
    settings = from_environment(environment, database_url=URL, admin_token=None)
    assert settings.bench_skip_arbitration is skipped
