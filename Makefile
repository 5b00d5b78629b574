# Retention pipeline. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MANIFEST := dbt_project/target/manifest.json

export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)
export DO_NOT_TRACK := 1
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export GX_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export SCARF_ANALYTICS := false
export PYTHONWARNINGS := ignore::DeprecationWarning

.PHONY: help env run test lint bench warehouse-start warehouse-stop manifest clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# The environment is rebuilt from the lock file whenever the lock or pyproject changes.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip sync --quiet --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@touch $(STAMP)

env: $(STAMP) ## Build the virtual environment from requirements.lock

$(MANIFEST): $(STAMP) $(shell find dbt_project -name '*.sql' -o -name '*.yml' -o -name '*.csv' | grep -v -e target/ -e logs/)
	$(PY) -m retention.cli dbt-parse

manifest: $(MANIFEST) ## Compile the dbt manifest (Cosmos loads the DAG's dbt tasks from it)

run: $(STAMP) $(MANIFEST) ## Start the warehouse, make the demo company, run every DAG end to end
	$(PY) -m retention.cli run-demo

test: $(STAMP) $(MANIFEST) lint ## Lint and run the whole test suite
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP) ## ruff and sqlfluff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m retention.cli sqlfluff-lint

bench: $(STAMP) $(MANIFEST) ## Run the benchmarks and write BENCHMARKS.md
	$(PY) -m retention.bench

warehouse-start: $(STAMP) ## Start the embedded PostgreSQL (no-op with WAREHOUSE_URL)
	$(PY) -m retention.warehouse start

warehouse-stop: $(STAMP) ## Stop the embedded PostgreSQL
	$(PY) -m retention.warehouse stop

clean: ## Stop the warehouse and delete the state folder and build output
	-$(PY) -m retention.warehouse stop
	rm -rf .state dbt_project/target dbt_project/logs
