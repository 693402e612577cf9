# `make quickstart` and `make test` work from a clean clone with only Python 3.11+ installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: quickstart test lint format bench browser mutation clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Slipway needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

quickstart: $(STAMP)
	$(BIN)/slipway quickstart

# Debian's chromium + chromedriver for the console's browser tests (installed when missing).
browser:
	.ci/browser.sh

test: $(STAMP) lint browser
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests bench tools
	$(BIN)/ruff check --fix src tests bench tools

bench: $(STAMP)
	$(BIN)/python bench/serve.py

# Mutation testing of the core modules: slow (about an hour), so not part of `make test`.
# MUTATE="predict monitoring.drift" runs some modules only; see docs/design.md.
mutation: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tools/mutation.py $(MUTATE)

clean:
	rm -rf $(VENV) .slipway quickstart-output .pytest_cache .ruff_cache .mypy_cache test-artifacts .mutation
