# Labes: `make run` sets up and serves the demo; `make test` sets up and runs every test.
SHELL := /bin/bash
# The interpreter .venv is built with: scripts/pick-python prefers an optimised build (see there); PYTHON=… overrides.
PICK_PYTHON := $(dir $(lastword $(MAKEFILE_LIST)))scripts/pick-python
PYTHON ?= $(shell $(PICK_PYTHON))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000
BENCH_DB ?= sqlite
BENCH_MEMBERS ?= 100000

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Labes needs Python 3.11 or newer that can make a venv (python3.11, python3.12 or python3.13 on PATH; on Debian also python3.11-venv)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)
	$(BIN)/labes db upgrade

run: install
	$(BIN)/labes demo
	$(BIN)/labes serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/import_bench.py --members $(BENCH_MEMBERS) --db $(BENCH_DB)
	$(BIN)/python bench/lookup_bench.py --members $(BENCH_MEMBERS) --db $(BENCH_DB)

clean:
	rm -rf $(VENV) labes.db labes.db-wal labes.db-shm var
