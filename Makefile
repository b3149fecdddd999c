# floe-egress: `make demo` sets up and runs the demo; `make test` sets up and runs the checks.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo services lint typecheck test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/floe-egress demo

services:
	scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: install services lint typecheck
	$(BIN)/pytest -q

bench: install services
	$(BIN)/python bench/changes.py
	$(BIN)/python bench/sinks.py
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) .floe-egress .pytest_cache .mypy_cache .ruff_cache
