# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Demo size: about 1/10 of the real population, so it runs in a few minutes on 2 cores.
# `make demo FULL=1` generates the real sizes (891,221 population / 191,652 customers).
ROWS ?= 90000
CUSTOMERS_ROWS ?= 20000
ifdef FULL
ROWS := 891221
CUSTOMERS_ROWS := 191652
endif
DATA ?= data/demo

.PHONY: venv demo test test-large test-latest lock lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# The exact versions in requirements.lock (reproducible runs), then the project itself without resolving again.
$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/segmentation generate --out $(DATA) --rows $(ROWS) --customers-rows $(CUSTOMERS_ROWS) \
	    --mailout-rows 4000 --seed 42
	$(BIN)/segmentation run jobs/demo.yml --population $(DATA)/population.csv --customers $(DATA)/customers.csv

# The suite but for the test marked `large` (6 min alone on 2 cores), so that it stays under ~15 minutes.
test: $(STAMP)
	$(BIN)/ruff check segmentation tests benchmarks
	$(BIN)/python -m pytest -q -rs -m "not large"

# The low-memory profile on data three times the workers' memory (about 4 GB of disk for a while).
test-large: $(STAMP)
	$(BIN)/python -m pytest -q -rs -m large

# The whole suite on the newest releases that pyproject.toml allows, in a fresh environment of its own
# (resolved anew each time, so it follows new releases).
LATEST ?= .venv-latest
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST) || python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip uv
	# uv resolves the newest releases directly (pip's backtracking through moto[server]'s tree ends in
	# functools32, a Python 2 package, and fails)
	$(LATEST)/bin/python -m uv pip install --quiet --python $(LATEST)/bin/python --upgrade -e '.[test]'
	$(LATEST)/bin/python -m pip list --format=freeze | grep -iE '^(pandas|numpy|scikit-learn|dask|distributed|dask-ml|pyarrow|scipy|numba)=='
	$(LATEST)/bin/python -m pytest -q -rs  # all of it, the large test too

# Regenerate requirements.lock: the lowest versions pyproject.toml allows for direct dependencies (so the
# lower ends of the ranges are what `make test` tests), for every platform and Python 3.11+.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/python -m uv pip compile pyproject.toml --extra test --universal --python-version 3.11 \
	    --resolution lowest-direct --quiet -o requirements.lock

lint: $(STAMP)
	$(BIN)/ruff check segmentation tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) $(LATEST) runs data
