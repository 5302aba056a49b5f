# Two commands for a fresh machine (Python 3.11 + Java 17):  make demo   |   make test
PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
STAMP := $(VENV)/.installed
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
DATA_ROOT ?= .clickscore

.PHONY: setup airflow airflow-lock browser postgres demo notebooks test test-fast lint dist bench bench-train bench-score clean

# Creates the venv, installs the locked dependencies (torch, petastorm, Spark, Delta, GX...)
# with uv, fetches the Delta jars from Maven Central once into the Ivy cache, and the Data Docs
# front-end files from the npm registry once into the venv (so Data Docs render offline), and
# writes a class-data archive that later Spark JVMs start from.
#
# Both venvs get their bytecode at install time (--compile-bytecode): where
# $PYTHONDONTWRITEBYTECODE is set (this machine's image sets it) nothing writes a .pyc on first
# import, and every process compiled its imports from source again: `import great_expectations`
# took 10.5 s, 3.7 s with the bytecode; the suite starts dozens of such processes.
$(STAMP): pyproject.toml uv.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(VENV)/bin/uv sync --quiet --frozen --inexact --extra dev \
	  --compile-bytecode
	@echo "fetching the Delta jars (Maven Central) and the Data Docs assets (npm registry)"
	@$(VENV)/bin/python -m clickscore.core.spark --fetch-jars > $(VENV)/setup.log 2>&1 && \
	  $(VENV)/bin/python -m clickscore.dq.docs_assets --fetch >> $(VENV)/setup.log 2>&1 || \
	  { tail -n 40 $(VENV)/setup.log; exit 1; }
	@echo "writing the JVMs' class-data archive (clickscore.core.spark.CLASS_ARCHIVE)"
	@$(VENV)/bin/python -m clickscore.core.spark --class-archive >> $(VENV)/setup.log 2>&1 || \
	  { tail -n 40 $(VENV)/setup.log; exit 1; }
	touch $(STAMP)

setup: $(STAMP)

# Airflow 3.3 + the Apache Spark provider in their own venv (their pins need not bend to the
# Petastorm matrix), installed exactly from the project's lock (deploy/airflow-requirements.lock,
# made by `make airflow-lock` with uv from PyPI: it plays the part of Airflow's constraint files,
# which this machine cannot reach). Its SparkSubmitOperator calls the main venv's spark-submit.
$(AIRFLOW_STAMP): deploy/airflow-requirements.lock $(STAMP)
	test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(VENV)/bin/uv pip sync --quiet --compile-bytecode --python $(AIRFLOW_VENV)/bin/python \
	  deploy/airflow-requirements.lock
	touch $(AIRFLOW_STAMP)

airflow: $(AIRFLOW_STAMP)

airflow-lock: $(STAMP)
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes \
	  deploy/airflow-requirements.in -o deploy/airflow-requirements.lock

# The Data Docs test renders the HTML in Debian's headless Chromium (not a downloaded browser).
browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }

# The warehouse-export test starts a throwaway PostgreSQL server from Debian's binaries.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql; }

demo: $(STAMP)
	$(VENV)/bin/clickscore demo --data-root $(DATA_ROOT)

# The notebooks (notebooks/*.ipynb), run top to bottom against the demo's warehouse (make demo
# first); the executed copies, plots included, land in $(DATA_ROOT)/notebooks/.
notebooks: $(STAMP)
	$(VENV)/bin/python notebooks/run.py --data-root $(DATA_ROOT)

# Two test processes taking units of tests (the cluster and Airflow with the demo, the generated
# model, the real samples, ...) longest first, each the next when it runs short (tests/conftest.py).
test: $(STAMP) $(AIRFLOW_STAMP) dist browser postgres
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup --durations=30

# The inner loop: unit and DAG-integrity tests, one Spark session, no subprocess JVM.
test-fast: $(STAMP) $(AIRFLOW_STAMP)
	$(VENV)/bin/python -m pytest tests/unit tests/dags

lint: $(STAMP)
	$(VENV)/bin/ruff check lib jobs tests benchmarks airflow_dags notebooks
	$(VENV)/bin/mypy lib

# For spark-submit: the wheel (clusters that pip-install it) and a zip of the package for
# --py-files (clusters that cannot); both carry schemas/ as clickscore/_schemas.
dist: $(STAMP)
	rm -rf dist
	$(VENV)/bin/uv build --quiet --wheel --out-dir dist
	$(VENV)/bin/python -m zipfile -e dist/clickscore-*.whl dist/unpacked
	cd dist/unpacked && ../../$(VENV)/bin/python -m zipfile -c ../clickscore.zip clickscore
	rm -rf dist/unpacked
	@ls dist

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_etl.py

bench-train: $(STAMP)
	cd benchmarks && ../$(VENV)/bin/python bench_train.py

bench-score: $(STAMP) postgres
	$(VENV)/bin/python benchmarks/bench_score.py

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(DATA_ROOT) .pytest_cache dist
