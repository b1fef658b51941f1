# The front door: `make run` starts the system, `make test` checks it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/oddstore/v1/*.proto)
GEN_STAMP := oddstore/v1/.generated

.PHONY: setup proto run test test-fast lint format bench-write bench-read clean

setup: $(STAMP) $(GEN_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

proto: $(GEN_STAMP)

$(GEN_STAMP): $(PROTOS) $(STAMP)
	PATH=$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -I protos --python_out=. --grpc_python_out=. \
		--mypy_out=. --mypy_grpc_out=. $(PROTOS)
	touch $@

run: setup
	$(PY) -m oddstore_cli.main run

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy oddstore oddstore_cli services

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: setup lint
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q tests/unit

bench-write: setup
	$(PY) -m bench.write $(BENCH_ARGS)

bench-read: setup
	$(PY) -m bench.read $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data oddstore/v1/*_pb2*.py* $(GEN_STAMP)
