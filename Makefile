# `make run` sets up and runs the main job; `make test` sets up and runs lint and the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench fuzz clean

# OpenBLAS's kernels, as `ridgerider/__init__.py` pins them: pytest's plugins load numpy
# before any test imports ridgerider, and the in-process runs must use the pool workers' kernels.
ifeq ($(shell uname -m),x86_64)
export OPENBLAS_CORETYPE ?= Haswell
endif

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned to the CPU build that lies on this disk; installing it first keeps
# pip from resolving a (multi-GB) CUDA build for the project's `torch>=` requirement.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# The dashboard's browser test drives Debian's Chromium through its chromedriver.
CHROMEDRIVER := /usr/bin/chromedriver
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(CHROMEDRIVER):
	$(SUDO) apt-get install -y -q chromium chromium-driver || \
		($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver)

run: $(STAMP)
	$(BIN)/ridgerider run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint $(CHROMEDRIVER)
	$(BIN)/python -m pytest

bench: $(STAMP) $(CHROMEDRIVER)
	$(BIN)/python bench/eigsh.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/paper.py

# The HTTP fuzz (schemathesis, stateful) with 20x the examples `make test` runs.
fuzz: $(STAMP)
	RIDGERIDER_FUZZ_EXAMPLES=500 $(BIN)/python -m pytest tests/api/test_http.py -k fuzz

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
