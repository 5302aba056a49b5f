"""The end-to-end demo: generated data through ingest and sessionize, then a summary."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from clickscore.config import (
    FeaturesConfig,
    GenerateConfig,
    IngestConfig,
    RunDate,
    SessionizeConfig,
    TrainingExamplesConfig,
    parse_windows,
)
from clickscore.dq.report import print_dq_report
from clickscore.features_job import run_features, run_training_examples
from clickscore.generate import generate
from clickscore.ingest import run_ingest
from clickscore.report import print_query
from clickscore.sessionize import run_sessionize

log = logging.getLogger(__name__)


def run_demo(
    spark: SparkSession, data_root: str, *, days: int, users: int, seed: int, landing: Path
) -> None:
    """Generate `days` daily files, run ingest and sessionize for each day, build training
    examples and features, print a summary."""
    gen = GenerateConfig(output_dir=str(landing), days=days, users=users, seed=seed)
    manifest = generate(gen)
    for offset, name in enumerate(manifest["files"]):
        day = RunDate(gen.start_date + timedelta(days=offset))
        run_ingest(spark, IngestConfig(source="rees46", input_path=str(landing / name),
                                       run_date=day, data_root=data_root))
        run_sessionize(spark, SessionizeConfig(run_date=day, data_root=data_root))
    _features(spark, data_root, gen)
    print("\nPipeline runs (ops.pipeline_runs):")
    print_query(spark, """
        SELECT job, run_date, status, input_rows, output_rows, quarantined_rows,
               duplicate_rows, round(duration_s, 1) AS seconds
        FROM ops.pipeline_runs ORDER BY started_at DESC""", limit=2 * days)
    print("\nQuarantine by reason (quarantine.events):")
    print_query(spark, "SELECT reason, count(*) AS rows FROM quarantine.events "
                       "GROUP BY reason ORDER BY rows DESC")
    print("\nSessions per day (silver.sessions):")
    print_query(spark, """
        SELECT session_date, count(*) AS sessions, count(DISTINCT user_id) AS users,
               round(avg(n_events), 2) AS avg_events, sum(CAST(is_converted AS INT)) AS converted,
               round(sum(revenue), 2) AS revenue, sum(CAST(is_bot AS INT)) AS bot_sessions
        FROM silver.sessions GROUP BY session_date ORDER BY session_date""")
    print("\nTraining examples (gold.training_examples):")
    print_query(spark, """
        SELECT split, cutoff, count(*) AS users, round(avg(seq_length), 1) AS avg_seq_length,
               round(avg(purchased_within_horizon), 4) AS purchase_rate,
               first(vocab_version) AS vocab_version
        FROM gold.training_examples GROUP BY split, cutoff ORDER BY cutoff""")
    print()
    print_dq_report(spark, data_root)
    print(f"\nGenerated data and its manifest: {landing}")
    print(json.dumps({k: manifest[k] for k in ("total_rows", "duplicate_rows", "late_events",
                                                "dirty_rows")}, indent=2))
    print(f"Warehouse: {data_root}/warehouse  (try: clickscore sql \"SHOW TABLES IN silver\" "
          f"--data-root {data_root})")


def _features(spark: SparkSession, data_root: str, gen: GenerateConfig) -> None:
    """Training examples at three cutoffs (train / validation / test, 6 h labels), then the
    features a nightly scoring run would read at the end of the generated days."""
    start = datetime.combine(gen.start_date, time(0), tzinfo=UTC)
    cutoffs = (start + timedelta(hours=36), start + timedelta(hours=54),
               start + timedelta(hours=66))
    lookback, windows = timedelta(days=1), parse_windows("1h,6h,1d")
    run_training_examples(spark, TrainingExamplesConfig(
        cutoffs=cutoffs, validation_from=cutoffs[1], test_from=cutoffs[2], data_root=data_root,
        horizon=timedelta(hours=6), lookback=lookback, windows=windows))
    run_features(spark, FeaturesConfig(as_of=start + timedelta(days=gen.days),
                                       data_root=data_root, lookback=lookback,
                                       windows=windows))
