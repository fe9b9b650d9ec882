# pgbyte — the commands a developer and CI use. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := common source-postgres destination-postgres orchestrator
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench images clean postgres pyairbyte-venv

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

test: install postgres pyairbyte-venv
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

# PyAirbyte (tests/pyairbyte drive our connectors through it) pins its own airbyte-cdk and
# pydantic, so it gets its own venv. uv installs the ~180 pinned packages in seconds where pip
# takes minutes; `uv pip sync` makes the venv match the lock exactly.
PYAIRBYTE_VENV := .venv-pyairbyte
PYAIRBYTE_LOCK := tests/pyairbyte/requirements.txt
PYAIRBYTE_STAMP := $(PYAIRBYTE_VENV)/.installed

pyairbyte-venv: $(PYAIRBYTE_STAMP)

$(PYAIRBYTE_STAMP): $(PYAIRBYTE_LOCK)
	@test -x $(PYAIRBYTE_VENV)/bin/python || $(PYTHON) -m venv $(PYAIRBYTE_VENV)
	@test -x $(PYAIRBYTE_VENV)/bin/uv || $(PYAIRBYTE_VENV)/bin/pip install -q --disable-pip-version-check \
		$$(grep '^uv==' $(PYAIRBYTE_LOCK))
	$(PYAIRBYTE_VENV)/bin/uv pip sync -q --compile-bytecode --python $(PYAIRBYTE_VENV)/bin/python \
		$(PYAIRBYTE_LOCK)
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
