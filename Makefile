# One entry point for people and CI. Everything runs inside .venv, made on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GEN := clients/python/buildcontrol
PROTOS := $(wildcard protos/buildcontrol/v1/*.proto)
BUF := tools/buf/node_modules/.bin/buf

.PHONY: run test test-fast lint typecheck check proto proto-lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Python stubs (with .pyi, typed gRPC stubs by mypy-protobuf) from protos/; generated,
# never edited, never committed.
$(GEN)/v1/.stamp: $(PROTOS) $(STAMP)
	rm -rf $(GEN)/v1 && mkdir -p $(GEN)/v1
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=clients/python --pyi_out=clients/python \
	    --grpc_python_out=clients/python \
	    --plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc --mypy_grpc_out=clients/python \
	    $(PROTOS)
	touch $(GEN)/v1/__init__.py $(GEN)/v1/.stamp

proto: $(GEN)/v1/.stamp

# Run the server with its embedded default: SQLite under ./data, gRPC on 127.0.0.1:50051.
run: proto
	$(VENV)/bin/buildcontrol serve --data-dir data --listen 127.0.0.1:50051

test: proto
	$(PY) -m pytest -q -p no:cacheprovider

lint: proto proto-lint
	$(VENV)/bin/ruff check server clients/python/buildcontrol_client tests bench
	$(VENV)/bin/ruff format --check server clients/python/buildcontrol_client tests bench
	$(VENV)/bin/mypy

$(BUF): tools/buf/package.json tools/buf/package-lock.json
	cd tools/buf && npm ci --no-audit --no-fund --silent
	touch $(BUF)

proto-lint: $(BUF)
	$(BUF) lint protos

check: lint test

bench: proto
	$(PY) bench/cancel_latency.py

clean:
	rm -rf $(VENV) $(GEN)/v1 tools/buf/node_modules
