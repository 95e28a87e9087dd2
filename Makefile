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

.PHONY: venv demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/segmentation generate --out $(DATA) --rows $(ROWS) --customers-rows $(CUSTOMERS_ROWS) \
	    --mailout-rows 4000 --seed 42
	$(BIN)/segmentation run jobs/demo.yml --population $(DATA)/population.csv --customers $(DATA)/customers.csv

test: $(STAMP)
	$(BIN)/ruff check segmentation tests benchmarks
	$(BIN)/python -m pytest -q -rs

lint: $(STAMP)
	$(BIN)/ruff check segmentation tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) runs data
