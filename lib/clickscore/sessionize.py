"""Sessionize: bronze.events -> silver.events + silver.sessions.

`--run-date all` rebuilds both tables from all of bronze. A dated run recomputes only the users
whose events changed (events dated that day, or ingested by that day's run, late ones
included), from a point where their sessions are known to start (see `recompute_scope`), and
applies the result as one MERGE per table: updated, new, and no-longer-existing sessions.
"""

from __future__ import annotations

import logging
import time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.config import SessionizeConfig
from clickscore.errors import EmptyInputError
from clickscore.runs import RunCounts, tracked_run
from clickscore.schemas import table_schema
from clickscore.sessions import (
    EVENT_COLUMNS,
    drop_duplicate_events,
    recompute_scope,
    summarize_sessions,
    with_session_id,
)
from clickscore.tables import (
    ensure_table,
    merge_upsert,
    overwrite,
    read_table,
    table_version,
    with_op,
)

log = logging.getLogger(__name__)

BRONZE = "bronze.events"
SILVER_EVENTS = "silver.events"
SILVER_SESSIONS = "silver.sessions"


def _sessionized(cfg: SessionizeConfig, input_df: DataFrame) -> DataFrame:
    return (input_df.select(*EVENT_COLUMNS)
            .transform(drop_duplicate_events)
            .transform(with_session_id, gap=cfg.session_gap, max_length=cfg.max_session_length))


def run_sessionize(spark: SparkSession, cfg: SessionizeConfig) -> RunCounts:
    """Sessionize one run date (or `all`); returns the counts recorded in ops.pipeline_runs.

    Events and sessions are computed in two passes over one pinned version of bronze.events
    (recomputing is cheaper than caching here, see benchmarks/), so both tables describe
    exactly the same input even if an ingest commits meanwhile.
    """
    log.info("sessionize config: %s", cfg)
    run_date = str(cfg.run_date)
    with tracked_run(spark, "sessionize", run_date) as run:
        ensure_table(spark, BRONZE)
        bronze_version = table_version(spark, BRONZE)
        bronze_df = spark.read.option("versionAsOf", bronze_version).table(BRONZE)
        sessions_now_df = read_table(spark, SILVER_SESSIONS)
        scope_df = None
        if cfg.run_date.is_all:
            input_df = bronze_df
        else:
            day = cfg.run_date.day
            touched_df = bronze_df.where((F.col("event_date") == F.lit(day))
                                         | (F.col("_ingest_run_date") == run_date))
            # Checkpointed: the writes below change silver.sessions, which the scope reads.
            scope_df = recompute_scope(touched_df, sessions_now_df, cfg.session_gap)
            scope_df = scope_df.localCheckpoint(eager=True)
            first = scope_df.agg(F.min("recompute_from")).first()
            since = first[0] if first else None
            since_date = since.date() if since else day
            input_df = (bronze_df.where(F.col("event_date") >= F.lit(since_date))
                        .join(F.broadcast(scope_df), "user_id")
                        .where(F.col("event_ts") >= F.col("recompute_from")))

        # Three independent figures: rows read and distinct events among them (one scan), and
        # events written (from Delta's commit metrics); reconciliation compares them.
        counted = input_df.agg(F.count(F.lit(1)), F.count_distinct("event_id")).first()
        input_rows, distinct_rows = (int(counted[0]), int(counted[1])) if counted else (0, 0)
        if input_rows == 0 and not cfg.allow_empty:
            raise EmptyInputError(BRONZE, run_date)
        events_df = _sessionized(cfg, input_df)
        sessions_df = summarize_sessions(events_df, cfg.bot_events_per_minute)
        t0 = time.perf_counter()
        if scope_df is None:
            events_metrics = overwrite(spark, events_df, SILVER_EVENTS, run_date=run_date)
            t1 = time.perf_counter()
            sessions_metrics = overwrite(spark, sessions_df, SILVER_SESSIONS, run_date=run_date)
        else:
            events_metrics = merge_upsert(
                spark, with_op(events_df, "upsert"), SILVER_EVENTS,
                compare=["session_id", "session_seq"],
                target_filter=f"t.event_date >= DATE'{since_date}'", run_date=run_date)
            t1 = time.perf_counter()
            sessions_metrics = _merge_sessions(spark, sessions_df, sessions_now_df, scope_df,
                                               since_date, run_date)
        log.info("wrote silver.events in %.1fs, silver.sessions in %.1fs", t1 - t0,
                 time.perf_counter() - t1)
        # events written: every row of a rebuild; the source rows of a MERGE (its own
        # numOutputRows also counts unchanged rows copied into rewritten files)
        output_rows = events_metrics.get(
            "numOutputRows" if scope_df is None else "numSourceRows", 0)
        run.counts = RunCounts(
            input_rows=input_rows,
            output_rows=output_rows,
            duplicate_rows=input_rows - distinct_rows,
            details={
                "mode": "rebuild" if scope_df is None else "incremental",
                "bronze_version": bronze_version,
                "session_gap_s": cfg.session_gap.total_seconds(),
                "max_session_length_s": cfg.max_session_length.total_seconds(),
                "bot_events_per_minute": cfg.bot_events_per_minute,
                "silver_events": events_metrics,
                "silver_sessions": sessions_metrics,
            },
        )
    return run.counts


def _merge_sessions(
    spark: SparkSession,
    sessions_df: DataFrame,
    sessions_now_df: DataFrame,
    scope_df: DataFrame,
    since_date: object,
    run_date: str,
) -> dict[str, int]:
    """MERGE recomputed sessions; delete the scope's sessions the recompute no longer has."""
    stale_df = (sessions_now_df.where(F.col("session_date") >= F.lit(since_date))
                .join(F.broadcast(scope_df), "user_id")
                .where(F.col("session_start") >= F.col("recompute_from"))
                .join(sessions_df.select("session_id"), "session_id", "left_anti")
                .select(*table_schema(SILVER_SESSIONS).names))
    changes_df = with_op(sessions_df, "upsert").unionByName(with_op(stale_df, "delete"))
    compare = [c for c in table_schema(SILVER_SESSIONS).names if c != "session_id"]
    return merge_upsert(
        spark, changes_df, SILVER_SESSIONS, compare=compare,
        target_filter=f"t.session_date >= DATE'{since_date}'", run_date=run_date)
