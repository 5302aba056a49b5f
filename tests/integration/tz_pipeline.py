"""Two generated days through every stage up to gold.training_examples, for
test_time_zones: run in this process by the test (the UTC reference) and as a script under
another `TZ` (`python -m tests.integration.tz_pipeline DATA_ROOT LANDING`); and a probe of
every clock a run reads (`python -m tests.integration.tz_pipeline --probe DATA_ROOT`)."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from clickscore.core.config import parse_windows
from clickscore.features.config import TrainingExamplesConfig
from clickscore.features.job import run_training_examples
from tests.integration.helpers import ingest, sessionize

DAYS = ("2019-10-01", "2019-10-02")
# cutoffs in the evening and at midnight, where a shifted clock moves events across them
CUTOFFS = tuple(datetime(2019, 10, 1, tzinfo=UTC) + timedelta(hours=h) for h in (20, 24, 36, 44))
TABLES = ("bronze.events", "quarantine.events", "silver.events", "silver.sessions",
          "ml.item_vocab", "ml.category_vocab", "gold.training_examples")


def pipeline(spark: SparkSession, data_root: str, landing: Path) -> dict:
    """Dated ingest and incremental sessionize for each day (the data-quality gates run in
    each), then vocabulary, features and labels at four cutoffs."""
    files = json.loads((landing / "_manifest.json").read_text())["files"]
    for day, name in zip(DAYS, files, strict=True):
        ingest(spark, data_root, "rees46", landing / name, day)
        sessionize(spark, data_root, day)
    return {"examples": run_training_examples(spark, TrainingExamplesConfig(
        cutoffs=CUTOFFS, validation_from=CUTOFFS[-2], test_from=CUTOFFS[-1],
        data_root=data_root, horizon=timedelta(hours=4), lookback=timedelta(hours=24),
        windows=parse_windows("1h,6h")))}


def probe(spark: SparkSession) -> dict:
    """What each clock says once a session is up: the driver's Python, the JVM, the Spark
    session, the executors' Python workers, and a naive local datetime's round trip through
    Spark (PySpark converts those in the process's local zone)."""
    from pyspark.sql import functions as F

    jvm_zone = spark.sparkContext._jvm.java.util.TimeZone.getDefault().getID()
    workers = spark.sparkContext.parallelize([0], 1).map(
        lambda _: __import__("time").strftime("%z")).collect()
    sent = datetime(2019, 10, 1, 23, 30)
    row = spark.createDataFrame([(sent,)], "ts TIMESTAMP").select(
        "ts", F.date_format("ts", "yyyy-MM-dd HH:mm").alias("shown"),
        F.to_date("ts").cast("string").alias("day")).first()
    return {"driver": time.strftime("%z"), "jvm": jvm_zone,
            "session": spark.conf.get("spark.sql.session.timeZone"), "workers": workers,
            "round_trip": row.ts == sent, "shown": row.shown, "day": row.day}


if __name__ == "__main__":
    from clickscore.core.spark import get_spark

    print(f"driver started at UTC offset {time.strftime('%z')}", flush=True)
    if sys.argv[1] == "--probe":
        session = get_spark(sys.argv[2], app_name="clickscore-tz-probe",
                            conf={"spark.master": "local[1]"})
        print("probe " + json.dumps(probe(session)), flush=True)
    else:
        root, landing = sys.argv[1:]
        pipeline(get_spark(root, app_name="clickscore-tz", conf={
            "spark.master": "local[2]", "spark.sql.shuffle.partitions": "4"}), root,
            Path(landing))
