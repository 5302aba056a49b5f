"""`ops.dq_results`: every expectation result of every validated batch, and the history the
trailing checks read back from it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clickscore.core.contracts import table_schema
from clickscore.core.delta import append, read_table

RESULTS_TABLE = "ops.dq_results"
SAMPLE_SIZE = 20


@dataclass(frozen=True)
class CheckResult:
    """One expectation's outcome on one batch."""

    check: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed_value: Any = None
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    unexpected_sample: tuple[Any, ...] = ()
    exception: str | None = None
    bounds: str = ""

    def describe(self) -> str:
        """`name (expectation on column): what was observed`, for errors and logs."""
        on = f" on {self.column}" if self.column else ""
        if self.exception:
            found = f"raised {self.exception}"
        elif self.unexpected_count is not None:
            found = f"{self.unexpected_count} of {self.element_count} rows unexpected"
            if self.unexpected_sample:
                found += f", e.g. {list(self.unexpected_sample[:5])}"
        else:
            found = f"observed {_json(self.observed_value)}"
        expected = f" (expected {self.bounds})" if self.bounds else ""
        return f"{self.check} ({self.expectation}{on}): {found}{expected}"


@dataclass(frozen=True)
class BatchValidation:
    """A table's suite run on one batch."""

    run_id: str
    job: str
    table: str
    run_date: str
    batch_rows: int
    results: tuple[CheckResult, ...]
    skipped: tuple[str, ...]
    validated_at: datetime
    # the GX validation results stored for this batch (their Data Docs pages are built once
    # per run, see `gate.publishing`)
    stored_results: tuple[Any, ...] = ()
    segment: str | None = None  # see `trailing_observations`

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "critical"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == "warning"]


def record_results(
    spark: SparkSession, validations: Sequence[BatchValidation], published: bool | None
) -> None:
    """Append every result of `validations` to ops.dq_results in one commit."""
    rows = [
        {
            "run_id": v.run_id,
            "job": v.job,
            "table_name": v.table,
            "run_date": v.run_date,
            "check_name": r.check,
            "expectation": r.expectation,
            "column_name": r.column,
            "severity": r.severity,
            "success": r.success,
            "observed_value": _json(r.observed_value) if r.observed_value is not None else None,
            "element_count": r.element_count,
            "unexpected_count": r.unexpected_count,
            "unexpected_percent": r.unexpected_percent,
            "unexpected_sample": _json(list(r.unexpected_sample)) if r.unexpected_sample
            else None,
            "exception": r.exception,
            "batch_rows": v.batch_rows,
            "published": published,
            "validated_at": v.validated_at,
            "segment": v.segment,
        }
        for v in validations for r in v.results
    ]
    if rows:
        schema = table_schema(RESULTS_TABLE)
        append(spark, spark.createDataFrame(rows, schema.struct), RESULTS_TABLE)


def trailing_observations(
    spark: SparkSession, table: str, runs: Mapping[str, int], *, is_all: bool,
    segment: str | None = None, run_date: str | None = None,
) -> dict[str, list[Any]]:
    """For each check of `table` named in `runs`, its observed values on the last
    `runs[check]` published batches, newest first (one query for all of them); only batches
    of the same kind (`all` rebuilds or dated runs) and of the same `segment` (ingest's
    source: a new source starts with no history, a small source is not compared with a large
    one) are comparable.

    Dated runs count one observation per date, its newest (a day delivered in two files, or
    rerun, is one day of history, not two), and never `run_date`'s own (a late file of a day
    is not compared with the same day's first file)."""
    if not runs:
        return {}
    kind = F.col("run_date") == "all"
    # the few rows of this table's trailing checks, ordered and cut here: a window over them
    # in Spark cost two more jobs per validation than the rows are worth
    rows = (read_table(spark, RESULTS_TABLE)
            .where((F.col("table_name") == table) & F.col("check_name").isin(list(runs))
                   & F.col("published") & (kind if is_all else ~kind)
                   & F.col("observed_value").isNotNull()
                   & F.col("segment").eqNullSafe(F.lit(segment)))
            .select("check_name", "run_date", "observed_value", "validated_at")
            .collect())
    found: dict[str, list[Any]] = {check: [] for check in runs}
    seen: set[tuple[str, str]] = set()
    for row in sorted(rows, key=lambda r: r["validated_at"], reverse=True):
        check, day = row["check_name"], row["run_date"]
        if not is_all and (day == run_date or (check, day) in seen):
            continue  # one observation per date, its newest; never the run's own date
        seen.add((check, day))
        if len(found[check]) < runs[check]:
            found[check].append(json.loads(row["observed_value"]))
    return found


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)
