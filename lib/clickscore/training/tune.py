"""`clickscore tune`: choose the sequence model's configuration on validation with Optuna,
then train the best one and register it like `clickscore train` does.

One training set is read and materialized once; each trial trains the training function on
it in this process with a configuration Optuna's TPE sampler proposes from `SEARCH_SPACE`, and
reports the validation NDCG@20 over all next items (the next-item head's metric) after every
epoch, so the median pruner stops a trial that is behind the others at the same epoch. The
study stops at `--trials` or after `--timeout-s` seconds, whichever comes first; the budget
binds inside a trial too: a trial still running when it is spent stops at the end of its
epoch and counts with its epochs so far (Optuna's own timeout is checked only between
trials, and one trial can take longer than the whole budget). Every trial is a nested MLflow
run under the study's run (its parameters, per-epoch metric, and whether it finished, was
pruned or stopped at the budget). The best configuration is then trained again by `run_train` and
registered as the challenger, with its heads chosen against the baselines as always: tuning
never lets the sequence model serve a head it does not win.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import replace
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from clickscore import registry
from clickscore.core.config import RunKey
from clickscore.core.errors import ClickscoreError
from clickscore.core.runs import RunCounts
from clickscore.features.contract import check_feature_frame, feature_contract
from clickscore.runner import stage_run
from clickscore.training.config import LoopConfig, TrainConfig, TuneConfig
from clickscore.training.data import converted, model_frame
from clickscore.training.job import (
    TRAINING_EXAMPLES,
    describe_examples,
    item_categories,
    model_config,
    pinned_examples,
    run_train,
    target_counts,
)
from clickscore.training.loop import train_function

log = logging.getLogger(__name__)

OBJECTIVE = "val_ndcg_all@20"  # the next-item head's validation metric, per epoch
# (name, kind, choices or bounds): what a trial may change
SEARCH_SPACE: tuple[tuple[str, str, Any], ...] = (
    ("d_model", "categorical", (32, 64, 128)),
    ("n_layers", "categorical", (1, 2)),
    ("dropout", "float", (0.0, 0.3)),
    ("learning_rate", "log", (3e-4, 1e-2)),
    ("popularity_prior", "categorical", (False, True)),
    ("repeat", "categorical", (False, True)),
    ("category_output", "categorical", (False, True)),
    ("category_affinity", "categorical", (False, True)),
    ("anchored", "categorical", (False, True)),
    ("cutoff_weight", "log", (1.0, 10.0)),
    ("keep", "categorical", ("best", "last")),
)


def suggest(trial: Any) -> dict[str, Any]:
    """One configuration from the search space."""
    chosen: dict[str, Any] = {}
    for name, kind, values in SEARCH_SPACE:
        if kind == "categorical":
            chosen[name] = trial.suggest_categorical(name, list(values))
        else:
            chosen[name] = trial.suggest_float(name, *values, log=kind == "log")
    return chosen


def run_tune(spark: SparkSession, cfg: TuneConfig) -> RunCounts:
    import mlflow
    import optuna

    contract = feature_contract()
    examples_df, delta_version, chosen = pinned_examples(spark, cfg.training_set)
    with stage_run(spark, "tune", RunKey.version(TRAINING_EXAMPLES, delta_version),
                   data_root=cfg.data_root) as stage:
        check_feature_frame(examples_df, contract, with_labels=True)
        described = describe_examples(examples_df)
        # what every trial and the final training share; a trial adds its configuration
        shared = dict(training_set=str(chosen["training_set"]), epochs=cfg.epochs,
                      batch_size=cfg.batch_size, seed=cfg.seed,
                      max_steps_per_epoch=cfg.max_steps_per_epoch,
                      promotion_margin=cfg.promotion_margin, auto_promote=cfg.auto_promote,
                      registered_by=cfg.registered_by)
        base = TrainConfig.of(cfg.data_root, **shared)
        model_cfg = model_config(spark, base, contract, described, chosen)
        rows = described["rows"]
        frames = {s: model_frame(examples_df.where(F.col("split") == s), contract)
                  for s in ("train", "validation")}
        size = model_cfg.item_vocab_size
        counts, categories = (target_counts(frames["train"], size),
                              item_categories(frames["train"], size))
        registry.client(cfg.data_root)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per study, below
        sampler = optuna.samplers.TPESampler(seed=cfg.seed)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
        started = time.monotonic()
        with (converted(spark, frames["train"], cfg.data_root, partitions=4) as train,
              converted(spark, frames["validation"], cfg.data_root, partitions=2) as validation,
              mlflow.start_run(run_name="tune") as parent):
            mlflow.set_tags({"training_set": str(chosen["training_set"]),
                             "input_delta_version": str(delta_version)})

            def objective(trial: Any) -> float:
                params = suggest(trial)
                hyper = replace(model_cfg.hyper, **{k: v for k, v in params.items()
                                                    if hasattr(model_cfg.hyper, k)})
                with tempfile.TemporaryDirectory() as folder, \
                        mlflow.start_run(run_name=f"trial {trial.number}", nested=True):
                    mlflow.log_params(params)
                    loop = replace(base.loop, **{k: v for k, v in params.items()
                                                 if hasattr(LoopConfig, k)},
                                   checkpoint_dir=folder)

                    history: list[dict[str, Any]] = []

                    def report(record: dict[str, Any]) -> None:
                        history.append(record)
                        value = float(record.get(OBJECTIVE, 0.0))
                        mlflow.log_metric(registry.metric_name(OBJECTIVE), value,
                                          step=record["epoch"])
                        trial.report(value, record["epoch"])
                        if trial.should_prune():
                            mlflow.set_tag("state", "pruned")
                            raise optuna.TrialPruned(f"epoch {record['epoch']}: {value:.4f}")
                        if time.monotonic() - started > cfg.timeout_s:
                            raise BudgetSpent

                    state = "complete"
                    try:
                        train_function(
                            replace(model_cfg, hyper=hyper), loop, train, validation,
                            rows["train"], counts if hyper.popularity_prior else None,
                            categories if hyper.uses_item_categories else None,
                            on_epoch=report)
                    except BudgetSpent:
                        state = "stopped at the budget"
                        trial.set_user_attr("stopped_at_budget", len(history))
                    kept = (history[-1] if loop.keep == "last" else
                            max(history, key=lambda h: h.get(OBJECTIVE, 0.0)))
                    value = float(kept.get(OBJECTIVE, 0.0))
                    mlflow.set_tag("state", state)
                    mlflow.log_metric("value", value)
                    return value

            with stage.step("trials"):
                study.optimize(objective, n_trials=cfg.trials, timeout=cfg.timeout_s,
                               gc_after_trial=True)
            states = [t.state.name.lower() for t in study.trials]
            complete = [t for t in study.trials if t.state.name == "COMPLETE"]
            if not complete:
                raise TuneError(f"tune: no trial completed within {cfg.timeout_s:.0f} s "
                                f"({len(study.trials)} started); raise --timeout-s")
            best = study.best_trial
            mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
            mlflow.log_metric(f"best_{registry.metric_name(OBJECTIVE)}", float(best.value or 0))
            searched_s = time.monotonic() - started
        log.info("tune: %d trials (%s) in %.0f s; best trial %d, %s %.4f: %s",
                 len(study.trials), ", ".join(f"{states.count(s)} {s}" for s in
                                             sorted(set(states))),
                 searched_s, best.number, OBJECTIVE, best.value, best.params)
        with stage.step("train the best"):
            final = run_train(spark, TrainConfig.of(cfg.data_root, **shared, **best.params))
        mlflow.MlflowClient(registry.tracking_uri(cfg.data_root)).set_tag(
            parent.info.run_id, "model_version", final.details["model_version"])
        total = sum(rows.values())
        return stage.finish(RunCounts(input_rows=total, output_rows=total, details={
            "trials": len(study.trials), "states": {s: states.count(s) for s in set(states)},
            "stopped_at_budget": [t.number for t in study.trials
                                  if "stopped_at_budget" in t.user_attrs],
            "searched_s": round(searched_s, 1), "best_trial": best.number,
            "best_value": best.value, "best_params": best.params,
            "model_version": final.details["model_version"], "heads": final.details["heads"],
            "training_set": str(chosen["training_set"]), "study_run_id": parent.info.run_id}))


class TuneError(ClickscoreError):
    """No trial of the study completed."""


class BudgetSpent(Exception):
    """Raised after an epoch of a trial once the study's wall-clock budget is spent: the
    trial ends there, with its epochs so far."""
