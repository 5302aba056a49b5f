"""The Airflow environment (`make airflow`) the DAG tests run Airflow from."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "airflow_dags"
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for an Airflow process: its own home (SQLite metadata database), the
    project's DAG folder, no example DAGs."""
    return {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", **extra}


@pytest.fixture(scope="session")
def parsed_dags(tmp_path_factory) -> dict:
    """The probe's account of the DAG folder, parsed once by Airflow's own DagBag."""
    assert AIRFLOW_PYTHON.exists(), f"{AIRFLOW_PYTHON} is missing: run `make airflow`"
    out = tmp_path_factory.mktemp("dag-probe") / "dags.json"
    done = subprocess.run(
        [str(AIRFLOW_PYTHON), str(Path(__file__).with_name("dag_probe.py")), str(DAGS),
         str(out)], env=airflow_env(out.parent / "home"), capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())
