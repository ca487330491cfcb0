# reelforge: `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: run test demo lint bench install clean help

help:
	@echo "make run    - install, migrate, start API + worker + console on http://127.0.0.1:8000"
	@echo "make test   - install and run the whole test suite (lint, types, tests)"
	@echo "make demo   - run every available application once through the real API and worker"
	@echo "make lint   - ruff and mypy"
	@echo "make bench  - benchmarks (results in bench/results/, summary in docs/benchmarks.md)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build that ships with this machine image; see docs/decisions.md
	$(PY) -m pip install --quiet -e '.[ml,dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/reelforge run

demo: $(STAMP)
	$(VENV)/bin/reelforge demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(PY) -m pytest -m "not bench and not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench.queue_throughput

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
