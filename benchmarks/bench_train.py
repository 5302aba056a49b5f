"""Training benchmark: the model's throughput next to its ceiling, and its quality next to the
baselines, on the real samples and on generated data.

    python benchmarks/bench_train.py [--datasets taobao,rees46,generated] [--epochs 12]

For each dataset it builds gold.training_examples in a scratch data root (ingest, sessionize,
examples at three cutoffs: train / validation / test), then prints, measured in this run:

- the in-memory ceiling: training steps on batches already in memory as tensors;
- the real path: Delta -> Petastorm -> the training loop (`clickscore train`), sequences/s;
- the loader alone: Petastorm rows/s with no model;
- the quality tables (`clickscore evaluate`): the default model and every baseline on the
  validation and test splits, each metric with its 95% bootstrap interval, the number of rows
  and the model's verdict against each baseline (a difference inside the interval is a tie);
- with `--tune-trials N`: `clickscore tune` (Optuna, N trials within `--tune-timeout-s`), its
  wall-clock, and the same tables for the tuned model.

Targets (ratios, since this machine's timings vary 10-15% from run to run): the loader
delivers at least 3x what training consumes; the real path reaches at least 80% of the
ceiling. Figures go to benchmarks/out/train.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import torch
from bench_etl import PeakRss, save_figures  # type: ignore[import-not-found]
from pyspark.sql import functions as F

from clickscore.core.config import RunDate, parse_windows
from clickscore.core.logs import configure_logging
from clickscore.core.spark import get_spark
from clickscore.demo.config import GenerateConfig
from clickscore.demo.generator import generate
from clickscore.features.config import TrainingExamplesConfig
from clickscore.features.contract import feature_contract
from clickscore.features.job import run_training_examples
from clickscore.ingest.config import IngestConfig
from clickscore.ingest.job import run_ingest
from clickscore.model.network import SequenceModel
from clickscore.sessionize.config import SessionizeConfig
from clickscore.sessionize.job import run_sessionize
from clickscore.training.config import TrainConfig
from clickscore.training.data import batches, converted, model_frame
from clickscore.training.job import describe_examples, model_config, pinned_examples, run_train
from clickscore.training.loop import to_device

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
T0 = datetime(2019, 10, 1, tzinfo=UTC)
# source, input, run date, cutoffs (train, validation, test), horizon, lookback, windows
DATASETS = {
    "taobao": ("taobao", SHARED / "taobao_userbehavior_subset" / "UserBehavior_subset110300.csv.gz",
               "all",
               [datetime(2017, 11, 26, 1, 40, tzinfo=UTC),
                datetime(2017, 11, 26, 2, 10, tzinfo=UTC),
                datetime(2017, 11, 26, 2, 40, tzinfo=UTC)],
               timedelta(minutes=20), timedelta(minutes=40), "5m,15m,40m"),
    "rees46": ("rees46", SHARED / "rees46_multicategory_2019oct_head" / "2019-Oct_head17434.csv.gz",
               "all",
               [T0 + timedelta(minutes=70), T0 + timedelta(minutes=110),
                T0 + timedelta(minutes=140)],
               timedelta(minutes=30), timedelta(minutes=70), "10m,30m,70m"),
    "generated": ("rees46", None, "daily",
                  [T0 + timedelta(hours=h) for h in (72, 108, 126)],
                  timedelta(hours=18), timedelta(days=3), "1h,1d,3d"),
}


def build_examples(spark, root: str, name: str, users: int) -> None:
    source, path, run_date, cutoffs, horizon, lookback, windows = DATASETS[name]
    if path is None:
        landing = Path(root) / "landing"
        manifest = generate(GenerateConfig(output_dir=str(landing), days=6, users=users))
        for offset, file in enumerate(manifest["files"]):
            day = RunDate((T0 + timedelta(days=offset)).date())
            run_ingest(spark, IngestConfig(source=source, input_path=str(landing / file),
                                           run_date=day, data_root=root))
            run_sessionize(spark, SessionizeConfig(run_date=day, data_root=root))
    else:
        run_ingest(spark, IngestConfig(source=source, input_path=str(path),
                                       run_date=RunDate.parse(run_date), data_root=root))
        run_sessionize(spark, SessionizeConfig(run_date=RunDate.parse(run_date),
                                               data_root=root))
    run_training_examples(spark, TrainingExamplesConfig(
        cutoffs=tuple(cutoffs), validation_from=cutoffs[1], test_from=cutoffs[2],
        data_root=root, horizon=horizon, lookback=lookback, windows=parse_windows(windows),
        min_support=2))


def throughput(spark, root: str, cfg: TrainConfig, steps: int = 30) -> dict[str, float]:
    """The in-memory ceiling (training steps on resident tensors) and the loader alone."""
    contract = feature_contract()
    examples_df, _, chosen = pinned_examples(spark)
    model_cfg = model_config(spark, cfg, contract, describe_examples(examples_df), chosen)
    frame_df = model_frame(examples_df.where(F.col("split") == "train"), contract)
    with (converted(spark, frame_df, root, partitions=4) as converter,
          batches(converter, batch_size=cfg.loop.batch_size, num_epochs=None) as loader):
        stream = iter(loader)
        resident = [to_device(next(stream), torch.device("cpu")) for _ in range(4)]
        rows, started = 0, time.perf_counter()
        for batch in itertools.islice(stream, steps * 2):
            rows += batch["item_seq"].shape[0]
        loader_rows_s = rows / (time.perf_counter() - started)
    torch.manual_seed(cfg.loop.seed)
    model = SequenceModel(model_cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.loop.learning_rate)
    model.train()
    seen, started = 0, time.perf_counter()
    for step in range(steps):
        batch = resident[step % len(resident)]
        optimizer.zero_grad(set_to_none=True)
        model.losses(batch)["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seen += batch["item_seq"].shape[0]
    ceiling = seen / (time.perf_counter() - started)
    return {"ceiling_sequences_per_s": round(ceiling, 1),
            "loader_rows_per_s": round(loader_rows_s, 1),
            "item_vocab_size": model_cfg.item_vocab_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="taobao,rees46,generated")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--users", type=int, default=5_000, help="generated data's users")
    # the model's options: unset, each keeps the model's default (clickscore train's)
    toggle = argparse.BooleanOptionalAction
    parser.add_argument("--repeat", action=toggle, help="the model's repeat bonus")
    parser.add_argument("--prior", action=toggle, help="the model's popularity prior")
    parser.add_argument("--category-output", action=toggle,
                        help="the category part of the output embeddings")
    parser.add_argument("--category-affinity", action=toggle,
                        help="the bonus for the categories of the user's history")
    parser.add_argument("--anchored", action=toggle,
                        help="the embeddings' match scaled by a learned factor starting at 0")
    parser.add_argument("--tune-trials", type=int, default=0,
                        help="also run `clickscore tune` with this many trials (0: no tuning)")
    parser.add_argument("--tune-timeout-s", type=float, default=900.0,
                        help="tune's wall-clock budget for its trials")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    configure_logging()
    work = Path(args.work or tempfile.mkdtemp(prefix="clickscore-bench-train-"))
    figures: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    for name in args.datasets.split(","):
        root = str(work / name)
        spark = get_spark(root, app_name=f"clickscore-bench-train-{name}")
        build_examples(spark, root, name, args.users)
        options = {"repeat": args.repeat, "popularity_prior": args.prior,
                   "category_output": args.category_output,
                   "category_affinity": args.category_affinity, "anchored": args.anchored}
        cfg = TrainConfig.of(data_root=root, epochs=args.epochs, patience=3, batch_size=128,
                             **{k: v for k, v in options.items() if v is not None})
        speed = throughput(spark, root, cfg)
        with PeakRss() as rss:
            counts = run_train(spark, cfg)
        history = json.loads(spark.sql(
            "SELECT details FROM ops.pipeline_runs WHERE job = 'train' ORDER BY started_at DESC "
            "LIMIT 1").first()[0])
        real = _real_path_rate(root)
        print(f"\n{name}: the default model ({counts.details['model_version']})", flush=True)
        default = _evaluated(spark, root, counts.details["model_version"])
        tuned = _tuned(spark, root, args) if args.tune_trials else {}
        figures[name] = {
            **speed, "rows_by_split": history["rows_by_split"],
            "real_path_sequences_per_s": real,
            "real_path_vs_ceiling": round(real / speed["ceiling_sequences_per_s"], 3),
            "loader_vs_training": round(speed["loader_rows_per_s"] / real, 2),
            "peak_rss_gib": round(rss.peak / 2**30, 2),
            "model_version": counts.details["model_version"],
            # which scorer serves each head (the tables with intervals are printed above)
            "heads": counts.details["heads"],
            "default": default,
            **({"tuned": tuned} if tuned else {}),
        }
        print(json.dumps({name: figures[name]}, indent=2), flush=True)
        spark.stop()
    save_figures("train", figures)


def _evaluated(spark, root: str, version: str) -> dict[str, object]:
    """`clickscore evaluate` of a version (its tables printed): each split's figures."""
    from clickscore.training.config import EvaluateConfig
    from clickscore.training.job import run_evaluate

    return {e.split: e.to_dict() for e in run_evaluate(
        spark, EvaluateConfig(data_root=root, model_version=version))}


def _tuned(spark, root: str, args: argparse.Namespace) -> dict[str, object]:
    """`clickscore tune` on the same training set (not promoted), timed; the tuned model's
    evaluation."""
    from clickscore.training.config import TuneConfig
    from clickscore.training.tune import run_tune

    started = time.monotonic()
    tuned = run_tune(spark, TuneConfig(data_root=root, trials=args.tune_trials,
                                       timeout_s=args.tune_timeout_s, epochs=args.epochs,
                                       batch_size=128, auto_promote=False))
    wall = time.monotonic() - started
    details = tuned.details
    print(f"tune: {details['trials']} trials {details['states']} searched in "
          f"{details['searched_s']} s, {wall:.0f} s with the best retrained; best "
          f"{details['best_params']}; the tuned model ({details['model_version']}):",
          flush=True)
    return {"wall_s": round(wall, 1), "searched_s": details["searched_s"],
            "trials": details["trials"], "states": details["states"],
            "best_params": details["best_params"], "model_version": details["model_version"],
            "heads": details["heads"],
            "evaluation": _evaluated(spark, root, details["model_version"])}


def _real_path_rate(root: str) -> float:
    """Training sequences/s through the real path: the median epoch of the last run."""
    from clickscore.training.runs import runs

    checkpoint = torch.load(runs(root)[0].folder / "last.pt", weights_only=True)
    rates = sorted(h["sequences_per_s"] for h in checkpoint["history"])
    return float(rates[len(rates) // 2])


if __name__ == "__main__":
    logging.getLogger("clickscore").setLevel(logging.INFO)
    main()
