# Two commands for a fresh machine (Python 3.11 + Java 17):  make demo   |   make test
PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
STAMP := $(VENV)/.installed
DATA_ROOT ?= .clickscore

.PHONY: setup demo test lint bench clean

# Creates the venv, installs the locked dependencies (torch, petastorm, Spark, Delta, GX...)
# with uv, and fetches the Delta jars from Maven Central once into the Ivy cache.
$(STAMP): pyproject.toml uv.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(VENV)/bin/uv sync --frozen --inexact --extra dev
	$(VENV)/bin/python -m clickscore.spark --fetch-jars
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/clickscore demo --data-root $(DATA_ROOT)

test: $(STAMP)
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check lib jobs tests benchmarks
	$(VENV)/bin/mypy lib

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_etl.py

clean:
	rm -rf $(VENV) $(DATA_ROOT) .pytest_cache
