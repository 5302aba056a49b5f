"""Feature benchmark: gold.user_features for one cutoff over the 10M-event generated set.

    python benchmarks/bench_etl.py --work /tmp/bench10m      # once: the silver tables
    python benchmarks/bench_features.py --root /tmp/bench10m/root

Builds the vocabularies from the first days, then the features at the last day's end with a
lookback over the whole set, and prints users/s, the stage's parts (validation included) and
peak RSS of the driver process tree; writes benchmarks/out/features.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, timedelta

from bench_etl import PeakRss, save_figures  # type: ignore[import-not-found]
from pyspark.sql import functions as F

from clickscore.core.config import parse_windows
from clickscore.core.spark import get_spark
from clickscore.features.config import FeaturesConfig, VocabConfig
from clickscore.features.job import run_features
from clickscore.features.vocab_job import build_vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="data root holding silver.events")
    parser.add_argument("--driver-memory", default="10g")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    spark = get_spark(args.root, app_name="clickscore-bench-features",
                      conf={"spark.driver.memory": args.driver_memory})
    span = spark.table("silver.events").agg(F.min("event_ts"), F.max("event_ts")).first()
    start = span[0].replace(hour=0, minute=0, second=0, microsecond=0)
    cutoff = span[1].replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start, cutoff = start.replace(tzinfo=UTC), cutoff.replace(tzinfo=UTC)
    lookback = cutoff - start
    figures: dict[str, object] = {"events": spark.table("silver.events").count()}
    with PeakRss() as rss:
        t0 = time.perf_counter()
        version = build_vocab(spark, VocabConfig(window_start=start,
                                                 window_end=start + timedelta(days=7),
                                                 min_support=2, data_root=args.root))
        t1 = time.perf_counter()
        counts = run_features(spark, FeaturesConfig(
            as_of=cutoff, data_root=args.root, lookback=lookback,
            windows=parse_windows(f"1d,7d,{lookback.days}d"), vocab_version=version))
        t2 = time.perf_counter()
    users = counts.output_rows
    figures.update({
        "cutoff": cutoff.isoformat(), "lookback_days": lookback.days, "users": users,
        "vocab_s": round(t1 - t0, 1), "features_s": round(t2 - t1, 1),
        "features_users_per_s": round(users / (t2 - t1)),
        "features_events_per_s": round(int(figures["events"]) / (t2 - t1)),  # type: ignore[call-overload]
        "peak_rss_gib": round(rss.peak / 2**30, 2),
        **{f"features_{k}_s": v for k, v in counts.details["seconds"].items()},
    })
    spark.stop()
    print(json.dumps(figures, indent=2))
    print(f"\nfeatures: {users:,} users in {figures['features_s']} s = "
          f"{figures['features_users_per_s']:,} users/s over {figures['events']:,} events; "
          f"vocab {figures['vocab_s']} s; peak RSS {figures['peak_rss_gib']} GiB")
    save_figures("features", figures)


if __name__ == "__main__":
    main()
