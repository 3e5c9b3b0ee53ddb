# lightsoc — the two commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench eval lint setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh
	@touch $(STAMP)

demo: setup
	$(BIN)/lightsoc demo $(DEMO_ARGS)

test: setup
	$(BIN)/ruff check src tests bench eval
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python -m compileall -q src  # bytecode of edits since setup: starts as installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

eval: setup
	$(BIN)/python eval/run.py $(EVAL_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench eval
	$(BIN)/ruff format --check src tests bench eval

clean:
	rm -rf $(VENV) lightsoc-demo .pytest_cache
