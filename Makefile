# One command for the main job, one for the tests. Everything runs from .venv, the environment
# uv.lock pins, built on the machine's python3: where uv is not installed (a stock Debian account),
# `make` puts it in var/tools first, from PyPI, with Debian's python3 -m venv.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(CURDIR)/var/prefect
# the machine's python3, never a downloaded one; TLS trusted as the machine trusts it
export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS := 1

PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/var/tools/bin/uv)
PACKAGES := core data_lake driftline flows model_registry tasks scripts

.PHONY: install demo test test-fast lint stack-up stack-down bench

install: .venv/.installed

# bytecode is installed with the environment: no run compiles its imports (and machines that
# set PYTHONDONTWRITEBYTECODE=1 never would)
.venv/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --extra s3 --compile-bytecode --python $(PYTHON)
	.venv/bin/python -m compileall -q $(PACKAGES)
	touch $@

$(CURDIR)/var/tools/bin/uv:
	$(PYTHON) -m venv var/tools
	var/tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

demo: install
	.venv/bin/driftline demo

test: install
	.venv/bin/pytest

# the logic tier alone: no server processes (e2e), no Prefect flows (prefect), nothing slow;
# under a minute on a 2-core machine
test-fast: install
	.venv/bin/pytest -m "not e2e and not prefect and not slow"

lint: install
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

stack-up: install
	.venv/bin/driftline stack up

stack-down:
	.venv/bin/driftline stack down

bench: install
	.venv/bin/python scripts/benchmark.py
	.venv/bin/python scripts/bench_commands.py

# the process work pool POOL and every served model's nightly deployment (DRIFTLINE_MODELS) plus
# the backfill, on the Prefect server at PREFECT_API_URL; then: prefect worker start --pool POOL
POOL ?= driftline
.PHONY: deploy
deploy: install
	.venv/bin/python -m flows.deployments deploy --pool $(POOL)
