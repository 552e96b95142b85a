# The two commands: `make demo` runs the demo, `make test` runs the whole test suite.
# Both create .venv with python3 (>= 3.11) and install what they need: the demo only the `demo` extra, the tests
# every extra and the dev tools. Stamps keep each install to once per pyproject.toml change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Every extra in pyproject.toml: `make test` installs them all.
EXTRAS := asgi,server,grpc,spiffe,redis,otel,prometheus,fastapi,demo
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp
# Wheels of the dependencies, for the test that installs the built wheel into fresh venvs without the network.
WHEELHOUSE := $(VENV)/wheelhouse
WHEELHOUSE_STAMP := $(WHEELHOUSE)/.stamp

.PHONY: demo test lint bench

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "txtoken needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $(DEMO_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]" --group dev
	touch $(STAMP)

$(WHEELHOUSE_STAMP): pyproject.toml | $(BIN)/python
	rm -rf $(WHEELHOUSE)
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) ".[demo]"
	rm -f $(WHEELHOUSE)/txtoken-*.whl
	touch $(WHEELHOUSE_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/txtoken demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint $(WHEELHOUSE_STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/verify.py
