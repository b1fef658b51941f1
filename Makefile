# The front door: `make run` starts the system, `make test` checks it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(wildcard protos/oddstore/v1/*.proto)
GEN_STAMP := oddstore/v1/.generated

.PHONY: setup proto run test test-fast lint format bench-write bench-read bench-retention bench-takeover bench-feed bench-ws-fanout bench-security bench-columnar clean

setup: $(STAMP) $(GEN_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev,embedded]'
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

bench-retention: setup
	$(PY) -m bench.retention $(BENCH_ARGS)

bench-takeover: setup
	$(PY) -m bench.takeover $(BENCH_ARGS)

bench-feed: setup
	$(PY) -m bench.feed $(BENCH_ARGS)

# The gateway's CPU per WebSocket frame sent with 1,000 sockets, before and after each change to the send path.
bench-ws-fanout: setup
	$(PY) -m bench.ws_fanout $(BENCH_ARGS)

# The cost of TLS, mTLS and authentication: the same writes and reads, plain and secured, in one run.
bench-security: setup
	$(PY) -m bench.security $(BENCH_ARGS)

# Needs a server with citus_columnar (make citus; plain PostgreSQL is enough): BENCH_ARGS="--database-url URL".
bench-columnar: setup
	$(PY) -m bench.columnar $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data oddstore/v1/*_pb2*.py* $(GEN_STAMP)

# --- Containers (deploy/): an image per service, the compose stack, compose-based tests -------------------
COMPOSE := docker compose -f deploy/docker-compose.yml
# `make images IMAGES="writer"` rebuilds one image; ODDSTORE_VERSION overrides the tag (default version-sha).
IMAGES ?=

.PHONY: docker images images-offline secrets up up-citus down test-compose test-compose-citus

docker:
	deploy/ensure-docker.sh

images: docker
	deploy/build-images.sh $(IMAGES)

# Where no registry is reachable: stand-ins for python/postgres/redis built from Debian packages first.
images-offline: docker
	deploy/offline/build-bases.sh
	deploy/build-images.sh $(IMAGES)

# Ingest tokens (and later users) for the stack, made once into deploy/secrets (deploy/secrets.sh).
secrets: setup
	deploy/secrets.sh

up: images secrets
	$(COMPOSE) up -d --wait

# The same stack on a Citus coordinator and two workers (the profile `citus`; its image compiles Citus once).
up-citus: images secrets
	deploy/build-images.sh citus
	ODDSTORE_DATABASE_HOST=coordinator $(COMPOSE) --profile citus up -d --wait

down:
	$(COMPOSE) --profile simulator --profile citus down

test-compose: setup images
	ODDSTORE_COMPOSE_TESTS=1 $(PY) -m pytest -q tests/compose

test-compose-citus: setup images
	ODDSTORE_COMPOSE_TESTS=1 ODDSTORE_COMPOSE_CITUS=1 $(PY) -m pytest -q tests/compose

# --- Citus (issue 12): built from ../shared/vendor into the machine's PostgreSQL 15, a local cluster --------
CITUS_DIR ?= /tmp/oddstore-citus
CITUS_PORT ?= 9700
CITUS_URL := postgresql://postgres@127.0.0.1:$(CITUS_PORT)/postgres

.PHONY: citus citus-up citus-down test-citus bench-citus-write bench-citus-read

citus:
	deploy/citus/build.sh

citus-up: citus
	deploy/citus/cluster.sh start $(CITUS_DIR) $(CITUS_PORT)

citus-down:
	deploy/citus/cluster.sh stop $(CITUS_DIR) $(CITUS_PORT)

# The integration and end-to-end suites again, against the coordinator of the local cluster. The plain server of
# `make test` (TEST_PLAIN_DATABASE_URL, else TEST_DATABASE_URL) is what tests/e2e/test_citus_write_path.py compares
# the cluster's contents with. -rs: every skip says why.
test-citus: setup citus-up
	TEST_PLAIN_DATABASE_URL="$${TEST_PLAIN_DATABASE_URL:-$${TEST_DATABASE_URL:-}}" TEST_DATABASE_URL=$(CITUS_URL) \
		$(PY) -m pytest -q -rs tests/integration tests/e2e

# The write and read benchmarks on the local cluster beside plain PostgreSQL (DATABASE_URL, else 127.0.0.1:5432).
bench-citus-write: setup citus-up
	$(PY) -m bench.citus_write --citus-url $(CITUS_URL) $(BENCH_ARGS)

bench-citus-read: setup citus-up
	$(PY) -m bench.read --citus-url $(CITUS_URL) $(BENCH_ARGS)
