# contexto — the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint unit demo bench eval eval-intent fuzz install clean console-vendor postgis

# The console's browser tests drive Debian's Chromium (Playwright may not download browsers).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium

$(STAMP): pyproject.toml | $(CHROMIUM)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# PostGIS for the local PostgreSQL 15, for the side-by-side matcher bench only (the service never
# needs it). Best effort: without it (no apt, no root) `bench.match_compare` says so and goes on.
POSTGIS_CONTROL := /usr/share/postgresql/15/extension/postgis.control
postgis:
	@test -f $(POSTGIS_CONTROL) || (apt-get update -q && apt-get install -y -q postgresql-15-postgis-3) \
		|| echo "PostGIS could not be installed: bench.match_compare will run without it"

run: $(STAMP)
	$(PY) -m app

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q -p no:cacheprovider

# The schema fuzzer alone, with many more generated examples per operation than `make test`
# runs (5); FUZZ_SEED picks another run of examples.
FUZZ_EXAMPLES ?= 300
FUZZ_SEED ?= 20261123
fuzz: $(STAMP)
	CONTEXTO_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CONTEXTO_FUZZ_SEED=$(FUZZ_SEED) \
		$(PY) -m pytest -q -p no:cacheprovider tests/api/test_schema_fuzz.py

demo: $(STAMP)
	$(PY) -m fixtures.demo

bench: $(STAMP) postgis
	$(PY) -m bench.match_compare
	$(PY) -m bench.fence_match
	$(PY) -m bench.predict
	$(PY) -m bench.catalog_refresh
	$(PY) -m bench.uplift
	$(PY) -m bench.context
	$(PY) -m bench.context --without arbitration --interleave
	$(PY) -m bench.e2e --concurrency 32
	$(PY) -m bench.e2e --concurrency 32 --skip-context
	$(PY) -m bench.e2e --concurrency 32 --skip-arbitration
	$(PY) -m bench.e2e --concurrency 8
	$(PY) -m bench.backtest
	$(PY) -m bench.growth
	$(PY) -m bench.webhooks

eval: $(STAMP)
	$(PY) -m fixtures.visits --seed 7 --train .contexto/eval/train.csv --test .contexto/eval/test.csv
	$(PY) -m geo.predict evaluate --train .contexto/eval/train.csv --test .contexto/eval/test.csv \
		--probs .contexto/eval/probs.csv

# p_buy on the real REES46 sample in fixtures/ (two disjoint halves of its customers); for the
# full logs, see README "Customer intent".
eval-intent: $(STAMP)
	$(PY) -m customers.intent evaluate --train fixtures/rees46_sample_train.csv \
		--test fixtures/rees46_sample_test.csv --out .contexto/eval/intent.csv

# Re-fetch the console's vendored libraries from the npm registry at their pinned versions and
# check them against console/vendor.sha256 (`make test` never needs npm: the files are committed).
console-vendor:
	console/vendor.sh

clean:
	rm -rf $(VENV) .contexto
