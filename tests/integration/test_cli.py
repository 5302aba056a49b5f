"""The console script in separate processes: tables written by one process resolve by name in
the next (persistent catalog), `sql` prints CSV/JSON, failures exit non-zero with a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "clickscore.cli"]


def run(*args: str, data_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLICKSCORE_DRIVER_MEMORY": "1g", "CLICKSCORE_SPARK_MASTER": "local[1]"}
    return subprocess.run([*CLI, *args, "--data-root", str(data_root)], capture_output=True,
                          text=True, env=env, timeout=600, check=False)


def test_tables_resolve_by_name_from_a_later_process(tmp_path, rees46_file):
    root = tmp_path / "root"
    ingest = run("ingest", "--source", "rees46", "--input", str(rees46_file),
                 "--run-date", "2019-10-01", data_root=root)
    assert ingest.returncode == 0, ingest.stderr[-3000:]

    query = run("sql", "SELECT event_type, count(*) AS n FROM bronze.events GROUP BY 1 "
                "ORDER BY 1", "--format", "json", data_root=root)
    assert query.returncode == 0, query.stderr[-3000:]
    rows = [json.loads(line) for line in query.stdout.splitlines() if line.startswith("{")]
    assert rows == [{"event_type": "cart", "n": 165}, {"event_type": "purchase", "n": 214},
                    {"event_type": "view", "n": 17_055}]

    bad = run("ingest", "--source", "rees46", "--input", str(tmp_path / "missing*.csv"),
              "--run-date", "2019-10-01", data_root=root)
    assert bad.returncode == 1
    assert "input not found" in bad.stderr and "missing*.csv" in bad.stderr


def test_help_lists_the_stages_and_bad_arguments_exit_2():
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, check=True).stdout
    for stage in ("generate", "ingest", "sessionize", "sql", "demo"):
        assert stage in out
    bad = subprocess.run([*CLI, "sessionize", "--run-date", "yesterday"], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2 and "YYYY-MM-DD or 'all'" in bad.stderr
