"""Training end to end on generated data: Petastorm round trip and sharding, TorchDistributor
with two processes, resume, learning the generator's planted pairs against the baselines,
MLflow registration and promotion, and refusing features of another vocabulary."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from pyspark.sql import functions as F

from clickscore import registry
from clickscore.core.config import parse_windows
from clickscore.core.errors import FeatureContractError
from clickscore.features.config import TrainingExamplesConfig
from clickscore.features.contract import feature_contract
from clickscore.features.job import TrainingSetError, run_training_examples
from clickscore.model.baselines import ItemStats
from clickscore.model.metrics import first_target_hits
from clickscore.model.network import FIRST_ITEM
from clickscore.training.config import EvaluateConfig, LoopConfig, TrainConfig
from clickscore.training.data import batches, converted, model_frame
from clickscore.training.job import (
    item_categories,
    pinned_examples,
    run_evaluate,
    run_train,
    session_bucket,
    target_counts,
)
from clickscore.training.loop import to_device, train_function
from clickscore.training.tune import OBJECTIVE
from tests.integration.conftest import GENERATED_CUTOFFS
from tests.integration.helpers import invoke_cli

pytestmark = pytest.mark.integration

VIEW = 1  # event type code of a view


def small(data_root, **overrides) -> TrainConfig:
    values = dict(data_root=data_root, epochs=2, batch_size=128, d_model=32, n_heads=2,
                  n_layers=1, dropout=0.1, warmup_steps=5, patience=2)
    return TrainConfig.of(**{**values, **overrides})


def test_the_petastorm_loader_round_trips_rows_and_two_shards_cover_every_row_once(
        spark, generated_examples, data_root):
    contract = feature_contract()
    examples_df, _, _ = pinned_examples(spark)
    frame_df = model_frame(examples_df.where("split = 'train'"), contract, keep=("user_id",))
    expected = {(r.user_id, tuple(r.item_seq), tuple(r.target_seq), tuple(r.dense),
                 r.purchased_within_horizon) for r in frame_df.collect()}

    def rows(loader):
        return [(int(u), tuple(s.tolist()), tuple(t.tolist()), tuple(d.tolist()), int(p))
                for b in loader for u, s, t, d, p in zip(
                    b["user_id"], b["item_seq"], b["target_seq"], b["dense"],
                    b["purchased_within_horizon"], strict=True)]

    with converted(spark, frame_df, data_root, partitions=4) as converter:
        with batches(converter, batch_size=64, num_epochs=1, shuffle=False) as loader:
            assert set(rows(loader)) == expected
        shards = []
        for rank in (0, 1):  # one pass, so in order (see `batches`)
            with batches(converter, batch_size=64, num_epochs=1, rank=rank, world_size=2,
                         shuffle=False) as loader:
                shards.append(rows(loader))
        assert shards[0] and shards[1], _row_groups(converter)
        # a shuffled one-pass read is what came back empty under load: refused
        with (pytest.raises(ValueError, match="must not shuffle"),
              batches(converter, batch_size=64, num_epochs=1)):
            pass
        assert sorted(shards[0] + shards[1]) == sorted(expected)
        assert len(shards[0]) + len(shards[1]) == len(expected)


def _row_groups(converter) -> str:
    """For a failed sharding check: each Parquet file of the conversion with its row groups
    and rows (Petastorm shards by row group index, `index % shard_count == rank`)."""
    import pyarrow.parquet as pq

    files = [pq.ParquetFile(u.removeprefix("file://")) for u in converter.file_urls]
    return "row groups per file: " + ", ".join(
        f"{f.metadata.num_row_groups} ({f.metadata.num_rows} rows)" for f in files)


def test_the_popularity_prior_counts_next_item_targets_only(spark):
    rows_df = spark.createDataFrame(
        [([0, 0, 2, 3],), ([1, 4, 4, 2],), ([0, 0, 0, 0],)], "target_seq array<int>")
    # padding (0) and out-of-vocabulary (1) are no targets; index 5 never occurs
    assert target_counts(rows_df, 6) == [0, 0, 2, 1, 2, 0]


def test_each_item_gets_the_category_it_carries_most_often(spark):
    rows_df = spark.createDataFrame([
        ([0, 2, 3, 2], [0, 4, 1, 4]),   # item 2 in category 4 twice
        ([2, 3, 1, 4], [5, 2, 3, 5]),   # 2 once in 5; 3 in 1 and 2 (a tie: the smaller, 1)
        ([0, 0, 4, 0], [0, 0, 0, 0]),   # a category 0 (unknown) counts for nothing
    ], "item_seq array<int>, category_seq array<int>")
    # padding (0) and OOV (1) get none; index 5 never occurs
    assert item_categories(rows_df, 6) == [0, 0, 4, 1, 5, 0]


def test_two_processes_with_torch_distributor_end_with_identical_weights_and_loss_falls(
        spark, generated_examples, data_root):
    counts = run_train(spark, small(data_root, num_processes=2, epochs=3, auto_promote=False))
    details = counts.details
    assert details["world_size"] == 2 and details["device"] == "cpu"
    folder = Path(details["checkpoints"])
    assert folder.parent == Path(data_root) / "training" / "runs"
    weights = [torch.load(folder / f"final-rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    history = torch.load(folder / "last.pt", weights_only=False)["history"]
    assert history[-1]["loss_total"] < history[0]["loss_total"]


def test_a_seed_gives_the_same_weights_and_resume_continues_from_the_checkpoint(
        spark, generated_examples, data_root, tmp_path):
    contract = feature_contract()
    examples_df, _, chosen = pinned_examples(spark)
    from clickscore.training.job import describe_examples, model_config

    model_cfg = model_config(spark, small(data_root), contract, describe_examples(examples_df),
                             chosen)
    loop = LoopConfig(epochs=1, batch_size=128, warmup_steps=5, checkpoint_dir=str(tmp_path),
                      max_steps_per_epoch=3)
    frames = {s: model_frame(examples_df.where(F.col("split") == s), contract)
              for s in ("train", "validation")}
    with (converted(spark, frames["train"], data_root, partitions=2) as train,
          converted(spark, frames["validation"], data_root, partitions=1) as validation):
        first = train_function(model_cfg, loop, train, validation, 384)
        after_first = torch.load(tmp_path / "last.pt", weights_only=False)
        # the same seed on CPU gives the same weights
        train_function(model_cfg, replace(loop, checkpoint_dir=str(tmp_path / "again")), train,
                       validation, 384)
        again = torch.load(tmp_path / "again" / "last.pt", weights_only=False)["model"]
        differ = {k: float((after_first["model"][k] - again[k]).abs().max()) for k in again
                  if not torch.equal(after_first["model"][k], again[k])}
        assert not differ, differ
        resumed = train_function(model_cfg, replace(loop, epochs=2, resume=True), train,
                                 validation, 384)
    assert [h["epoch"] for h in first["history"]] == [1]
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == first["history"][0]  # epoch 1 was not trained again
    final = torch.load(tmp_path / "last.pt", weights_only=False)
    assert final["optimizer"]["state"][0]["step"] == after_first["optimizer"]["state"][0][
        "step"] + 3


def test_the_model_learns_the_planted_pairs_and_registers_as_champion(
        spark, generated_examples, data_root, capsys):
    manifest = generated_examples["manifest"]
    # the last epoch's weights: validation (79 users' next items after the cutoff) is
    # dominated by what is popular in the user's favourite category, and peaks at epoch 1 or
    # 2, before the pairs are learned; kept, those weights scored 0.08-0.46 here (seeds 42, 3
    # and 7), the last epoch's 0.85
    counts = run_train(spark, small(data_root, epochs=8, d_model=64, n_layers=2, patience=8,
                                    keep="last", batch_size=128, learning_rate=3e-3,
                                    dropout=0.2))
    table = capsys.readouterr().out
    for method in ("model", "most_popular", "recently_viewed", "item_knn",
                   "logistic_regression", "hist_gradient_boosting"):
        assert method in table
    version = counts.details["model_version"]
    assert registry.aliases(data_root) == {"challenger": version, "champion": version}

    # Recall@20 right after a planted trigger's view, where the next event is a view in the
    # same session (the transitions the generator plants), on the test split
    model, _ = registry.load_model(data_root, "champion")
    vocab = {r.item_id: r.idx for r in spark.table("ml.item_vocab").where(
        F.col("vocab_version") == model.cfg.vocab_version).collect()}
    triggers = torch.tensor([vocab[a] for a, _ in manifest["planted_pairs"] if a in vocab])
    contract = feature_contract()
    same_session = session_bucket(contract)
    examples_df, _, _ = pinned_examples(spark)
    hits, popular_hits, positions = 0.0, 0.0, 0
    with (converted(spark, model_frame(examples_df.where("split = 'train'"), contract),
                    data_root, partitions=2) as train,
          converted(spark, model_frame(examples_df.where("split = 'test'"), contract),
                    data_root, partitions=1) as test):
        with batches(train, batch_size=256, num_epochs=1, shuffle=False) as loader:
            stats = ItemStats.from_batches(loader, model.cfg.item_vocab_size, same_session)
        model.eval()
        with batches(test, batch_size=256, num_epochs=1, shuffle=False) as loader:
            for raw in loader:
                batch = to_device(raw, torch.device("cpu"))
                with torch.no_grad():
                    hidden = model.encode(batch)[:, :-1]
                types, gaps = batch["event_type_seq"], batch["time_gap_seq"]
                at = (torch.isin(batch["item_seq"][:, :-1], triggers) & (types[:, :-1] == VIEW)
                      & (types[:, 1:] == VIEW) & (gaps[:, 1:] > 1) & (gaps[:, 1:] < same_session)
                      & (batch["target_seq"][:, :-1] >= FIRST_ITEM))
                if not at.any():
                    continue
                targets = batch["target_seq"][:, :-1][at]
                rows, slots = at.nonzero(as_tuple=True)
                scores = model.item_scores(hidden[at], batch["item_seq"][rows], slots)
                hits += float(first_target_hits(scores, targets, 20)["recall@20"].sum())
                popular_hits += float(first_target_hits(stats.popular_scores(len(targets)),
                                                        targets, 20)["recall@20"].sum())
                positions += len(targets)
    # the ceiling: how often the generator really planted the follow after a trigger's view
    ceiling = manifest["planted_transitions"] / manifest["trigger_views_with_next_view"]
    recall, popular_recall = hits / positions, popular_hits / positions
    print(f"planted pairs: recall@20 {recall:.3f}, most-popular {popular_recall:.3f}, "
          f"ceiling {ceiling:.3f}, {positions} positions")  # shown with pytest -s
    assert positions >= 30, positions
    assert 0.75 <= ceiling <= 0.85
    # with the best epoch's weights this measured 0.08 to 0.85 from run to run (see the README)
    assert recall >= 0.55 * ceiling, (recall, ceiling, positions)
    assert recall >= popular_recall + 0.3, (recall, popular_recall)

    # a worse challenger is not promoted; `models promote` overrides
    worse = run_train(spark, small(data_root, epochs=1, max_steps_per_epoch=1,
                                   learning_rate=1e-5))
    assert registry.aliases(data_root)["champion"] == version
    assert registry.aliases(data_root)["challenger"] == worse.details["model_version"]
    registry.promote(data_root, worse.details["model_version"])
    assert registry.aliases(data_root)["champion"] == worse.details["model_version"]


def test_evaluate_refuses_features_of_another_vocabulary_naming_both(
        spark, generated_model, data_root):
    # the session's trained model (its examples restored, then relabelled)
    spark.sql("UPDATE gold.training_examples SET vocab_version = 'vother'")
    with pytest.raises(FeatureContractError, match="vocabulary v[0-9a-f]{12}; these features "
                                                   "are contract v1 with vocabulary vother"):
        run_evaluate(spark, EvaluateConfig(data_root=data_root,
                                           model_version=generated_model["model_version"]))


def test_next_weeks_build_sits_beside_this_ones_and_train_reads_exactly_one(
        spark, generated_examples, data_root):
    """The weekly retraining: a second build with other cutoffs and another vocabulary
    leaves the first set intact; train reads the one named, never a mix of the two, and the
    newest by default (the training DAG's `train` names none)."""
    first = generated_examples["examples"].details
    later = GENERATED_CUTOFFS[2:]
    second = run_training_examples(spark, TrainingExamplesConfig(
        cutoffs=later, validation_from=later[-2], test_from=later[-1], data_root=data_root,
        horizon=timedelta(hours=6), lookback=timedelta(hours=12),
        windows=parse_windows("1h,6h,12h"), min_support=2)).details
    assert second["training_set"] != first["training_set"]
    assert second["vocab_version"] != first["vocab_version"]
    per_set = {r.training_set: (r["count"], r.vocabs) for r in spark.table(
        "gold.training_examples").groupBy("training_set").agg(
        F.count(F.lit(1)).alias("count"), F.collect_set("vocab_version").alias("vocabs"))
        .collect()}
    assert per_set == {
        first["training_set"]: (sum(first["rows_by_split"].values()),
                                [first["vocab_version"]]),
        second["training_set"]: (sum(second["rows_by_split"].values()),
                                 [second["vocab_version"]])}

    # the newest set by default (the training DAG's second Sunday), the older one by name
    newest_df, _, newest = pinned_examples(spark)  # what train reads, named by no option
    assert newest["training_set"] == second["training_set"]
    assert newest_df.count() == sum(second["rows_by_split"].values())
    named = run_train(spark, small(data_root, epochs=1, max_steps_per_epoch=1,
                                   training_set=first["training_set"]))
    assert named.details["training_set"] == first["training_set"]
    assert named.details["vocab_version"] == first["vocab_version"]
    assert named.input_rows == sum(first["rows_by_split"].values())

    with pytest.raises(TrainingSetError, match="no training set 'tsnope' in ml.training_sets"):
        run_train(spark, small(data_root, training_set="tsnope"))
    # a rebuild of the same settings is the same set, replaced in place
    again = run_training_examples(spark, TrainingExamplesConfig(
        cutoffs=later, validation_from=later[-2], test_from=later[-1], data_root=data_root,
        horizon=timedelta(hours=6), lookback=timedelta(hours=12),
        windows=parse_windows("1h,6h,12h"), min_support=2)).details
    assert again["training_set"] == second["training_set"]
    assert spark.table("gold.training_examples").count() == sum(
        n for n, _ in per_set.values())
    assert spark.table("ml.training_sets").count() == 2


def test_resume_continues_a_killed_run_and_refuses_a_finished_or_different_one(
        spark, generated_examples, data_root, monkeypatch):
    """Checkpoints belong to a run (`training/runs/<run id>/`): `--resume` continues the
    newest unfinished run of the same settings and training set, and refuses in one line a
    finished run (registering its weights again would be a duplicate version) or settings no
    unfinished run has. Then `evaluate --format json` prints every scorer's figures with
    intervals and the heads."""
    from clickscore.training import loop as training_loop
    from clickscore.training.runs import TrainingRunError

    settings = dict(epochs=2, max_steps_per_epoch=2, auto_promote=False, seed=11)
    finished = run_train(spark, small(data_root, **settings))
    with pytest.raises(TrainingRunError, match=r"train --resume: training run \S+ with these "
                       r"settings on training set \S+ finished \(model version "
                       f"{finished.details['model_version']}\\); nothing to resume"):
        run_train(spark, small(data_root, **settings, resume=True))

    # a run killed after its first epoch's checkpoint (its second validation never returns)
    original = training_loop._validate_and_checkpoint
    calls = []

    def dies_in_epoch_two(run, loop, validation, record):
        calls.append(record["epoch"])
        if record["epoch"] == 2:
            raise RuntimeError("killed")
        return original(run, loop, validation, record)

    killed_settings = {**settings, "learning_rate": 2e-3}
    with monkeypatch.context() as patch:
        patch.setattr(training_loop, "_validate_and_checkpoint", dies_in_epoch_two)
        with pytest.raises(RuntimeError, match="killed"):
            run_train(spark, small(data_root, **killed_settings))
    assert calls == [1, 2]
    with pytest.raises(TrainingRunError, match="no unfinished training run with these "
                                               "settings .* differs in loop.learning_rate "
                                               "0.002 -> 0.005"):
        run_train(spark, small(data_root, **{**killed_settings, "learning_rate": 5e-3},
                               resume=True))
    resumed = run_train(spark, small(data_root, **killed_settings, resume=True))
    folder = Path(resumed.details["checkpoints"])
    assert resumed.details["resumed"] == folder.name != Path(finished.details["checkpoints"]).name
    history = torch.load(folder / "last.pt", weights_only=True)["history"]
    assert [h["epoch"] for h in history] == [1, 2]  # epoch 1 from the killed run, 2 resumed
    assert resumed.details["model_version"] != finished.details["model_version"]
    with pytest.raises(TrainingRunError, match="finished"):  # and now it is finished too
        run_train(spark, small(data_root, **killed_settings, resume=True))

    result = invoke_cli("evaluate", "--model-version", resumed.details["model_version"],
                        "--format", "json", data_root=data_root)
    assert result.exit_code == 0, result.error
    printed = json.loads(result.output)
    assert printed["heads"] == registry.heads(data_root, resumed.details["model_version"])
    assert printed["heads"] == resumed.details["heads"]
    for split in ("validation", "test"):
        model = printed[split]["next_item"]["model"]["ndcg_all@20"]
        assert model["low"] <= model["value"] <= model["high"] and model["n"] > 0
        assert set(printed[split]["next_item"]) == {"model", "most_popular",
                                                    "recently_viewed", "item_knn"}
        assert printed[split]["model_vs_baselines"]["next_item"]["item_knn"]["verdict"] in (
            "better", "worse", "tie")
        auc = printed[split]["propensity"]["model"]["roc_auc"]
        assert auc["low"] <= auc["value"] <= auc["high"]


def test_tune_searches_on_validation_with_nested_runs_and_registers_the_best(
        spark, generated_examples, data_root):
    """`clickscore tune`: Optuna trials on one materialized training set, each a nested
    MLflow run under the study's, then the best configuration trained and registered with its
    heads chosen against the baselines."""
    import mlflow

    result = invoke_cli("tune", "--trials", "3", "--epochs", "2", "--max-steps-per-epoch", "2",
                        "--batch-size", "128", "--no-auto-promote", data_root=data_root)
    assert result.exit_code == 0, result.error
    details = result.counts.details
    assert details["trials"] == 3 and details["states"].get("complete", 0) >= 1, details
    assert sum(details["states"].values()) == 3
    registry.client(data_root)
    trials = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = "
                                              f"'{details['study_run_id']}'",
                                output_format="list")
    assert len(trials) == 3
    assert {t.data.tags["state"] for t in trials} <= {"complete", "pruned"}
    # the registered version was trained with the best trial's configuration
    version = registry.resolve_version(data_root, details["model_version"])
    params = registry.client(data_root).get_run(version.run_id).data.params
    best = details["best_params"]
    assert params["train_model_d_model"] == str(best["d_model"])
    assert float(params["train_loop_learning_rate"]) == pytest.approx(best["learning_rate"])
    assert params["train_loop_keep"] == best["keep"]
    assert details["heads"] == registry.heads(data_root, details["model_version"])
    assert registry.aliases(data_root)["challenger"] == details["model_version"]
    assert details["stopped_at_budget"] == []

    # a budget spent inside the first trial: it stops at the end of its first epoch of two,
    # counts with that epoch, and no other trial starts
    spent = invoke_cli("tune", "--trials", "3", "--epochs", "2", "--max-steps-per-epoch", "2",
                       "--batch-size", "128", "--timeout-s", "0.001", "--no-auto-promote",
                       data_root=data_root)
    assert spent.exit_code == 0, spent.error
    assert spent.counts.details["trials"] == 1
    assert spent.counts.details["stopped_at_budget"] == [0]
    (trial,) = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = "
                                                f"'{spent.counts.details['study_run_id']}'",
                                  output_format="list")
    assert trial.data.tags["state"] == "stopped at the budget"
    assert [m.step for m in registry.client(data_root).get_metric_history(
        trial.info.run_id, registry.metric_name(OBJECTIVE))] == [1]
