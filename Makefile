# One command for the main job, one for the tests. Everything runs from the uv-locked venv.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(CURDIR)/var/prefect

.PHONY: install demo test lint stack-up stack-down prefect-ui bench

install:
	@command -v uv >/dev/null || python3 -m pip install --quiet "uv==0.13.9"
	uv sync --frozen

demo: install
	uv run driftline demo

test: install
	uv run pytest

lint: install
	uv run ruff check . && uv run ruff format --check .

stack-up: install
	uv run driftline stack up

stack-down:
	uv run driftline stack down

prefect-ui: install
	uv run prefect server start --host 127.0.0.1

bench: install
	uv run python scripts/benchmark.py
