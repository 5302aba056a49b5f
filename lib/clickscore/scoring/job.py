"""Nightly scoring: `clickscore score --run-date D`.

1. Load the model version (the `champion` alias, or a pinned version) from the registry: a
   bundle of scorers and the scorer that serves each head (the sequence model, or a baseline
   that beat it on validation); every row records both. A missing or unloadable version (a
   pickle among them: bundles load with `weights_only=True`), or one whose vocabulary is
   gone, fails here, before anything is written.
2. Rebuild gold.user_features at the end of D with the feature stage itself (its own gated,
   recorded run), with the model's vocabulary, lookback and windows: the very code that built
   the training features. Then read that cutoff's rows at the Delta version just written and
   check them against the feature contract and the model.
3. Score on the executors with `mapInArrow`: the model travels once as a broadcast of its
   weights, each Python worker loads it once per version (`inference.cached_scorer`),
   batches are tensors, a GPU is used where the executor has one. Nothing user-sized comes
   back to the driver.
4. Deciles by exact global rank (ties by user id), then write-audit-publish of the date's
   rows into gold.user_scores (replacing exactly that date) and the gold.user_scores_latest
   view.

The run records the model version and the Delta versions it read; `--reproduce RUN_ID`
scores again against exactly those (time travel) and gives the same scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore import registry
from clickscore.core.config import RunDate, RunKey
from clickscore.core.delta import read_table, replace_where, table_version
from clickscore.core.errors import ClickscoreError, FeatureContractError
from clickscore.core.identity import USER
from clickscore.core.runs import RUNS_TABLE, RunCounts
from clickscore.export.config import ExportConfig
from clickscore.export.job import run_export
from clickscore.features.config import FeaturesConfig
from clickscore.features.contract import FeatureContract, check_feature_frame, feature_contract
from clickscore.features.job import SILVER_EVENTS, USER_FEATURES, run_features
from clickscore.features.transforms import with_codes
from clickscore.features.vocab_job import vocab
from clickscore.model.config import IncompatibleFeaturesError, ModelConfig
from clickscore.model.network import FIRST_ITEM
from clickscore.model.spec import FeatureSpec
from clickscore.runner import stage_run
from clickscore.scoring.config import ScoreConfig
from clickscore.scoring.inference import OUTPUT_SCHEMA, model_payload, score_batches
from clickscore.scoring.transforms import (
    DECILES,
    partition_sizes,
    purchased_items,
    sorted_by_propensity,
    with_deciles,
    with_exclusions,
)
from clickscore.training.data import model_frame

log = logging.getLogger(__name__)

USER_SCORES = "gold.user_scores"
LATEST_VIEW = "gold.user_scores_latest"


class ScoringError(ClickscoreError):
    """Scoring cannot run as asked (a model that does not fit, a run that cannot be
    reproduced)."""


def run_score(spark: SparkSession, cfg: ScoreConfig) -> RunCounts:
    """Score every user active before the end of `cfg.run_date`; see the module docstring."""
    log.debug("score config: %s", cfg)
    contract = feature_contract()
    pinned = _reproduced(spark, cfg) if cfg.reproduce else {}
    if pinned:
        reproduced = FeatureSpec.from_dict(pinned["feature_spec"])
        cfg = replace(cfg, model_version=pinned["model_version"], top_k=pinned["top_k"],
                      exclude_purchased=pinned["exclude_purchased"],
                      lookback=reproduced.lookback, windows=reproduced.window_spans)
    with stage_run(spark, "score", RunKey.of_date(RunDate(cfg.run_date)),
                   data_root=cfg.data_root) as stage:
        with stage.step("load model"):
            bundle, found = registry.load_bundle(cfg.data_root, cfg.model_version)
            model = bundle.model
            version = str(found.version)
            heads = registry.heads(cfg.data_root, version)
            item_ids, item_sources = _item_ids(spark, model.cfg)
        spec = _feature_spec(cfg, model.cfg)
        silver_version = pinned.get("silver_events_version") or _version(spark, SILVER_EVENTS)
        reusable = (_reusable_features(spark, cfg, spec, silver_version)
                    if cfg.reuse_features and not pinned else None)
        if pinned:
            features_version = pinned["user_features_version"]
        elif reusable is not None:
            features_version = reusable
        else:
            with stage.step("features"):
                run_features(spark, FeaturesConfig(
                    as_of=cfg.cutoff, data_root=cfg.data_root, lookback=spec.lookback,
                    windows=spec.window_spans, vocab_version=spec.vocab_version))
            features_version = table_version(spark, USER_FEATURES)
        features_df = (spark.read.option("versionAsOf", features_version).table(USER_FEATURES)
                       .where(F.col("cutoff") == F.lit(cfg.cutoff)))
        users = _checked_users(features_df, contract, model.cfg)

        exclusions_df = _exclusions(spark, cfg, model.cfg, silver_version, spec.lookback)
        inputs_df = with_exclusions(
            model_frame(features_df, contract, with_labels=False, keep=USER),
            exclusions_df).repartition(_partitions(spark, users), *USER)
        # in a fixed order, so every run forms the same inference batches: a row's scores
        # then come out bit for bit the same (a shuffle's row order varies from run to run)
        inputs_df = inputs_df.sortWithinPartitions(*USER)
        scored_df = _scored(spark, inputs_df, bundle, heads, (item_ids, item_sources), version,
                            cfg)
        ordered_df = stage.stage("scores", sorted_by_propensity(scored_df))
        scores_df = stage.stage("user_scores", with_deciles(ordered_df, partition_sizes(
            ordered_df)).select(
            *USER, F.lit(cfg.run_date).alias("score_date"), "purchase_propensity",
            "propensity_decile", "top_items", F.lit(version).alias("model_version"),
            F.lit(heads["next_item"]).alias("next_item_scorer"),
            F.lit(heads["propensity"]).alias("propensity_scorer"),
            F.lit(cfg.cutoff).alias("feature_as_of"),
            F.lit(datetime.now(UTC)).alias("scored_at")))

        top_k = min(cfg.top_k, model.cfg.item_vocab_size - FIRST_ITEM)
        most_excluded = (inputs_df.agg(F.max(F.size("exclude_idx"))).first() or [0])[0] or 0
        stage.validate(scores_df, USER_SCORES, parameters={
            "score_dates": [cfg.run_date], "model_versions": [version], "expected_rows": users,
            "next_item_scorers": [heads["next_item"]],
            "propensity_scorers": [heads["propensity"]],
            "decile_shares": {str(d): 1 / DECILES for d in range(1, DECILES + 1)},
            "decile_tolerance": 1 / max(users, 1) + 0.01, "top_k": top_k,
            "top_k_floor": max(0, min(top_k, model.cfg.item_vocab_size - FIRST_ITEM
                                      - most_excluded))})
        with stage.publish():
            create_latest_view(spark)  # first: a failure here leaves the table as it was
            metrics = replace_where(spark, scores_df, USER_SCORES,
                                    F.col("score_date") == F.lit(cfg.run_date))
        counts = stage.finish(RunCounts(
            input_rows=users, output_rows=metrics.get("numOutputRows", 0), details={
                "model_version": version, "model_run_id": found.run_id, "heads": heads,
                "vocab_version": model.cfg.vocab_version,
                "user_features_version": features_version,
                "silver_events_version": silver_version,
                "user_scores_version": table_version(spark, USER_SCORES),
                "feature_as_of": cfg.cutoff.isoformat(),
                "feature_spec": spec.to_dict(), "top_k": cfg.top_k,
                "exclude_purchased": cfg.exclude_purchased,
                "reproduces": cfg.reproduce}))
    if cfg.export_jdbc_url:  # its own run: a failed export leaves the scores published
        run_export(spark, ExportConfig(run_date=cfg.run_date, jdbc_url=cfg.export_jdbc_url,
                                       data_root=cfg.data_root))
    return counts


def create_latest_view(spark: SparkSession) -> None:
    """gold.user_scores_latest: each user's newest row of gold.user_scores."""
    columns = ", ".join(read_table(spark, USER_SCORES).columns)
    spark.sql(f"""
        CREATE OR REPLACE VIEW {LATEST_VIEW}
        COMMENT 'the newest row of each user in {USER_SCORES}'
        AS SELECT {columns} FROM (
            SELECT *, row_number() OVER (PARTITION BY source, user_id ORDER BY score_date DESC)
                      AS _newest
            FROM {USER_SCORES})
        WHERE _newest = 1""")


def _version(spark: SparkSession, table: str) -> int:
    read_table(spark, table)  # created empty when missing
    return table_version(spark, table)


def _reproduced(spark: SparkSession, cfg: ScoreConfig) -> dict[str, Any]:
    """What an earlier score run of the same date recorded: model and Delta versions."""
    read_table(spark, RUNS_TABLE)
    row = (spark.table(RUNS_TABLE)
           .where((F.col("run_id") == cfg.reproduce) & (F.col("job") == "score"))
           .select("run_key", "status", "details").first())
    if row is None:
        raise ScoringError(f"no score run with id {cfg.reproduce!r} in {RUNS_TABLE}")
    if row["status"] != "succeeded" or row["run_key"] != str(cfg.run_date):
        raise ScoringError(f"score run {cfg.reproduce} is a {row['status']} run of "
                           f"{row['run_key']}; reproduce a succeeded run of {cfg.run_date}")
    details = json.loads(row["details"])
    return {k: details[k] for k in ("model_version", "user_features_version",
                                    "silver_events_version", "top_k", "exclude_purchased",
                                    "feature_spec")}


def _reusable_features(spark: SparkSession, cfg: ScoreConfig, spec: FeatureSpec,
                       silver_version: int) -> int | None:
    """The gold.user_features version the last succeeded `features` run of this cutoff
    published, when it read the current silver.events and built them by `spec`; None
    (rebuild) otherwise, with the reason logged."""
    read_table(spark, RUNS_TABLE)
    row = (spark.table(RUNS_TABLE)
           .where((F.col("job") == "features") & (F.col("status") == "succeeded")
                  & (F.col("run_key") == str(RunKey.at(cfg.cutoff))))
           .orderBy(F.col("finished_at").desc()).select("run_id", "details").first())
    if row is None:
        log.info("score: no features run of %s to reuse; rebuilding", cfg.cutoff.isoformat())
        return None
    details = json.loads(row["details"] or "{}")
    built = details.get("feature_spec")
    differs = spec.differences(FeatureSpec.from_dict(built) if built else None)
    if details.get("silver_events_version") != silver_version:
        differs.append(f"silver_events_version {details.get('silver_events_version')!r}, "
                       f"wanted {silver_version!r}")
    if differs or "user_features_version" not in details:
        log.info("score: features run %s does not fit (%s); rebuilding", row["run_id"],
                 "; ".join(differs) or "no recorded table version")
        return None
    log.info("score: reusing gold.user_features v%s from features run %s",
             details["user_features_version"], row["run_id"])
    return int(details["user_features_version"])


def _feature_spec(cfg: ScoreConfig, model_cfg: ModelConfig) -> FeatureSpec:
    """How to build the features to score: the model's spec at a cutoff, with the lookback or
    windows given on the command line instead where they are."""
    if model_cfg.features is None:
        raise ScoringError("the model records no feature spec; retrain it on a training set "
                           "(clickscore training-examples, then train)")
    return model_cfg.features.at_cutoff(lookback=cfg.lookback, windows=cfg.windows)


def _item_ids(spark: SparkSession, model_cfg: ModelConfig) -> tuple[np.ndarray, list[str]]:
    """The item id and the source of every index of the model's vocabulary (-1 and "" for
    padding and out-of-vocabulary). Vocabulary-sized, not user-sized."""
    rows_df, largest = vocab(spark, "ml.item_vocab", model_cfg.vocab_version)
    if largest + 1 != model_cfg.item_vocab_size:
        raise ScoringError(f"ml.item_vocab {model_cfg.vocab_version} has {largest + 1} "
                           f"indices, the model {model_cfg.item_vocab_size}")
    ids = np.full(model_cfg.item_vocab_size, -1, dtype=np.int64)
    sources = [""] * model_cfg.item_vocab_size
    for row in rows_df.collect():
        ids[row["idx"]] = row["item_id"]
        sources[row["idx"]] = row["source"]
    return ids, sources


def _checked_users(features_df: DataFrame, contract: FeatureContract,
                   model_cfg: ModelConfig) -> int:
    """The rows to score, after checking them against the contract and the model."""
    check_feature_frame(features_df, contract)
    found = features_df.agg(F.count(F.lit(1)).alias("rows"),
                            F.collect_set("vocab_version").alias("vocabs"),
                            F.collect_set("feature_version").alias("features"),
                            F.collect_set("windows").alias("windows")).first()
    assert found is not None  # a global aggregate has one row
    try:
        for vocab_version in found["vocabs"]:
            for feature_version in found["features"]:
                model_cfg.check_features(feature_version, vocab_version)
    except IncompatibleFeaturesError as exc:
        raise FeatureContractError(contract.version, [str(exc)]) from None
    n_dense = {len(contract.window_arrays) * len(w) + len(contract.scalars)
               for w in found["windows"]}
    if n_dense - {model_cfg.n_dense}:
        raise FeatureContractError(contract.version, [
            f"the model reads {model_cfg.n_dense} aggregates, windows {found['windows']} "
            f"give {sorted(n_dense)}"])
    return int(found["rows"])


def _exclusions(spark: SparkSession, cfg: ScoreConfig, model_cfg: ModelConfig,
                silver_version: int, lookback: timedelta) -> DataFrame:
    """(source, user_id, exclude_idx): what each user purchased in the lookback, from silver.events
    as of `silver_version`; nothing when purchases are not excluded."""
    if not cfg.exclude_purchased:
        return spark.createDataFrame([], "source string, user_id bigint, "
                                     "exclude_idx array<int>")
    events_df = spark.read.option("versionAsOf", silver_version).table(SILVER_EVENTS)
    item_df, _ = vocab(spark, "ml.item_vocab", model_cfg.vocab_version)
    category_df, _ = vocab(spark, "ml.category_vocab", model_cfg.vocab_version)
    coded_df = with_codes(events_df, item_df, category_df, feature_contract())
    return purchased_items(coded_df, cfg.cutoff, lookback, FIRST_ITEM)


def _partitions(spark: SparkSession, users: int) -> int:
    """Enough tasks to use every core, and about 50,000 users per task beyond that."""
    return max(spark.sparkContext.defaultParallelism, -(-users // 50_000))


def _scored(spark: SparkSession, inputs_df: DataFrame, bundle: Any, heads: dict[str, str],
            items: tuple[np.ndarray, list[str]], version: str, cfg: ScoreConfig) -> DataFrame:
    """(source, user_id, purchase_propensity, top_items) computed on the executors by the
    scorer of each head; `items`: the id and the source of each index."""
    payload = model_payload(bundle, items[0], heads, item_sources=items[1])
    key = f"{version}:{hashlib.sha256(payload).hexdigest()[:16]}"
    broadcast = spark.sparkContext.broadcast(payload)
    threads = int(spark.conf.get("spark.task.cpus", "1") or 1)
    return inputs_df.mapInArrow(
        partial(score_batches, key=key, payload=lambda: broadcast.value, top_k=cfg.top_k,
                batch_size=cfg.batch_size, threads=threads), OUTPUT_SCHEMA)
