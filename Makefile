# pgbyte — the commands a developer and CI use. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := common source-postgres destination-postgres orchestrator
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench images clean postgres

install: $(STAMP)

# Reinstalls only when a pyproject, the constraints or the dev requirements change.
$(STAMP): $(PYPROJECTS) constraints.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -r requirements-dev.txt \
		$(addprefix -e ./,$(PACKAGES))
	@touch $@

# The PostgreSQL server binaries the tests start a throwaway server with.
postgres:
	@bash scripts/ensure-postgres.sh

test: install postgres
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: install postgres
	$(BIN)/python -m pgbyte.demo

bench: install postgres
	$(BIN)/python -m bench $(BENCH_ARGS)

images:
	bash scripts/build-images.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
