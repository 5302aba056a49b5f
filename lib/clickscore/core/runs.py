"""`ops.pipeline_runs`: every stage run leaves one row, written `running` when it starts and
updated to `succeeded` or `failed` when it ends.

A run is keyed by what it works on (`run_key` and `run_kind`, a `core.config.RunKey`: a date,
`all`, an instant, a span of cutoffs or a table version).

A run killed on the way (`kill -9`, a lost executor host, an Airflow task timeout) cannot
update its row: it stays `running`. The next run of the same stage and key finds it and,
when its process is gone, records it `abandoned` with when and by which run it was found, so
the table shows every attempt. A process is known gone when this process holds the data root
(the embedded catalog admits one process, see `core.spark.hold_data_root`), or when it ran on
this host and its pid is no longer alive; a `running` row of a process that may be alive on
another host is left as it is.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clickscore.core.config import RunKey
from clickscore.core.contracts import table_schema
from clickscore.core.delta import ensure_table
from clickscore.core.errors import ReconciliationError

log = logging.getLogger(__name__)

RUNS_TABLE = "ops.pipeline_runs"


@dataclass
class RunCounts:
    """Row accounting for one run: input = output + quarantined + duplicates."""

    input_rows: int = 0
    output_rows: int = 0
    quarantined_rows: int = 0
    duplicate_rows: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def reconciles(self) -> bool:
        """Every count is a count (>= 0) and rows in = out + quarantined + duplicates."""
        counts = self.as_dict().values()
        return min(counts) >= 0 and (
            self.input_rows == self.output_rows + self.quarantined_rows + self.duplicate_rows)

    def as_dict(self) -> dict[str, int]:
        return {
            "input_rows": self.input_rows,
            "output_rows": self.output_rows,
            "quarantined_rows": self.quarantined_rows,
            "duplicate_rows": self.duplicate_rows,
        }


@dataclass
class Run:
    run_id: str
    job: str
    key: RunKey
    source: str | None
    counts: RunCounts = field(default_factory=RunCounts)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@contextmanager
def tracked_run(
    spark: SparkSession, job: str, key: RunKey, *, source: str | None = None
) -> Iterator[Run]:
    """Time a run and record it in ops.pipeline_runs: `running` at the start (after marking
    earlier runs of this job and key left `running` by a dead process `abandoned`), then
    `succeeded` or `failed` (stages use it through `runner.stage_run`).

    The run is checked for reconciliation before it is recorded as succeeded.
    """
    run = Run(run_id=str(uuid.uuid4()), job=job, key=key, source=source)
    t0 = time.perf_counter()
    abandon_dead_runs(spark, job, key, found_by=run.run_id)  # creates the table first
    _start(spark, run)
    try:
        yield run
        if not run.counts.reconciles():
            raise ReconciliationError(job, str(key), run.counts.as_dict())
    except BaseException as exc:
        _finish(spark, run, time.perf_counter() - t0, "failed", repr(exc))
        raise
    duration = time.perf_counter() - t0
    _finish(spark, run, duration, "succeeded", None)
    log.debug("%s run %s for %s succeeded in %.1fs: %s", job, run.run_id, key, duration,
              run.counts.as_dict())


def _runs_table(spark: SparkSession) -> None:
    """Create ops.pipeline_runs if need be, and bring one written before runs had `host` and
    `pid` (and before `finished_at` could be null), or before their key was `run_key` with
    its `run_kind` (it was `run_date`), up to its contract (checked once per Spark
    application)."""
    schema = ensure_table(spark, RUNS_TABLE)
    if spark.sparkContext.applicationId in _checked:
        return
    found = {f.name: f for f in spark.table(RUNS_TABLE).schema.fields}
    if "run_date" in found and "run_key" not in found:
        _rename_run_date(spark)
        found = {f.name: f for f in spark.table(RUNS_TABLE).schema.fields}
    missing = [c for c in schema.columns if c.name not in found]
    if missing:
        spark.sql(f"ALTER TABLE {RUNS_TABLE} ADD COLUMNS ("
                  + ", ".join(f"`{c.name}` {c.type.upper()}" for c in missing) + ")")
    for c in schema.columns:
        if c.nullable and c.name in found and not found[c.name].nullable:
            spark.sql(f"ALTER TABLE {RUNS_TABLE} ALTER COLUMN `{c.name}` DROP NOT NULL")
    _checked.add(spark.sparkContext.applicationId)


_checked: set[str] = set()

# a stored key's kind, from its form (as RunKey.parse reads it)
_KIND_SQL = """CASE WHEN run_key = 'all' THEN 'all'
    WHEN run_key RLIKE '^[a-z_]+[.][a-z_]+@v[0-9]+$' THEN 'version'
    WHEN run_key LIKE '%..%' THEN 'span'
    WHEN run_key RLIKE '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' THEN 'date'
    ELSE 'instant' END"""


def _rename_run_date(spark: SparkSession) -> None:
    """A runs table from before `run_key`: its `run_date` column is renamed in place (Delta
    column mapping by name, so no data file is rewritten) and `run_kind` is filled from each
    key's form."""
    log.info("%s: renaming run_date to run_key and adding run_kind", RUNS_TABLE)
    spark.sql(f"ALTER TABLE {RUNS_TABLE} SET TBLPROPERTIES ('delta.columnMapping.mode' = "
              "'name', 'delta.minReaderVersion' = '2', 'delta.minWriterVersion' = '5')")
    spark.sql(f"ALTER TABLE {RUNS_TABLE} RENAME COLUMN run_date TO run_key")
    spark.sql(f"ALTER TABLE {RUNS_TABLE} ADD COLUMNS (run_kind STRING)")
    spark.sql(f"UPDATE {RUNS_TABLE} SET run_kind = {_KIND_SQL}")
    spark.sql(f"ALTER TABLE {RUNS_TABLE} SET TBLPROPERTIES "
              "('delta.dataSkippingStatsColumns' = '" + ",".join(
                  table_schema(RUNS_TABLE).stats_columns) + "')")


def _start(spark: SparkSession, run: Run) -> None:
    row = {"run_id": run.run_id, "job": run.job, "run_key": str(run.key),
           "run_kind": run.key.kind, "source": run.source, "status": "running",
           "started_at": run.started_at, "host": socket.gethostname(), "pid": os.getpid()}
    # a plain append, without `core.delta.append`'s metrics: this runs for every stage run
    spark.createDataFrame([row], table_schema(RUNS_TABLE).struct).writeTo(RUNS_TABLE).append()


def _this_run(run_id: str, job: str, key: RunKey, started_at: datetime) -> F.Column:
    # job, run_key and started_at: Delta skips files by their statistics (see the contract)
    return ((F.col("job") == job) & (F.col("run_key") == str(key))
            & (F.col("started_at") == F.lit(started_at)) & (F.col("run_id") == run_id))


def code() -> str:
    """Which clickscore ran: its version and where it was loaded from (the packaged zip a
    spark-submit ships with --py-files, or an installed tree), for a run's details."""
    import clickscore

    return f"clickscore {clickscore.__version__} from {os.path.dirname(clickscore.__file__)}"


def _finish(spark: SparkSession, run: Run, duration: float, status: str,
            error: str | None) -> None:
    run.counts.details.setdefault("code", code())
    values = {"status": status, **run.counts.as_dict(), "finished_at": datetime.now(UTC),
              "duration_s": float(duration), "error": error[:4000] if error else None,
              "details": json.dumps(run.counts.details, default=str, sort_keys=True)}
    (DeltaTable.forName(spark, RUNS_TABLE)
     .update(_this_run(run.run_id, run.job, run.key, run.started_at),
             {k: F.lit(v) for k, v in values.items()}))


def _gone(host: str | None, pid: int | None) -> bool:
    """Whether the process that wrote a `running` row has certainly ended."""
    from clickscore.core.spark import holds_data_root

    if host == socket.gethostname() and pid == os.getpid():
        return False  # a run of this process (nested)
    if holds_data_root():
        return True  # no other process can be using this catalog
    if host != socket.gethostname() or pid is None:
        return False  # alive or not, this process cannot tell
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, run by another user
    return False


def abandon_dead_runs(spark: SparkSession, job: str, key: RunKey, *,
                      found_by: str) -> list[str]:
    """Record the runs of `job` for `key` left `running` by a process that has ended as
    `abandoned` (when and by which run they were found in `error`); returns their run ids."""
    _runs_table(spark)
    stale = (spark.table(RUNS_TABLE)
             .where((F.col("job") == job) & (F.col("run_key") == str(key))
                    & (F.col("status") == "running"))
             .select("run_id", "host", "pid", "started_at").collect())
    now = datetime.now(UTC)
    dead = []
    for r in stale:
        if not _gone(r["host"], r["pid"]):
            log.info("%s %s: run %s (pid %s on %s) is still recorded running and may be alive",
                     job, key, r["run_id"], r["pid"], r["host"])
            continue
        dead.append(r["run_id"])
        log.warning("%s %s: run %s (pid %s on %s, started %s) ended without an outcome; "
                    "recording it abandoned", job, key, r["run_id"], r["pid"], r["host"],
                    r["started_at"])
        (DeltaTable.forName(spark, RUNS_TABLE)
         .update(_this_run(r["run_id"], job, key, r["started_at"])
                 & (F.col("status") == "running"),
                 {"status": F.lit("abandoned"), "finished_at": F.lit(now),
                  "error": F.lit(f"abandoned: process {r['pid']} on {r['host']} ended without "
                                 f"recording an outcome; found at {now.isoformat()} by run "
                                 f"{found_by}")}))
    return dead


def published_rows(spark: SparkSession, job: str, key: RunKey, source: str | None) -> int:
    """The rows that the succeeded runs of `job` for `key` (and `source`) have published so
    far: a day's total before this run, when a day arrives in several files."""
    _runs_table(spark)
    summed = (spark.table(RUNS_TABLE)
              .where((F.col("job") == job) & (F.col("run_key") == str(key))
                     & F.col("source").eqNullSafe(F.lit(source))
                     & (F.col("status") == "succeeded"))
              .agg(F.sum("output_rows")).first())
    return int(summed[0] or 0) if summed is not None else 0
