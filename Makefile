# floe-egress: `make demo` sets up and runs the demo; `make test` sets up and runs the checks.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install install-floe demo services browser lint typecheck test test-floe screenshot bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The second test environment: floe-egress beside the real floe-core (extra `floe`).
FLOE_VENV  := .venv-floe
FLOE_STAMP := $(FLOE_VENV)/.installed

$(FLOE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(FLOE_VENV)
	$(FLOE_VENV)/bin/pip install --quiet --upgrade pip
	$(FLOE_VENV)/bin/pip install --quiet -e '.[floe,dev]'
	touch $(FLOE_STAMP)

install-floe: $(FLOE_STAMP)

demo: install
	$(BIN)/floe-egress demo

services:
	scripts/ensure-services.sh

browser:
	scripts/ensure-browser.sh

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: install services browser lint typecheck
	$(BIN)/pytest -q
	$(MAKE) test-floe

test-floe: install-floe services
	$(FLOE_VENV)/bin/pytest -q tests/floe_core tests/contract/test_floe_plugin.py

# The README's picture of the status page, taken by the browser test.
screenshot: install services browser
	mkdir -p docs
	FLOE_EGRESS_SCREENSHOT=$(CURDIR)/docs/status-page.png $(BIN)/pytest -q \
		tests/integration/daemon/test_status_page.py -k three

bench: install services
	$(BIN)/python bench/changes.py
	$(BIN)/python bench/sinks.py
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) $(FLOE_VENV) .floe-egress .pytest_cache .mypy_cache .ruff_cache
