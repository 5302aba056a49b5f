"""`ops.pipeline_runs`: every stage run leaves one row, succeeded or failed."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import SparkSession

from clickscore.core.contracts import table_schema
from clickscore.core.delta import append
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
    run_date: str
    source: str | None
    counts: RunCounts = field(default_factory=RunCounts)


@contextmanager
def tracked_run(
    spark: SparkSession, job: str, run_date: str, *, source: str | None = None
) -> Iterator[Run]:
    """Time a run and record it in ops.pipeline_runs, whether it succeeds or fails (stages
    use it through `core.runner.stage_run`).

    The run is checked for reconciliation before it is recorded as succeeded.
    """
    run = Run(run_id=str(uuid.uuid4()), job=job, run_date=run_date, source=source)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    try:
        yield run
        if not run.counts.reconciles():
            raise ReconciliationError(job, run_date, run.counts.as_dict())
    except BaseException as exc:
        _record(spark, run, started, time.perf_counter() - t0, "failed", repr(exc))
        raise
    duration = time.perf_counter() - t0
    _record(spark, run, started, duration, "succeeded", None)
    log.debug("%s run %s for %s succeeded in %.1fs: %s", job, run.run_id, run_date, duration,
              run.counts.as_dict())


def _record(
    spark: SparkSession, run: Run, started: datetime, duration: float, status: str,
    error: str | None,
) -> None:
    row = {
        "run_id": run.run_id,
        "job": run.job,
        "run_date": run.run_date,
        "source": run.source,
        "status": status,
        **run.counts.as_dict(),
        "started_at": started,
        "finished_at": datetime.now(UTC),
        "duration_s": float(duration),
        "error": error[:4000] if error else None,
        "details": json.dumps(run.counts.details, default=str, sort_keys=True),
    }
    append(spark, spark.createDataFrame([row], table_schema(RUNS_TABLE).struct), RUNS_TABLE)
