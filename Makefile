# `make quickstart` and `make test` work from a clean clone with only Python 3.11+ installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: quickstart test lint format bench bench-peers browser mutation clean

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

# bench/serve.py --peers: MLflow's `mlflow models serve` and BentoML on the same model, each in
# its own virtualenv (never part of `make test`), pinned, with .venv's scikit-learn so they load
# the very pipeline Slipway serves. A peer that fails to install is skipped by the script, with
# the reason. BENCH_ARGS=--quick for 2-second runs.
PEER_MLFLOW ?= mlflow==3.17.2
PEER_BENTOML ?= bentoml==1.4.40
SKLEARN = $$($(BIN)/python -c 'import sklearn; print(sklearn.__version__)')
BENCH_ARGS ?=

.venv-mlflow/.installed: $(STAMP)
	test -x .venv-mlflow/bin/python || $(PYTHON) -m venv .venv-mlflow
	.venv-mlflow/bin/python -m pip install --quiet '$(PEER_MLFLOW)' "scikit-learn==$(SKLEARN)"
	touch $@

.venv-bentoml/.installed: $(STAMP)
	test -x .venv-bentoml/bin/python || $(PYTHON) -m venv .venv-bentoml
	.venv-bentoml/bin/python -m pip install --quiet '$(PEER_BENTOML)' "scikit-learn==$(SKLEARN)"
	touch $@

bench-peers: $(STAMP)
	-$(MAKE) .venv-mlflow/.installed
	-$(MAKE) .venv-bentoml/.installed
	$(BIN)/python bench/serve.py --peers $(BENCH_ARGS)

# Mutation testing of the core modules: slow (about an hour), so not part of `make test`.
# MUTATE="predict monitoring.drift" runs some modules only; see docs/design.md.
mutation: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python tools/mutation.py $(MUTATE)

clean:
	rm -rf $(VENV) .venv-mlflow .venv-bentoml .slipway quickstart-output .pytest_cache .ruff_cache .mypy_cache test-artifacts .mutation
