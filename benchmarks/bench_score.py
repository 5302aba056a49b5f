"""Scoring benchmark: nightly scoring of at least 200,000 active users on generated data.

    python benchmarks/bench_score.py [--users 420000] [--days 2] [--work DIR]

Builds a scratch warehouse (generated REES46-format days, ingest, sessionize, training
examples, a small model trained for a few steps: none of it timed), then measures in one run:

- `clickscore score` end to end (features rebuilt at the cutoff, inference, deciles, gate,
  publish) in users/s, and each of its steps;
- the warehouse export to a throwaway PostgreSQL server on 127.0.0.1 (rows/s);
- inference inside Spark alone (`mapInArrow` into the no-op sink, on the same staged
  inputs) against the raw ceiling: the same model and `Scorer` on the same rows held in
  memory as Arrow batches, in this process with every core (target: Spark >= 70% of it);
- peak RSS of the driver process tree (Python + JVM + Python workers).

Figures go to benchmarks/out/score.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import torch
from bench_etl import PeakRss, save_figures  # type: ignore[import-not-found]
from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.integration.postgres

from clickscore import registry  # noqa: E402
from clickscore.core.config import RunDate, parse_windows  # noqa: E402
from clickscore.core.identity import USER as USER_KEY  # noqa: E402
from clickscore.core.spark import get_spark  # noqa: E402
from clickscore.demo.config import GenerateConfig  # noqa: E402
from clickscore.demo.generator import generate  # noqa: E402
from clickscore.export.config import PASSWORD_ENV, USER_ENV, ExportConfig  # noqa: E402
from clickscore.export.job import run_export  # noqa: E402
from clickscore.features.config import TrainingExamplesConfig  # noqa: E402
from clickscore.features.contract import feature_contract  # noqa: E402
from clickscore.features.job import USER_FEATURES, run_training_examples  # noqa: E402
from clickscore.ingest.config import IngestConfig  # noqa: E402
from clickscore.ingest.job import run_ingest  # noqa: E402
from clickscore.scoring import job as score_job  # noqa: E402
from clickscore.scoring.config import ScoreConfig  # noqa: E402
from clickscore.scoring.inference import Scorer  # noqa: E402
from clickscore.scoring.transforms import with_exclusions  # noqa: E402
from clickscore.sessionize.config import SessionizeConfig  # noqa: E402
from clickscore.sessionize.job import run_sessionize  # noqa: E402
from clickscore.training.config import TrainConfig  # noqa: E402
from clickscore.training.data import model_frame  # noqa: E402
from clickscore.training.job import run_train  # noqa: E402
from tests.integration import postgres  # noqa: E402

T0 = datetime(2019, 10, 1, tzinfo=UTC)


def build(spark, root: str, users: int, days: int) -> str:
    """Generated days through training; the registered model version."""
    landing = Path(root) / "landing"
    manifest = generate(GenerateConfig(output_dir=str(landing), days=days, users=users))
    for offset, name in enumerate(manifest["files"]):
        day = RunDate((T0 + timedelta(days=offset)).date())
        run_ingest(spark, IngestConfig(source="rees46", input_path=str(landing / name),
                                       run_date=day, data_root=root))
        run_sessionize(spark, SessionizeConfig(run_date=day, data_root=root))
    hours = 24 * days
    cutoffs = tuple(T0 + timedelta(hours=h) for h in (hours - 16, hours - 10, hours - 5))
    run_training_examples(spark, TrainingExamplesConfig(
        cutoffs=cutoffs, validation_from=cutoffs[1], test_from=cutoffs[2], data_root=root,
        horizon=timedelta(hours=5), lookback=timedelta(days=1),
        windows=parse_windows("1h,6h,1d"), min_support=2))
    counts = run_train(spark, TrainConfig.of(data_root=root, epochs=1, max_steps_per_epoch=20,
                                          batch_size=256))
    return str(counts.details["model_version"])


def inference_alone(spark, root: str, cfg: ScoreConfig, version: str) -> dict[str, float]:
    """mapInArrow into the no-op sink, and the raw ceiling, on the same staged inputs."""
    contract = feature_contract()
    model, found = registry.load_model(root, version)
    item_ids, item_sources = score_job._item_ids(spark, model.cfg)
    features_df = spark.table(USER_FEATURES).where(F.col("cutoff") == F.lit(cfg.cutoff))
    lookback = score_job._feature_spec(cfg, model.cfg).lookback
    silver = score_job._version(spark, score_job.SILVER_EVENTS)
    inputs_df = with_exclusions(
        model_frame(features_df, contract, with_labels=False, keep=USER_KEY),
        score_job._exclusions(spark, cfg, model.cfg, silver, lookback))
    users = inputs_df.count()
    inputs_df = (inputs_df.repartition(score_job._partitions(spark, users), *USER_KEY)
                 .sortWithinPartitions(*USER_KEY).cache())
    inputs_df.count()
    t0 = time.perf_counter()
    score_job._scored(spark, inputs_df, model, {}, (item_ids, item_sources),
                      str(found.version), cfg) \
        .write.format("noop").mode("overwrite").save()
    spark_s = time.perf_counter() - t0
    table = inputs_df.toArrow()
    batches = table.to_batches(max_chunksize=10_000)  # Spark's Arrow batch size
    torch.set_num_threads(os.cpu_count() or 1)
    scorer = Scorer(model, item_ids, top_k=cfg.top_k, batch_size=cfg.batch_size,
                    item_sources=item_sources, device=torch.device("cpu"))
    scorer.score_batch(batches[0].slice(0, 64))  # warm-up
    t0 = time.perf_counter()
    for batch in batches:
        scorer.score_batch(batch)
    ceiling_s = time.perf_counter() - t0
    inputs_df.unpersist()
    return {"users": users, "spark_inference_s": round(spark_s, 2),
            "spark_inference_users_per_s": round(users / spark_s),
            "ceiling_s": round(ceiling_s, 2), "ceiling_users_per_s": round(users / ceiling_s),
            "spark_over_ceiling": round(ceiling_s / spark_s, 3),
            "ceiling_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=420_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--work", default="/tmp/clickscore-bench-score")
    parser.add_argument("--driver-memory", default="10g")
    parser.add_argument("--keep", action="store_true", help="reuse a built --work folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("py4j", "great_expectations", "mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    work = Path(args.work)
    if work.exists() and not args.keep:
        shutil.rmtree(work)
    root = str(work / "root")
    spark = get_spark(root, app_name="clickscore-bench-score",
                      conf={"spark.driver.memory": args.driver_memory})
    version_file = work / "model_version"
    if not version_file.exists():
        version_file.write_text(build(spark, root, args.users, args.days))
    version = version_file.read_text()
    day = (T0 + timedelta(days=args.days - 1)).date()
    # a lookback over every generated day: the nightly run scores everyone seen in it
    cfg = ScoreConfig(run_date=day, data_root=root, model_version=version,
                      lookback=timedelta(days=args.days))
    server = postgres.start(Path(f"/tmp/clickscore-bench-postgres-{os.getpid()}"))
    os.environ[USER_ENV], os.environ[PASSWORD_ENV] = postgres.USER, postgres.PASSWORD
    try:
        with PeakRss() as rss:
            t0 = time.perf_counter()
            counts = score_job.run_score(spark, cfg)
            t1 = time.perf_counter()
            exported = run_export(spark, ExportConfig(run_date=day, jdbc_url=server.url,
                                                      data_root=root))
            t2 = time.perf_counter()
        alone = inference_alone(spark, root, cfg, version)
    finally:
        server.stop()
    users = counts.output_rows
    steps = counts.details["seconds"]
    figures: dict[str, object] = {
        "users_scored": users, "score_s": round(t1 - t0, 1),
        "score_users_per_s": round(users / (t1 - t0)),
        "export_s": round(t2 - t1, 1), "export_rows_per_s": round(exported.output_rows
                                                                  / (t2 - t1)),
        "score_and_export_users_per_s": round(users / (t2 - t0)),
        "steps_s": steps, "peak_rss_gib": round(rss.peak / 2**30, 2),
        "torch_threads_per_task": int(spark.conf.get("spark.task.cpus", "1") or 1),
        "cores": os.cpu_count(), **alone}
    print(json.dumps(figures, indent=2, default=str))
    save_figures("score", figures)


if __name__ == "__main__":
    main()
