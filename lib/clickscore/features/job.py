"""Feature jobs: vocabularies, gold.user_features for one cutoff, gold.training_examples
over several cutoffs. Each batch is staged, validated with its suite and only then published
(user features replace exactly their cutoff; a training-examples build replaces exactly its
own training set), and the run is recorded in ops.pipeline_runs.

A training-examples build is one identified training set: its id digests the `FeatureSpec`
(how its features were built), the cutoffs and the split boundaries, and `ml.training_sets`
records it. Builds with other cutoffs or another vocabulary (next week's) sit beside it;
`train` reads exactly one."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore.core.config import RunDate, RunKey
from clickscore.core.contracts import table_schema
from clickscore.core.delta import (
    merge_upsert,
    read_table,
    replace_where,
    table_version,
    with_op,
)
from clickscore.core.errors import ClickscoreError, EmptyInputError
from clickscore.core.identity import USER
from clickscore.core.runs import RunCounts
from clickscore.features.config import FeaturesConfig, TrainingExamplesConfig, VocabConfig
from clickscore.features.contract import FeatureContract, feature_contract
from clickscore.features.transforms import history, labels, user_features, with_codes, with_labels
from clickscore.features.vocab_job import build_vocab, latest_vocab_version, non_bot_events, vocab
from clickscore.model.spec import FeatureSpec
from clickscore.runner import stage_run

log = logging.getLogger(__name__)

USER_FEATURES = "gold.user_features"
TRAINING_EXAMPLES = "gold.training_examples"
TRAINING_SETS = "ml.training_sets"
SILVER_EVENTS = "silver.events"


class TrainingSetError(ClickscoreError):
    """No training set to read, or not the one asked for."""


def coded_events(spark: SparkSession, vocab_version: str) -> tuple[DataFrame, dict[str, int]]:
    """Non-bot silver events with their model codes, and the largest index of each vocab."""
    contract = feature_contract()
    item_df, item_max = vocab(spark, "ml.item_vocab", vocab_version)
    category_df, category_max = vocab(spark, "ml.category_vocab", vocab_version)
    sizes = {"item": item_max, "category": category_max}
    return with_codes(non_bot_events(spark), item_df, category_df, contract), sizes


def _parameters(contract: FeatureContract, vocab_version: str, sizes: dict[str, int],
                expected_rows: int) -> dict[str, object]:
    return {"sequence_length": contract.sequence_length, "next_items": contract.next_items,
            "item_vocab_max_idx": sizes["item"], "category_vocab_max_idx": sizes["category"],
            "vocab_versions": [vocab_version], "expected_rows": expected_rows}


def _active_users(coded_df: DataFrame, cutoffs: list[datetime], lookback: timedelta) -> int:
    """Users with events in the lookback of each cutoff, summed over cutoffs (one action)."""
    return history(coded_df, cutoffs, lookback).select("cutoff", *USER).distinct().count()


def run_features(spark: SparkSession, cfg: FeaturesConfig) -> RunCounts:
    """gold.user_features for `cfg.as_of`: replaces that cutoff's rows."""
    log.debug("features config: %s", cfg)
    contract = feature_contract()
    with stage_run(spark, "features", RunKey.at(cfg.as_of), data_root=cfg.data_root,
                   dq_run_date=RunDate(cfg.as_of.date())) as stage:
        if cfg.model_version:
            cfg = _as_model_reads(cfg)
        version = cfg.vocab_version or latest_vocab_version(spark)
        coded_df, sizes = coded_events(spark, version)
        silver_version = table_version(spark, SILVER_EVENTS)
        active = _active_users(coded_df, [cfg.as_of], cfg.lookback)
        if active == 0 and not cfg.allow_empty:
            raise EmptyInputError(f"silver.events in the {cfg.lookback} before {cfg.as_of}",
                                  cfg.as_of.isoformat())
        batch_df = stage.stage("user_features", user_features(
            coded_df, cfg.as_of, cfg.lookback, cfg.windows, contract, version))
        stage.validate(batch_df, USER_FEATURES,
                       parameters=_parameters(contract, version, sizes, active))
        with stage.publish():
            metrics = replace_where(spark, batch_df, USER_FEATURES,
                                    F.col("cutoff") == F.lit(cfg.as_of))
        spec = FeatureSpec.of(contract.version, version, cfg.lookback, cfg.windows)
        return stage.finish(RunCounts(
            input_rows=active, output_rows=metrics.get("numOutputRows", 0),
            details={"vocab_version": version, "vocab_sizes": sizes,
                     "feature_spec": spec.to_dict(),
                     "model_version": cfg.model_version,
                     # what scoring checks before it reuses these rows
                     "silver_events_version": silver_version,
                     "user_features_version": table_version(spark, USER_FEATURES)}))


def _as_model_reads(cfg: FeaturesConfig) -> FeaturesConfig:
    """The config with the registered model's feature spec (vocabulary, lookback, windows)."""
    from clickscore import registry

    model, found = registry.load_model(cfg.data_root, str(cfg.model_version))
    spec = model.cfg.features
    if spec is None:
        raise ClickscoreError(f"model version {found.version} records no feature spec; give "
                              f"--lookback and --windows instead")
    log.info("features as model version %s reads them: vocabulary %s, lookback %s, windows %s",
             found.version, spec.vocab_version, spec.lookback, ",".join(spec.labels))
    return replace(cfg, model_version=str(found.version), vocab_version=spec.vocab_version,
                   lookback=spec.lookback, windows=spec.window_spans)


def training_set_id(spec: FeatureSpec, cfg: TrainingExamplesConfig) -> str:
    """`ts` + a digest of how the set is built: the same settings give the same id (a
    rebuild replaces itself), any other cutoff, boundary or feature setting another."""
    identity = json.dumps({"spec": spec.to_dict(),
                           "cutoffs": [c.isoformat() for c in cfg.cutoffs],
                           "validation_from": cfg.validation_from.isoformat(),
                           "test_from": cfg.test_from.isoformat()}, sort_keys=True)
    return "ts" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def training_set(spark: SparkSession, wanted: str | None = None) -> dict[str, object]:
    """A recorded training set (the newest when `wanted` is None): its id, feature spec,
    cutoffs, boundaries and rows per split."""
    sets_df = read_table(spark, TRAINING_SETS)
    if wanted is not None:
        row = sets_df.where(F.col("training_set") == wanted).first()
        if row is None:
            known = [r.training_set for r in sets_df.orderBy(F.col("built_at").desc())
                     .limit(10).collect()]
            raise TrainingSetError(f"no training set {wanted!r} in {TRAINING_SETS} (newest "
                                   f"first: {', '.join(known) or 'none'})")
    else:
        row = sets_df.orderBy(F.col("built_at").desc(), F.col("training_set")).first()
        if row is None:
            raise TrainingSetError(f"{TRAINING_SETS} records no training set: run "
                                   "`clickscore training-examples` first")
    return {"training_set": row.training_set, "built_at": row.built_at,
            "spec": FeatureSpec.from_json(row.feature_spec), "cutoffs": list(row.cutoffs),
            "validation_from": row.validation_from, "test_from": row.test_from,
            "rows_by_split": json.loads(row.rows_by_split)}


def run_training_examples(spark: SparkSession, cfg: TrainingExamplesConfig) -> RunCounts:
    """gold.training_examples for `cfg.cutoffs`: features before each cutoff, labels after,
    split by time. Without a vocab version, builds one from the training period only."""
    log.debug("training examples config: %s", cfg)
    contract = feature_contract()
    key = RunKey.span(cfg.cutoffs[0], cfg.cutoffs[-1])
    with stage_run(spark, "training_examples", key, data_root=cfg.data_root,
                   dq_run_date=RunDate(None)) as stage:
        version = cfg.vocab_version or build_vocab(spark, VocabConfig(
            window_start=cfg.cutoffs[0] - cfg.lookback, window_end=cfg.validation_from,
            min_support=cfg.min_support, data_root=cfg.data_root))
        coded_df, sizes = coded_events(spark, version)
        cutoffs = list(cfg.cutoffs)
        spec = FeatureSpec.of(contract.version, version, cfg.lookback, cfg.windows, cfg.horizon)
        set_id = training_set_id(spec, cfg)
        active = _active_users(coded_df, cutoffs, cfg.lookback)
        if active == 0:
            raise EmptyInputError("silver.events before the cutoffs", str(key))
        # every cutoff in one pass over the events (each event once per cutoff that reads it)
        split = F.lit(None).cast("string")
        for c in cutoffs:
            split = F.when(F.col("cutoff") == F.lit(c), cfg.split_of(c)).otherwise(split)
        examples_df = (
            with_labels(user_features(coded_df, cutoffs, cfg.lookback, cfg.windows, contract,
                                      version),
                        labels(coded_df, cutoffs, cfg.horizon, contract), contract)
            .withColumn("horizon_s", F.lit(int(cfg.horizon.total_seconds())).cast("bigint"))
            .withColumn("lookback_s", F.lit(int(cfg.lookback.total_seconds())).cast("bigint"))
            .withColumn("split", split)
            .withColumn("training_set", F.lit(set_id)))
        batch_df = stage.stage("training_examples", examples_df)
        stage.validate(batch_df, TRAINING_EXAMPLES,
                       parameters=_parameters(contract, version, sizes, active))
        by_split = {r["split"]: r["count"] for r in batch_df.groupBy("split").count().collect()}
        with stage.publish():
            metrics = replace_where(spark, batch_df, TRAINING_EXAMPLES,
                                    F.col("training_set") == F.lit(set_id))
            record = spark.createDataFrame([{
                "training_set": set_id, "built_at": datetime.now(UTC), "cutoffs": cutoffs,
                "validation_from": cfg.validation_from, "test_from": cfg.test_from,
                "vocab_version": version, "feature_spec": spec.to_json(),
                "rows_by_split": json.dumps(by_split, sort_keys=True),
                "run_id": stage.run.run_id}], table_schema(TRAINING_SETS).struct)
            merge_upsert(spark, with_op(record, "upsert"), TRAINING_SETS,
                         compare=["built_at", "rows_by_split", "run_id"])
        log.info("training_examples: training set %s (%s)", set_id,
                 ", ".join(f"{k} {v:,}" for k, v in sorted(by_split.items())))
        return stage.finish(RunCounts(
            input_rows=active, output_rows=metrics.get("numOutputRows", 0),
            details={"training_set": set_id, "vocab_version": version, "vocab_sizes": sizes,
                     "cutoffs": cutoffs, "rows_by_split": by_split,
                     "feature_spec": spec.to_dict()}))
