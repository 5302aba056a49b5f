"""Training jobs: `clickscore train` and `clickscore evaluate`.

Train reads a pinned Delta version of gold.training_examples, checks it against the feature
contract, materializes the splits through Petastorm, runs the training function on
`num_processes` processes with TorchDistributor (in-process for one local process), evaluates
the best weights on the test split next to the baselines, and logs everything to MLflow: the
parameters, per-epoch metrics, test metrics of the model and every baseline, the plots, the
Delta version and vocabulary it read, and the model, registered as `challenger` (and promoted
to `champion` when it earns it, see `clickscore.registry`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from clickscore import registry
from clickscore.core.config import RunKey
from clickscore.core.delta import read_table, table_version
from clickscore.core.errors import EmptyInputError, FeatureContractError
from clickscore.core.runs import RunCounts
from clickscore.features.contract import FeatureContract, check_feature_frame, feature_contract
from clickscore.features.job import training_set
from clickscore.features.vocab_job import vocab
from clickscore.model.baselines import Calibrator, ItemStats, fit_propensity_baselines
from clickscore.model.bundle import ScorerBundle
from clickscore.model.config import IncompatibleFeaturesError, ModelConfig
from clickscore.model.network import SequenceModel
from clickscore.model.spec import FeatureSpec
from clickscore.runner import stage_run
from clickscore.training import runs
from clickscore.training.config import EvaluateConfig, TrainConfig
from clickscore.training.data import batches, converted, dense_columns, model_frame
from clickscore.training.evaluate import (
    Evaluation,
    choose_heads,
    evaluate,
    save_plots,
    write_json,
)
from clickscore.training.loop import train_function

log = logging.getLogger(__name__)

TRAINING_EXAMPLES = "gold.training_examples"
SPLITS = ("train", "validation", "test")
SESSION_GAP_S = 1800.0  # item-kNN's sessions: the time-gap bucket of 30 minutes starts one


def pinned_examples(spark: SparkSession, wanted: str | None = None
                    ) -> tuple[DataFrame, int, dict[str, Any]]:
    """One training set's rows of gold.training_examples as of the table's current Delta
    version (the newest set unless `wanted` names one), that version, and the set's record
    (id, feature spec, cutoffs) from ml.training_sets."""
    chosen = training_set(spark, wanted)
    read_table(spark, TRAINING_EXAMPLES)  # created empty when missing
    version = table_version(spark, TRAINING_EXAMPLES)
    rows_df = (spark.read.option("versionAsOf", version).table(TRAINING_EXAMPLES)
               .where(F.col("training_set") == F.lit(chosen["training_set"])))
    return rows_df, version, chosen


def describe_examples(examples_df: DataFrame) -> dict[str, Any]:
    """Rows per split, the vocabulary and feature versions, and the window count: one action.
    Refuses a table that mixes vocabularies (a model has one)."""
    rows = (examples_df.groupBy("split").agg(
        F.count(F.lit(1)).alias("rows"), F.collect_set("vocab_version").alias("vocabs"),
        F.collect_set("feature_version").alias("features"),
        F.collect_set("windows").alias("windows"), F.collect_set("lookback_s").alias("lookbacks"),
        F.collect_set("horizon_s").alias("horizons")).collect())
    vocabs = sorted({v for r in rows for v in r["vocabs"]})
    if len(vocabs) > 1:
        raise FeatureContractError(feature_contract().version, [
            f"{TRAINING_EXAMPLES} mixes vocabulary versions {vocabs}; rebuild it with one"])
    built = {name: sorted({tuple(v) if isinstance(v, list) else v for r in rows
                           for v in r[name]}) for name in ("windows", "lookbacks", "horizons")}
    mixed = [f"{name} {values}" for name, values in built.items() if len(values) > 1]
    if mixed:
        raise FeatureContractError(feature_contract().version, [
            f"{TRAINING_EXAMPLES} mixes features built differently ({'; '.join(mixed)}); "
            "rebuild it with one setting"])
    return {"rows": {r["split"]: r["rows"] for r in rows},
            "vocab_version": vocabs[0] if vocabs else None,
            "feature_version": max((f for r in rows for f in r["features"]), default=None),
            "windows": built["windows"][0] if built["windows"] else (),
            "lookback_s": built["lookbacks"][0] if built["lookbacks"] else 0,
            "horizon_s": built["horizons"][0] if built["horizons"] else 0}


def model_config(spark: SparkSession, cfg: TrainConfig, contract: FeatureContract,
                 described: dict[str, Any], chosen: dict[str, Any]) -> ModelConfig:
    spec: FeatureSpec = chosen["spec"]
    if (spec.vocab_version, spec.labels) != (described["vocab_version"],
                                              list(described["windows"])):
        raise FeatureContractError(contract.version, [
            f"training set {chosen['training_set']} records vocabulary {spec.vocab_version} "
            f"and windows {spec.labels}; its rows hold {described['vocab_version']} and "
            f"{list(described['windows'])}"])
    _, item_max = vocab(spark, "ml.item_vocab", spec.vocab_version)
    _, category_max = vocab(spark, "ml.category_vocab", spec.vocab_version)
    n_dense = len(contract.window_arrays) * len(spec.windows) + len(contract.scalars)
    return ModelConfig(
        item_vocab_size=item_max + 1, category_vocab_size=category_max + 1,
        sequence_length=contract.sequence_length, n_event_types=len(contract.event_types),
        n_time_gap_buckets=len(contract.time_gap_edges_s) + 1,
        n_price_buckets=len(contract.price_edges) + 1, n_dense=n_dense,
        feature_version=spec.feature_version, vocab_version=spec.vocab_version,
        hyper=cfg.model, features=spec,
        training_set=str(chosen["training_set"]))


def target_counts(train_df: DataFrame, vocab_size: int) -> list[int]:
    """Per vocabulary index, how often it is a next-item target in the training rows (the
    model's popularity prior): one small aggregate, the size of the vocabulary."""
    counts = [0] * vocab_size
    for row in (train_df.select(F.explode("target_seq").alias("idx"))
                .where(F.col("idx") >= 2).groupBy("idx").count().collect()):
        counts[int(row["idx"])] = int(row["count"])
    return counts


def item_categories(train_df: DataFrame, vocab_size: int) -> list[int]:
    """Per vocabulary index, the category index it carries most often in the training rows
    (ties: the smaller index; 0 for an index never seen): the model's item categories."""
    categories = [0] * vocab_size
    pairs_df = (train_df.select(F.explode(F.arrays_zip("item_seq", "category_seq")).alias("p"))
                .select(F.col("p.item_seq").alias("idx"), F.col("p.category_seq").alias("cat"))
                .where((F.col("idx") >= 2) & (F.col("cat") > 0))
                .groupBy("idx", "cat").count()
                .groupBy("idx").agg(F.max_by("cat", F.struct("count", -F.col("cat")))
                                    .alias("cat")))
    for row in pairs_df.collect():
        categories[int(row["idx"])] = int(row["cat"])
    return categories


def session_bucket(contract: FeatureContract) -> int:
    """The time-gap bucket from which a gap starts a new session (30 minutes)."""
    return 2 + sum(1 for edge in contract.time_gap_edges_s if edge < SESSION_GAP_S)


def use_gpu(spark: SparkSession, cfg: TrainConfig) -> bool:
    """GPUs for the training processes: on executors when Spark schedules them per task,
    on the driver when CUDA sees one."""
    if cfg.distribution.use_gpu != "auto":
        return cfg.distribution.use_gpu == "yes"
    if cfg.distribution.local_mode:
        return torch.cuda.is_available()
    return float(spark.conf.get("spark.task.resource.gpu.amount", "0") or 0) > 0


def _distributed(spark: SparkSession, cfg: TrainConfig, *args: Any) -> dict[str, Any]:
    if cfg.distribution.num_processes == 1 and cfg.distribution.local_mode:
        return train_function(*args)  # one local process: no launcher needed
    from pyspark.ml.torch.distributor import TorchDistributor

    distributor = TorchDistributor(num_processes=cfg.distribution.num_processes,
                                   local_mode=cfg.distribution.local_mode,
                                   use_gpu=use_gpu(spark, cfg))
    return dict(distributor.run(train_function, *args) or {})


def run_train(spark: SparkSession, cfg: TrainConfig) -> RunCounts:
    """Train, evaluate, register; returns the counts recorded in ops.pipeline_runs."""
    contract = feature_contract()
    examples_df, delta_version, chosen = pinned_examples(spark, cfg.training_set)
    with stage_run(spark, "train", RunKey.version(TRAINING_EXAMPLES, delta_version),
                   data_root=cfg.data_root) as stage:
        log.info("train: training set %s (cutoffs %s)", chosen["training_set"],
                 ", ".join(c.isoformat() for c in chosen["cutoffs"]))
        check_feature_frame(examples_df, contract, with_labels=True)
        described = describe_examples(examples_df)
        rows = described["rows"]
        missing = [s for s in ("train", "validation") if not rows.get(s)]
        if missing:
            raise EmptyInputError(f"{TRAINING_EXAMPLES} split(s) {missing} of training set "
                                  f"{chosen['training_set']}", f"v{delta_version}")
        model_cfg = model_config(spark, cfg, contract, described, chosen)
        # this run's checkpoints, or with --resume those of the unfinished run it continues
        training_run = runs.start(cfg, str(chosen["training_set"]), stage.run.run_id)
        loop = replace(cfg.loop, checkpoint_dir=str(training_run.folder))
        frames = {split: model_frame(examples_df.where(F.col("split") == split), contract)
                  for split in SPLITS}
        partitions = max(4, 2 * cfg.distribution.num_processes)
        with (converted(spark, frames["train"], cfg.data_root, partitions=partitions) as train,
              converted(spark, frames["validation"], cfg.data_root, partitions=2) as validation,
              converted(spark, frames["test"], cfg.data_root, partitions=2) as test):
            with stage.step("train"):
                size = model_cfg.item_vocab_size  # each aggregate only when its option is on
                counts = (target_counts(frames["train"], size)
                          if model_cfg.hyper.popularity_prior else None)
                categories = (item_categories(frames["train"], size)
                              if model_cfg.hyper.uses_item_categories else None)
                result = _distributed(spark, cfg, model_cfg, loop, train, validation,
                                      rows["train"], counts, categories)
            with stage.step("evaluate"):
                model = SequenceModel(model_cfg)
                model.load_state_dict(torch.load(result["weights_path"], map_location="cpu",
                                                 weights_only=True)["model"])
                bundle, evaluations = _evaluate(model, train, validation, test, contract,
                                                cfg.loop.batch_size, cfg.loop.seed,
                                                cfg.promotion_margin)
        for evaluation in evaluations:
            print(evaluation.table(), flush=True)
        with stage.step("register"):
            version, promoted = _register(cfg, bundle, result, evaluations, rows,
                                          delta_version, contract)
        training_run.finish(version)
        log.info("train: model version %s registered as challenger%s", version,
                 " and promoted to champion" if promoted else "")
        total = sum(rows.values())
        return stage.finish(RunCounts(input_rows=total, output_rows=total, details={
            "model_version": version, "promoted": promoted, "delta_version": delta_version,
            "training_set": model_cfg.training_set, "vocab_version": model_cfg.vocab_version,
            "feature_spec": chosen["spec"].to_dict(), "rows_by_split": rows,
            "device": result.get("device"), "world_size": result.get("world_size"),
            "val_recall_all_at_20": result["metric"], "weights_kept": result["kept"],
            "heads": {h: c.scorer for h, c in evaluations[0].heads.items()},
            "checkpoints": str(training_run.folder),
            "resumed": training_run.run_id if cfg.loop.resume else None,
            "test": {m: v.value for m, v in evaluations[1].next_item.get("model", {}).items()}}))


def _evaluate(model: SequenceModel, train: Any, validation: Any, test: Any,
              contract: FeatureContract, batch_size: int, seed: int, margin: float
              ) -> tuple[ScorerBundle, list[Evaluation]]:
    """The bundle (the model, the baselines fitted on the training rows, a calibrator per
    propensity scorer fitted on validation), its heads chosen on validation, and every
    scorer on validation and test."""
    with batches(train, batch_size=batch_size, num_epochs=1, shuffle=False) as train_loader:
        stats = ItemStats.from_batches(train_loader, model.cfg.item_vocab_size,
                                       session_bucket(contract))
    bundle = ScorerBundle(model=model, stats=stats,
                          propensity=fit_propensity_baselines(stats, seed))
    with batches(validation, batch_size=batch_size, num_epochs=1, shuffle=False) as loader:
        on_validation = evaluate(bundle, loader, split="validation", seed=seed)
    choose_heads(on_validation, margin)
    for name, p in on_validation.raw_probabilities.items():
        calibrator = Calibrator.fit(p, on_validation.labels)
        if calibrator is not None:
            bundle.calibrators[name] = calibrator
    with batches(test, batch_size=batch_size, num_epochs=1, shuffle=False) as loader:
        on_test = evaluate(bundle, loader, split="test", seed=seed)
    return bundle, [on_validation, on_test]


def _register(cfg: TrainConfig, bundle: ScorerBundle, result: dict[str, Any],
              evaluations: list[Evaluation], rows: dict[str, int], delta_version: int,
              contract: FeatureContract) -> tuple[str, bool]:
    import mlflow

    model_cfg = bundle.cfg
    heads = evaluations[0].heads
    mlflow_client = registry.client(cfg.data_root)
    with mlflow.start_run() as run:
        mlflow.log_params({**_flat("train", {k: v for k, v in asdict(cfg).items()
                                             if k != "data_root"}),
                           **_flat("model", model_cfg.to_dict())})
        mlflow.set_tags({"input_table": TRAINING_EXAMPLES,
                         "input_delta_version": str(delta_version),
                         "training_set": model_cfg.training_set,
                         "vocab_version": model_cfg.vocab_version,
                         "feature_version": str(contract.version),
                         "device": str(result.get("device")),
                         "world_size": str(result.get("world_size")),
                         **{f"head_{h}": c.scorer for h, c in heads.items()},
                         **{f"rows_{split}": str(n) for split, n in rows.items()}})
        for record in result["history"]:
            mlflow.log_metrics({registry.metric_name(k): float(v) for k, v in record.items()
                                if k != "epoch"}, step=record["epoch"])
        mlflow.log_metric(registry.LOOP_METRIC, float(result["metric"]))
        for head, choice in heads.items():
            mlflow.log_metric(registry.head_metric(head), choice.value.value)
        for evaluation in evaluations:
            prefix = "val" if evaluation.split == "validation" else evaluation.split
            for block in (evaluation.next_item, evaluation.propensity):
                for method, values in block.items():
                    mlflow.log_metrics({
                        registry.metric_name(f"{prefix}_{method}_{m}{part}"): float(v)
                        for m, e in values.items()
                        for part, v in (("", e.value), ("_low", e.low), ("_high", e.high))
                        if v == v})  # NaN skipped
        with tempfile.TemporaryDirectory() as folder:
            for path in save_plots(evaluations[-1], result["history"], Path(folder)):
                mlflow.log_artifact(str(path), artifact_path="plots")
            kept = Path(folder) / "bundle"
            kept.mkdir()
            (kept / registry.BUNDLE_FILE).write_bytes(bundle.to_bytes())
            write_json(evaluations, kept / "evaluation.json")
            mlflow.log_artifacts(str(kept), artifact_path="bundle")
        version = registry.register(mlflow_client, f"{run.info.artifact_uri}/bundle",
                                    run.info.run_id,
                                    {**{f"head_{h}": c.scorer for h, c in heads.items()},
                                     **({registry.REGISTERED_BY: cfg.registered_by}
                                        if cfg.registered_by else {})})
    registry.set_alias(cfg.data_root, "challenger", version)
    log.debug("mlflow run %s, model version %s", run.info.run_id, version)
    promoted = cfg.auto_promote and registry.decide_promotion(cfg.data_root, version,
                                                              cfg.promotion_margin)
    return version, promoted


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """Nested settings as MLflow params: `train_loop_epochs`, `model_hyper_d_model`."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "features":
            out |= _flat(f"{prefix}_{key}", value)
        else:
            out[f"{prefix}_{key}"] = value
    return out


def run_evaluate(spark: SparkSession, cfg: EvaluateConfig) -> list[Evaluation]:
    """A registered bundle (number or alias) on the validation and test splits of the set it
    was trained on (or `--training-set`), with the scorers it stores (the baselines are not
    fitted again) and the heads recorded when it was registered."""
    contract = feature_contract()
    bundle, found = registry.load_bundle(cfg.data_root, cfg.model_version)
    heads = registry.heads(cfg.data_root, found.version)
    examples_df, delta_version, chosen = pinned_examples(
        spark, cfg.training_set or bundle.cfg.training_set or None)
    check_feature_frame(examples_df, contract, with_labels=True)
    described = describe_examples(examples_df)
    try:
        bundle.cfg.check_features(described["feature_version"] or contract.version,
                                  described["vocab_version"])
    except IncompatibleFeaturesError as exc:
        raise FeatureContractError(contract.version, [str(exc)]) from None
    evaluations = []
    for split in ("validation", "test"):
        frame = model_frame(examples_df.where(F.col("split") == split), contract)
        with converted(spark, frame, cfg.data_root, partitions=2) as data, batches(
                data, batch_size=256, num_epochs=1, shuffle=False) as loader:
            evaluations.append(evaluate(bundle, loader, split=split))
    if cfg.format == "json":
        print(json.dumps({"model_version": str(found.version),
                          "training_set": chosen["training_set"],
                          "input": f"{TRAINING_EXAMPLES}@v{delta_version}",
                          "heads": heads,
                          **{e.split: e.to_dict() for e in evaluations}},
                         indent=1), flush=True)
        return evaluations
    print(f"model version {found.version} on training set {chosen['training_set']} of "
          f"{TRAINING_EXAMPLES}@v{delta_version} "
          f"(dense features: {', '.join(dense_columns(contract))})")
    for evaluation in evaluations:
        print(evaluation.table(), flush=True)
    print("heads: " + ", ".join(f"{h} by {s}" for h, s in heads.items()), flush=True)
    return evaluations
