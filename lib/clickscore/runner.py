"""The stage runner: the choreography every stage shares, written once.

It sits above the data-quality engine (`clickscore.dq`), which sits above `clickscore.core`:
every stage that runs through it is gated by Great Expectations, and says so by importing it.

    with stage_run(spark, "features", RunKey.at(as_of), data_root=root) as stage:
        batch_df = stage.stage("user_features", compute(...))       # computed once, held
        stage.validate(batch_df, "gold.user_features", parameters)   # its table's suite
        with stage.publish():                                        # only if no critical
            metrics = replace_where(...)                              # check failed
        stage.finish(RunCounts(input_rows=..., output_rows=...))

A stage supplies its compute, its tables and its counts. The runner records the run in
`ops.pipeline_runs` (failed too), checks reconciliation, holds staged batches and releases
them, times each step (`stage`, `validate`, `publish`, or any named with `step`) into the run's
details, and logs one start line and one summary line (rows in / out, quarantined,
duplicates, gate outcome, duration).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from clickscore.core.config import RunDate, RunKey
from clickscore.core.faults import pause_point
from clickscore.core.runs import Run, RunCounts, tracked_run
from clickscore.core.staging import StagingArea, staging_area
from clickscore.dq.gate import publishing, validate_batch

log = logging.getLogger(__name__)

# A step that takes this long is reported as it ends; shorter ones only with --verbose.
LONG_STEP_S = 30.0


class StageRun:
    """One run of a stage, as its compute sees it."""

    def __init__(self, spark: SparkSession, run: Run, staging: StagingArea, data_root: str,
                 dq_run_date: RunDate) -> None:
        self.spark = spark
        self.run = run
        self.staging = staging
        self.data_root = data_root
        self.dq_run_date = dq_run_date
        self.seconds: dict[str, float] = defaultdict(float)
        self.validations: list[Any] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a step; steps of the same name add up."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] += elapsed
            log.log(logging.INFO if elapsed >= LONG_STEP_S else logging.DEBUG,
                    "%s %s: %s took %.1fs", self.run.job, self.run.key, name, elapsed)

    def stage(self, name: str, df: DataFrame) -> DataFrame:
        """Compute a batch once into the run's staging area (see `core.staging`)."""
        with self.step("stage"):
            held = self.staging.stage(name, df)
        log.debug("%s %s: staged %s (%s rows)", self.run.job, self.run.key, name,
                  f"{self.staging.rows[name]:,}")
        pause_point(self.run.job, "staged")
        return held

    def validate(self, batch_df: DataFrame, table: str, *,
                 parameters: Mapping[str, Any] | None = None,
                 references: Mapping[str, DataFrame] | None = None,
                 segment: str | None = None, empty_allowed: bool = False) -> Any:
        """Run `table`'s suite on a staged batch; `publish` acts on every validation
        (`segment`, `empty_allowed`: see `dq.gate.validate_batch`)."""
        with self.step("validate"):
            validation = validate_batch(
                self.spark, batch_df, table=table, run_id=self.run.run_id, job=self.run.job,
                run_date=self.dq_run_date, data_root=self.data_root, parameters=parameters,
                references=references, segment=segment, empty_allowed=empty_allowed)
        self.validations.append(validation)
        return validation

    @contextmanager
    def publish(self) -> Iterator[None]:
        """Guard the writes: `DataQualityError` before them if a critical check failed;
        every result is recorded in ops.dq_results either way."""
        with self.step("publish"), publishing(self.spark, self.validations,
                                                  self.data_root):
            yield
        pause_point(self.run.job, "published")

    def finish(self, counts: RunCounts) -> RunCounts:
        """Set the run's counts; step timings and gate warnings join its details."""
        counts.details["seconds"] = {k: round(v, 2) for k, v in self.seconds.items()}
        if self.validations:
            # which table each belongs to is in ops.dq_results
            counts.details["dq_warnings"] = [w.check for v in self.validations
                                             for w in v.warnings]
        self.run.counts = counts
        return counts

    def gate_outcome(self) -> str:
        if not self.validations:
            return "no gate"
        warnings = sum(len(v.warnings) for v in self.validations)
        return "gate passed" + (f" with {warnings} warning(s)" if warnings else "")


def summary_line(stage: StageRun, duration: float) -> str:
    """`ingest 2019-10-01: 8,672 in -> 8,641 out, 29 quarantined, 2 duplicates; gate passed;
    12.3s`"""
    c = stage.run.counts
    parts = [f"{c.input_rows:,} in -> {c.output_rows:,} out"]
    if c.quarantined_rows:
        parts.append(f"{c.quarantined_rows:,} quarantined")
    if c.duplicate_rows:
        parts.append(f"{c.duplicate_rows:,} duplicates")
    return (f"{stage.run.job} {stage.run.key}: {', '.join(parts)}; "
            f"{stage.gate_outcome()}; {duration:.1f}s")


@contextmanager
def stage_run(spark: SparkSession, job: str, key: RunKey, *, data_root: str,
              dq_run_date: RunDate | None = None, source: str | None = None,
              what: str | None = None) -> Iterator[StageRun]:
    """Run a stage: tracked in ops.pipeline_runs, with a staging area released at the end.

    `key` is what the run is recorded under; `dq_run_date` the date its batches are
    validated for (defaults to the key's date, or `all` for a key that is no date); `what`
    names the input on the start line.
    """
    if dq_run_date is None:
        dq_run_date = key.run_date or RunDate(None)
    started = time.perf_counter()
    about = ", ".join(x for x in (source, what) if x)
    log.info("%s %s: started%s", job, key, f" ({about})" if about else "")
    with tracked_run(spark, job, key, source=source) as run, staging_area() as staging:
        stage = StageRun(spark, run, staging, data_root, dq_run_date)
        yield stage
    log.info("%s", summary_line(stage, time.perf_counter() - started))
