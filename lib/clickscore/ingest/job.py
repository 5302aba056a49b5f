"""Ingest job: landing files of one source -> bronze.events, rejected rows ->
quarantine.events. Both are published only after the bronze batch passes its suite.

Idempotent: both writes insert only rows whose keys are new, so re-ingesting a file adds
nothing. Exact duplicate rows are kept in bronze; sessionize removes and counts them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clickscore.core.config import RunKey
from clickscore.core.delta import append, has_rows_where, merge_insert_new
from clickscore.core.errors import EmptyInputError, UnreadableInputError, java_cause
from clickscore.core.faults import pause_point
from clickscore.core.runs import RunCounts
from clickscore.core.staging import new_observation, observed
from clickscore.ingest.config import IngestConfig
from clickscore.ingest.reader import list_files, read_raw
from clickscore.ingest.sources import get_adapter, source_names
from clickscore.ingest.transforms import (
    BRONZE,
    bronze_rows,
    checked_events,
    quarantine_rows,
    staged_rows,
)
from clickscore.runner import stage_run

log = logging.getLogger(__name__)

QUARANTINE = "quarantine.events"


def run_ingest(spark: SparkSession, cfg: IngestConfig) -> RunCounts:
    """Ingest `cfg.input_path`; returns the reconciled counts recorded in ops.pipeline_runs.

    Write-audit-publish: the input is parsed once into the run's staging area (accepted and
    rejected rows side by side), the bronze batch is validated with its suite, and only then
    are both outputs written to bronze.events and quarantine.events. Rows in are the lines
    the reader produced, observed independently of both outputs, so reconciliation catches a
    row that neither accounts for.
    """
    log.debug("ingest config: %s", cfg)
    with stage_run(spark, "ingest", RunKey.of_date(cfg.run_date), data_root=cfg.data_root,
                   source=cfg.source, what=cfg.input_path) as stage:
        run = stage.run
        files = list_files(spark, cfg.input_path)
        log.debug("ingest %s: %d file(s) from %s", cfg.run_date, len(files), cfg.input_path)
        # Rows in are the lines read, observed as they stream past the parser; rows out and
        # quarantined are counted from what is written, so a line lost on the way shows.
        lines = new_observation("ingest-lines")
        raw_df = (read_raw(spark, get_adapter(cfg.source).layout, files)
                  .observe(lines, F.count(F.lit(1)).alias("rows")))
        ingested_at = datetime.now(UTC)
        try:  # the first full read of the files: a truncated or corrupt one fails here
            checked_df = stage.stage("checked",
                                     staged_rows(checked_events(raw_df, cfg, ingested_at)))
        except Py4JJavaError as exc:
            raise UnreadableInputError(cfg.input_path, java_cause(exc)) from exc
        input_rows = observed(lines, ["rows"], stage.staging.rows["checked"])["rows"]
        if input_rows == 0 and not cfg.allow_empty:
            raise EmptyInputError(cfg.input_path, str(cfg.run_date))
        bronze_df = bronze_rows(checked_df.where(~F.col("is_rejected")), run, ingested_at)
        quarantine_df = quarantine_rows(checked_df.where(F.col("is_rejected")), run,
                                        ingested_at)
        with stage.step("stage"):
            by_reason = {row["reason"]: row["count"]
                         for row in quarantine_df.groupBy("reason").count().collect()}
        quarantined = sum(by_reason.values())
        window_start, window_end = cfg.accepted_window()
        stage.validate(bronze_df, BRONZE, parameters={
            "expected_rows": input_rows - quarantined, "max_price": cfg.max_price,
            "sources": list(source_names()),
            "window_start": window_start, "window_end": window_end,
            "latest_event_ts": cfg.latest_event_time(ingested_at)})
        with stage.publish():
            # Files never seen before cannot collide with stored keys: a plain append writes
            # exactly what the insert-only MERGE would, without joining against the table.
            # Compared in the form the tables hold: Spark's `_metadata.file_path`, which is
            # URL-encoded (`a%20b`), unlike the listed names (`a b`).
            stored = [r[0] for r in checked_df.select("_source_file").distinct().collect()]
            is_new = not (has_rows_where(spark, BRONZE, "_source_file", stored)
                          or has_rows_where(spark, QUARANTINE, "_source_file", stored))
            write = append if is_new else merge_insert_new
            bronze_metrics = write(spark, bronze_df, BRONZE, run_date=str(cfg.run_date))
            pause_point("ingest", "bronze-published")
            quarantine_metrics = write(spark, quarantine_df, QUARANTINE,
                                       run_date=str(cfg.run_date))
        return stage.finish(RunCounts(
            input_rows=input_rows,
            output_rows=_source_rows(bronze_metrics),
            quarantined_rows=_source_rows(quarantine_metrics),
            details={
                "files": files,
                "accepted_window": [window_start, window_end],
                "latest_event_ts": cfg.latest_event_time(ingested_at),
                "quarantine_reasons": by_reason,
                "write": "append" if is_new else "merge",
                "bronze_rows_inserted": _inserted(bronze_metrics),
                "quarantine_rows_inserted": _inserted(quarantine_metrics),
            },
        ))


def _source_rows(metrics: dict[str, int]) -> int:
    """Rows the write was given (all of them, whether new or already stored)."""
    return metrics.get("numSourceRows", metrics.get("numOutputRows", 0))


def _inserted(metrics: dict[str, int]) -> int:
    return metrics.get("numTargetRowsInserted", metrics.get("numOutputRows", 0))
