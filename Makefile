# Two commands on a fresh machine: `make dev` runs the service, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
N ?= 1000
LIMIT ?= 100

.PHONY: install dev migrate test check lint format load replay-dlq chaos bench soak clean screenshot bench-console

install: $(VENV)/.installed

# The product with its dev extra, then the tools (tools/: bench, chaos, the load generator), both
# editable and in one resolve, so the tools' dependency on router-service is this checkout.
$(VENV)/.installed: pyproject.toml tools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./tools
	touch $@

dev: install
	API_KEY=$${API_KEY:-dev-key} scripts/dev.sh

migrate: install
	$(BIN)/router-service migrate

test: install
	$(BIN)/pytest

check: install
	$(BIN)/ruff check router_service tests deploy tools
	$(BIN)/ruff format --check router_service tests deploy tools
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix router_service tests deploy tools
	$(BIN)/ruff format router_service tests deploy tools

load: install
	$(BIN)/router-service load -n $(N)

replay-dlq: install
	$(BIN)/router-service replay-dlq --limit $(LIMIT)

chaos: install
	$(BIN)/python -m chaos

bench: install
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis

soak: install
	$(BIN)/python -m bench --soak $(ARGS)

# The README's picture of the console, taken by the browser suite (headless Chromium).
screenshot: install
	CONSOLE_SCREENSHOT=docs/console.png $(BIN)/pytest -q tests/browser/test_readme_screenshot.py

# Server time of every console page on a log of 100,000 signals, SQLite and Postgres.
bench-console: install
	$(BIN)/python -m bench.console $(ARGS)
