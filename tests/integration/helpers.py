"""Small helpers the integration tests share."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
from pyspark.sql import DataFrame, SparkSession

from clickscore.cli import Result, invoke
from clickscore.core.config import RunDate
from clickscore.core.delta import table_version
from clickscore.core.runs import RunCounts
from clickscore.ingest.config import IngestConfig
from clickscore.ingest.job import run_ingest
from clickscore.sessionize.config import SessionizeConfig
from clickscore.sessionize.job import run_sessionize

# a CLI process of its own: one core and 1 GiB for its driver, beside the test session's
CLI = [sys.executable, "-m", "clickscore.cli"]


CLI_ENV = {"CLICKSCORE_DRIVER_MEMORY": "1g", "CLICKSCORE_SPARK_MASTER": "local[1]"}


def run_cli(*args: str, data_root: Path | str, timeout: int = 600,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`clickscore ARGS --data-root DATA_ROOT` in a new process (its JVM with the suite's
    options, which the environment carries: `tests.conftest.TEST_JVM_ENV`), in `cwd`; its
    exit code, out and err."""
    return subprocess.run([*CLI, *args, "--data-root", str(data_root)], capture_output=True,
                          text=True, env={**os.environ, **CLI_ENV}, timeout=timeout,
                          check=False, cwd=cwd)


_STEPS = """import json, sys
from clickscore.cli import invoke
for argv in json.loads(sys.argv[1]):
    done = invoke(argv, capture=False)
    if done.exit_code:
        print(done.error, file=sys.stderr)
        sys.exit(done.exit_code)
"""


def run_cli_steps(*steps: list[str], data_root: Path,
                  timeout: int = 900) -> subprocess.CompletedProcess:
    """Several `clickscore` commands on DATA_ROOT one after another in one new process and
    one Spark session (`clickscore.cli.invoke`), stopping at the first that fails: a warehouse
    that processes of their own must read later (its catalog is that process's), built with
    one JVM start instead of one per command. Its exit code, out and err."""
    argvs = [[*step, "--data-root", str(data_root)] for step in steps]
    return subprocess.run([sys.executable, "-c", _STEPS, json.dumps(argvs)],
                          capture_output=True, text=True, env={**os.environ, **CLI_ENV},
                          timeout=timeout, check=False)


def table_at(spark: SparkSession, root: Path, name: str) -> DataFrame:
    """A table of another data root than the session's, read by path (that root's catalog
    belongs to the processes that wrote it)."""
    database, name = name.split(".")
    return spark.read.format("delta").load(str(root / "warehouse" / f"{database}.db" / name))


def taobao_users_share(taobao_file: Path, target: Path, every: int = 10) -> int:
    """One user in `every` of the Taobao sample, with all their events, written gzipped to
    `target`; the rows written."""
    with gzip.open(taobao_file, "rt") as whole:
        lines = [line for line in whole if int(line.split(",", 1)[0]) % every == 0]
    target.write_bytes(gzip.compress("".join(lines).encode()))
    return len(lines)


def invoke_cli(*args: str, data_root: str | Path) -> Result:
    """`clickscore ARGS --data-root DATA_ROOT` in this process and its Spark session (which
    must be on that data root): exit code, output, failure line, the run's counts."""
    return invoke([*args, "--data-root", str(data_root)])


# screenshots and other files a person may want to look at after a run (CI keeps them)
ARTIFACTS = Path(os.environ.get("CLICKSCORE_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / ".test-artifacts"))


def ingest(spark: SparkSession, data_root: str, source: str, path, run_date: str,
           **kw) -> RunCounts:
    return run_ingest(spark, IngestConfig(source=source, input_path=str(path),
                                          run_date=RunDate.parse(run_date),
                                          data_root=data_root, **kw))


def sessionize(spark: SparkSession, data_root: str, run_date: str, **kw) -> RunCounts:
    return run_sessionize(spark, SessionizeConfig(run_date=RunDate.parse(run_date),
                                                  data_root=data_root, **kw))


def snapshot(spark: SparkSession, table: str) -> DataFrame:
    """The table as of its current Delta version (unaffected by later writes)."""
    return spark.sql(f"SELECT * FROM {table} VERSION AS OF {table_version(spark, table)}")


SHOWN_ROWS = 10  # differing rows a failed comparison prints, of each side


def assert_same_rows(actual: DataFrame, expected: DataFrame, what: str = "") -> None:
    """Fail unless the two frames hold the same rows (as multisets, any order), showing the
    differing rows side by side: those only in `actual` next to those only in `expected`,
    sorted so that rows differing in one column line up. The difference is computed in Spark
    (`exceptAll` both ways); only the differing rows reach the driver."""
    assert actual.columns == expected.columns, (
        f"{what}: columns differ\n  actual:   {actual.columns}\n  expected: {expected.columns}")
    extra_df = actual.exceptAll(expected)
    missing_df = expected.exceptAll(actual)
    extra = extra_df.orderBy(*actual.columns).limit(SHOWN_ROWS).collect()
    missing = missing_df.orderBy(*actual.columns).limit(SHOWN_ROWS).collect()
    if not extra and not missing:
        return
    n_extra, n_missing = extra_df.count(), missing_df.count()
    lines = [f"{what or 'frames'}: {n_extra:,} row(s) only in actual, {n_missing:,} only in "
             f"expected (first {SHOWN_ROWS} of each, side by side)"]
    for i in range(max(len(extra), len(missing))):
        lines.append(f"  actual:   {_row(extra[i]) if i < len(extra) else '-'}")
        lines.append(f"  expected: {_row(missing[i]) if i < len(missing) else '-'}")
    raise AssertionError("\n".join(lines))


def _row(row) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in row.asDict().items())


def run_rows(spark: SparkSession, job: str) -> list[tuple]:
    """(run_key, status, input, output, quarantined, duplicates) of a job's runs, in order."""
    return [tuple(r) for r in spark.sql(f"""
        SELECT run_key, status, input_rows, output_rows, quarantined_rows, duplicate_rows
        FROM ops.pipeline_runs WHERE job = '{job}' ORDER BY started_at""").collect()]


class WarehouseStates:
    """Warehouses several tests start from, each built once per test session.

    The first test that asks for a state builds it (running the real stages) and continues
    on it; its tables are then frozen as copies of their Delta folders. Every later test gets
    an empty warehouse with each table restored as a copy of its frozen folder, registered in
    the catalog by its location: the test's own writes go to its copy, and the frozen one never
    changes. The counts the build's runs returned are kept with the state.

    (A `SHALLOW CLONE` of each frozen table did the same by writing a Delta commit per table:
    0.7-2.2 s a table, about 20 s for a real sample's state, against 0.06-0.07 s a table to
    copy the folder and register it: benchmarks/bench_restore.py. The states' tables are a few
    MB.)
    """

    def __init__(self, spark: SparkSession, root: Path) -> None:
        self.spark = spark
        self.root = root
        self.counts: dict[str, dict[str, RunCounts]] = {}
        self._restores = 0

    def start_from(self, name: str, build: Callable[[], dict[str, RunCounts]]
                   ) -> dict[str, RunCounts]:
        from tests.conftest import drop_all_tables

        drop_all_tables(self.spark)
        frozen = self.root / name
        if name in self.counts:
            self._restores += 1  # a folder of its own: Delta caches each path's log
            restored = self.root / "restored" / f"{self._restores}-{name}"
            for folder in sorted(frozen.iterdir()):
                shutil.copytree(folder, restored / folder.name)
                self.spark.sql(f"CREATE TABLE {folder.name} USING DELTA "
                               f"LOCATION '{restored / folder.name}'")
            return self.counts[name]
        counts = build()
        for database, table in self._tables():
            location = self.spark.sql(f"DESCRIBE DETAIL {database}.{table}").first()[
                "location"]
            shutil.copytree(urlparse(location).path, frozen / f"{database}.{table}")
        self.counts[name] = counts
        return counts

    def _tables(self) -> list[tuple[str, str]]:
        from clickscore.core.spark import DATABASES

        return [(database, t.name) for database in DATABASES
                for t in self.spark.catalog.listTables(database)
                if t.tableType != "VIEW" and not t.isTemporary]  # a test's temp views too


def render_in_chromium(page: Path, artifacts: Path, name: str,
                       size: str = "1280,900") -> tuple[str, Path]:
    """The page's DOM after its scripts ran, and a screenshot saved under `artifacts`."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed; `make test` installs it")
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / name
    # a profile of its own: two test processes may run Chromium at once
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]
    url = page.as_uri()
    dom = subprocess.run([chromium, *flags, "--dump-dom", url], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    subprocess.run([chromium, *flags, f"--screenshot={screenshot}", f"--window-size={size}",
                    "--hide-scrollbars", url], capture_output=True, timeout=120, check=True)
    shutil.rmtree(profile, ignore_errors=True)
    return dom, screenshot
