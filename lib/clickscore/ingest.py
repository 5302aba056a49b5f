"""Ingest: landing files of one source -> bronze.events, rejected rows -> quarantine.events.

Both are published only after the bronze batch passes its data-quality suite.

Idempotent: both writes insert only rows whose keys are new, so re-ingesting a file adds
nothing. Exact duplicate rows are kept in bronze; sessionize removes and counts them.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.config import IngestConfig
from clickscore.dq.gate import publishing, validate_batch
from clickscore.errors import EmptyInputError
from clickscore.landing import list_files, read_raw
from clickscore.row_rules import with_rejection_reasons
from clickscore.runs import Run, RunCounts, tracked_run
from clickscore.schemas import table_schema
from clickscore.sources import get_adapter
from clickscore.staging import new_observation, observed, staging_area
from clickscore.tables import append, has_rows_where, merge_insert_new

log = logging.getLogger(__name__)

BRONZE = "bronze.events"
QUARANTINE = "quarantine.events"


def checked_events(raw_df: DataFrame, cfg: IngestConfig) -> DataFrame:
    """Raw lines (from `read_raw`) typed to canonical events, each with its `reasons`."""
    adapter = get_adapter(cfg.source)
    window_start, window_end = cfg.accepted_window()
    return (raw_df
            .transform(adapter.to_canonical)
            .transform(with_rejection_reasons, adapter.raw_of, window_start=window_start,
                       window_end=window_end, max_price=cfg.max_price))


def staged_rows(checked_df: DataFrame) -> DataFrame:
    """Checked rows as staged: canonical columns, `reasons`, and `is_rejected` to split them;
    only rejected rows keep their raw line (the quarantine needs it, bronze does not)."""
    canonical = [c for c in table_schema(BRONZE).names if c in checked_df.columns]
    return (checked_df.select(*canonical, "reasons", "value")
            .withColumn("is_rejected", F.size("reasons") > 0)
            .withColumn("value", F.when(F.col("is_rejected"), F.col("value"))))


def bronze_rows(checked_df: DataFrame, run: Run, ingested_at: datetime) -> DataFrame:
    """Good rows in the bronze.events contract."""
    return (checked_df.where(F.size("reasons") == 0)
            .withColumn("event_date", F.to_date("event_ts"))
            .withColumn("_ingested_at", F.lit(ingested_at))
            .withColumn("_ingest_run_date", F.lit(run.run_date))
            .select(*table_schema(BRONZE).names))


def quarantine_rows(checked_df: DataFrame, run: Run, ingested_at: datetime) -> DataFrame:
    """Rejected rows in the quarantine.events contract."""
    return (checked_df.where(F.size("reasons") > 0)
            .select(
                F.substring(F.sha2(F.concat_ws("\u001f", "_source_file", "value"), 256), 1, 32)
                .alias("quarantine_id"),
                F.lit(run.source).alias("source"),
                "_source_file",
                F.col("value").alias("raw_line"),
                F.get("reasons", 0).alias("reason"),
                "reasons",
                F.lit(run.run_date).alias("_ingest_run_date"),
                F.lit(run.run_id).alias("_run_id"),
                F.lit(ingested_at).alias("_ingested_at"),
            ))


def run_ingest(spark: SparkSession, cfg: IngestConfig) -> RunCounts:
    """Ingest `cfg.input_path`; returns the reconciled counts recorded in ops.pipeline_runs.

    Write-audit-publish: the input is parsed once into the run's staging area (accepted and
    rejected rows side by side), the bronze batch is validated with its suite, and only then
    are both outputs written to bronze.events and quarantine.events. Rows in are the lines
    the reader produced, observed independently of both outputs, so reconciliation catches a
    row that neither accounts for.
    """
    log.info("ingest config: %s", cfg)
    with (tracked_run(spark, "ingest", str(cfg.run_date), source=cfg.source) as run,
          staging_area() as staging):
        files = list_files(spark, cfg.input_path)
        log.info("ingest %d file(s) from %s", len(files), cfg.input_path)
        # Rows in are the lines read, observed as they stream past the parser; rows out and
        # quarantined are counted from what is written, so a line lost on the way shows.
        lines = new_observation("ingest-lines")
        raw_df = (read_raw(spark, get_adapter(cfg.source).layout, files)
                  .observe(lines, F.count(F.lit(1)).alias("rows")))
        ingested_at = datetime.now(UTC)
        t0 = time.perf_counter()
        checked_df = staging.stage("checked", staged_rows(checked_events(raw_df, cfg)))
        input_rows = observed(lines, ["rows"], staging.rows["checked"])["rows"]
        if input_rows == 0 and not cfg.allow_empty:
            raise EmptyInputError(cfg.input_path, str(cfg.run_date))
        bronze_df = bronze_rows(checked_df.where(~F.col("is_rejected")), run, ingested_at)
        quarantine_df = quarantine_rows(checked_df.where(F.col("is_rejected")), run,
                                        ingested_at)
        by_reason = {row["reason"]: row["count"]
                     for row in quarantine_df.groupBy("reason").count().collect()}
        quarantined = sum(by_reason.values())
        t1 = time.perf_counter()
        window_start, window_end = cfg.accepted_window()
        validation = validate_batch(
            spark, bronze_df, table=BRONZE, run_id=run.run_id, job="ingest",
            run_date=cfg.run_date, data_root=cfg.data_root,
            parameters={"expected_rows": input_rows - quarantined, "max_price": cfg.max_price,
                        "window_start": window_start, "window_end": window_end})
        t2 = time.perf_counter()
        with publishing(spark, [validation]):
            # Files never seen before cannot collide with stored keys: a plain append writes
            # exactly what the insert-only MERGE would, without joining against the table.
            is_new = not (has_rows_where(spark, BRONZE, "_source_file", files)
                          or has_rows_where(spark, QUARANTINE, "_source_file", files))
            write = append if is_new else merge_insert_new
            bronze_metrics = write(spark, bronze_df, BRONZE, run_date=run.run_date)
            quarantine_metrics = write(spark, quarantine_df, QUARANTINE, run_date=run.run_date)
        t3 = time.perf_counter()
        log.info("staged in %.1fs, validated in %.1fs, %s in %.1fs", t1 - t0, t2 - t1,
                 "appended" if is_new else "merged", t3 - t2)
        run.counts = RunCounts(
            input_rows=input_rows,
            output_rows=_source_rows(bronze_metrics),
            quarantined_rows=_source_rows(quarantine_metrics),
            details={
                "files": files,
                "accepted_window": [window_start, window_end],
                "quarantine_reasons": by_reason,
                "write": "append" if is_new else "merge",
                "bronze_rows_inserted": _inserted(bronze_metrics),
                "quarantine_rows_inserted": _inserted(quarantine_metrics),
                "seconds": {"stage": round(t1 - t0, 2), "validate": round(t2 - t1, 2),
                            "publish": round(t3 - t2, 2)},
                "dq_warnings": [w.check for w in validation.warnings],
            },
        )
    return run.counts


def _source_rows(metrics: dict[str, int]) -> int:
    """Rows the write was given (all of them, whether new or already stored)."""
    return metrics.get("numSourceRows", metrics.get("numOutputRows", 0))


def _inserted(metrics: dict[str, int]) -> int:
    return metrics.get("numTargetRowsInserted", metrics.get("numOutputRows", 0))
