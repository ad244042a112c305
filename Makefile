# One entry point for people and CI. Everything runs inside .venv, made on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STUBS := stubs
GEN := $(STUBS)/buildcontrol_proto
PROTOS := $(wildcard protos/buildcontrol/v1/*.proto)
BUF := tools/buf/node_modules/.bin/buf
NODE_CLIENT := clients/node

# Inputs of `make fuzz` (the bounded run inside `make test` uses about 10,000), and the
# seconds it may take (generous: the machines are shared).
FUZZ_INPUTS ?= 100000
FUZZ_SECONDS ?= 7200

.PHONY: fuzz run test test-fast lint typecheck check proto proto-lint bench bench-quick clean node-test proto-check docs \
	package-check test-floor docker-check buf postgres haproxy chaos soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Python stubs (with .pyi, typed gRPC stubs by mypy-protobuf) from protos/ into the
# package buildcontrol_proto (tools/proto/generate.py, which the wheel's build hook runs
# too); generated, never edited, never committed. Their old place under clients/ goes.
$(GEN)/v1/.stamp: $(PROTOS) $(STAMP) tools/proto/generate.py
	rm -rf clients/python/buildcontrol
	$(PY) tools/proto/generate.py $(STUBS) --mypy-grpc $(VENV)/bin/protoc-gen-mypy_grpc
	touch $(GEN)/v1/.stamp

proto: $(GEN)/v1/.stamp

# Run the server with its embedded default: SQLite under ./data, gRPC on 127.0.0.1:50051.
run: proto
	$(VENV)/bin/buildcontrol serve --data-dir data --listen 127.0.0.1:50051

# The Node.js client's tests run first (they start their own server); tests/tools needs buf.
# The PostgreSQL tests start their own server (tests/support/postgres_server.py).
test: proto $(BUF) node-test postgres haproxy
	$(PY) -m pytest -q -p no:cacheprovider

# PostgreSQL's binaries for the tests: nothing to do when initdb is there; as root,
# the Debian package `postgresql` is installed; otherwise one line says the PostgreSQL
# tests will skip (under CI=true they fail instead: CI never passes by skipping them).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then \
	    :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing PostgreSQL (Debian package postgresql) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
	    echo "make postgres: no initdb and not root: the PostgreSQL tests will skip (install the postgresql package)"; \
	fi

# HAProxy for the tests behind a proxy (tests/support/haproxy.py, deploy/haproxy.cfg):
# as for PostgreSQL, the Debian package `haproxy` is installed as root when missing.
haproxy:
	@if command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ]; then \
	    :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing HAProxy (Debian package haproxy) for the tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	else \
	    echo "make haproxy: no haproxy and not root: the tests behind a proxy will skip (install the haproxy package)"; \
	fi

# npm ci from the committed package-lock; again only when package.json or the lock change.
$(NODE_CLIENT)/node_modules/.installed: $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --silent
	touch $@

node-test: proto $(NODE_CLIENT)/node_modules/.installed
	cd $(NODE_CLIENT) && node --test test/

lint: proto proto-lint
	$(VENV)/bin/ruff check server clients/python/buildcontrol_client tests bench tools stubs cli
	$(VENV)/bin/ruff format --check server clients/python/buildcontrol_client tests bench tools stubs cli
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tools/docs

$(BUF): tools/buf/package.json tools/buf/package-lock.json
	cd tools/buf && npm ci --no-audit --no-fund --silent
	touch $(BUF)

# The pinned buf, for commands by hand: make buf ARGS="curl --list-services ..."
buf: $(BUF)
	$(BUF) $(ARGS)

proto-lint: $(BUF)
	$(BUF) lint protos

# buf lint, buf breaking against the previous committed protos, and a self-check that a
# breaking change is caught (tools/buf/check-protos.sh says which commit is compared).
proto-check: $(BUF)
	tools/buf/check-protos.sh

# Rewrite the generated blocks of docs/: the state tables (from domain/states.py) and
# the serve flags (from the CLI's parser). tests/docs fails while they are stale.
docs: $(STAMP)
	$(PY) tools/docs/state_tables.py
	$(PY) tools/docs/serve_flags.py
	$(PY) tools/docs/pipeline_schema.py

check: lint test

# The fuzz test of tests/security for FUZZ_INPUTS hostile inputs (default 100,000: ~30 min
# on 2 shared cores, load 15); prints the count and the statuses at the end.
fuzz: proto
	BUILDCONTROL_FUZZ_INPUTS=$(FUZZ_INPUTS) BUILDCONTROL_FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -p no:cacheprovider -s \
	    tests/security/test_fuzz.py

# Benchmarks (bench/run.py; never part of `make test`): the floor, 3 rounds of every
# scenario, the floor again; ~25 minutes on 2 cores at load 10. The `bench` extra adds
# matplotlib (the plot), uvloop and py-spy. `$(PY) bench/run.py --help` for the rest.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The soak (bench/soak.py): a server under steady load with retention on for
# SOAK_MINUTES (default 30), sampled every minute (RSS, open fds, live actors, database
# size); exit 1 when something grows past its bound after the warm-up.
SOAK_MINUTES ?= 30
soak: proto
	$(PY) bench/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# BACKEND=postgresql: the key scenarios on SQLite and PostgreSQL, side by side.
BACKEND ?= sqlite
bench: proto $(BENCH_STAMP)
	$(PY) bench/run.py --backend $(BACKEND) $(BENCH_ARGS)

# Every scenario once with small numbers, the floor before and after, and the
# PostgreSQL comparison where PostgreSQL is installed: numbers printed, not judged
# (bench/results/quick*.json). CI runs it, so a benchmark that breaks is caught then.
bench-quick: proto $(BENCH_STAMP) postgres
	$(PY) bench/run.py --quick
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then \
	    $(PY) bench/run.py --quick --backend postgresql; \
	else \
	    echo "bench-quick: no PostgreSQL (make postgres): its comparison not run"; \
	fi

# The sdist and the wheel as a release builds them, the wheel installed into a clean venv
# outside the repository, and a cancel end to end with the installed `buildcontrol`.
package-check: $(STAMP)
	tools/package/check.sh

# The whole suite on the lowest versions the dependencies allow (pyproject's floors), in
# a venv of its own: a floor that does not really work fails here.
FLOOR_VENV := .venv-floor
test-floor: $(STAMP) $(NODE_CLIENT)/node_modules/.installed
	rm -rf $(FLOOR_VENV) && $(PYTHON) -m venv $(FLOOR_VENV)
	$(PY) tools/package/floors.py > $(FLOOR_VENV)/constraints.txt
	$(FLOOR_VENV)/bin/pip install -q --upgrade pip
	$(FLOOR_VENV)/bin/pip install -q -c $(FLOOR_VENV)/constraints.txt -e '.[dev]'
	$(FLOOR_VENV)/bin/pip list 2>/dev/null | grep -iE '^(grpcio|protobuf|aiosqlite|prometheus|pyyaml|httpx|rich) '
	$(FLOOR_VENV)/bin/python -m pytest -q -p no:cacheprovider -x tests/unit tests/store tests/rpc tests/e2e

# The container image: built where a container engine answers, else hadolint.
docker-check: $(STAMP)
	tools/package/docker_check.sh

# The fault-injection walks of tests/faults, many of them (docs/testing.md): CHAOS_RUNS
# runs (default 10,000), CHAOS_PARALLEL at a time (default 3: a walk mostly waits on
# timers and streams), under nice; prints the runs and failures at the end.
CHAOS_RUNS ?= 10000
CHAOS_PARALLEL ?= 3
chaos: proto
	CHAOS_RUNS=$(CHAOS_RUNS) CHAOS_PARALLEL=$(CHAOS_PARALLEL) nice $(PY) -m tests.faults.chaos

clean:
	rm -rf $(VENV) $(FLOOR_VENV) $(GEN)/v1 tools/buf/node_modules $(NODE_CLIENT)/node_modules
