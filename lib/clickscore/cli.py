"""`clickscore` command line: one sub-command per stage, plus `sql` and `demo`.

The `jobs/*.py` spark-submit entry points call `main` with their stage's name.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

from clickscore.config import (
    SOURCES,
    DqRunConfig,
    FeaturesConfig,
    GenerateConfig,
    IngestConfig,
    RunDate,
    SessionizeConfig,
    TrainingExamplesConfig,
    parse_duration,
    parse_timestamp,
    parse_windows,
    resolve_data_root,
)
from clickscore.errors import ClickscoreError
from clickscore.schemas import suite_tables

log = logging.getLogger("clickscore")


def _arg(parse):
    """Wrap a parser so argparse shows its ValueError message instead of a generic one."""
    def wrapped(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    wrapped.__name__ = parse.__name__
    return wrapped


_run_date_arg = _arg(RunDate.parse)
_duration = _arg(parse_duration)
_timestamp = _arg(parse_timestamp)
_date = _arg(date.fromisoformat)
_windows = _arg(parse_windows)


@_arg
def _timestamps(text: str) -> tuple[datetime, ...]:
    return tuple(parse_timestamp(part) for part in text.split(",") if part.strip())


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None,
                        help="warehouse + catalog root (default $CLICKSCORE_DATA_ROOT "
                             "or ./.clickscore)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _run_date(parser: argparse.ArgumentParser, allow_all: bool = True) -> None:
    parser.add_argument("--run-date", required=True, type=_run_date_arg,
                        help="YYYY-MM-DD" + (", or 'all' for the whole input" if allow_all
                                             else ""))


def _feature_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lookback", type=_duration, default="30d",
                        help="features read events in [cutoff - lookback, cutoff)")
    parser.add_argument("--windows", type=_windows, default="1d,7d,30d",
                        help="aggregation windows, e.g. 1d,7d,30d or 10m,30m,60m")
    parser.add_argument("--vocab-version", default=None,
                        help="default: the latest (features) / built from the training period")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clickscore",
        description="Raw e-commerce clickstream to per-user predictions, on Spark + Delta.")
    stages = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = stages.add_parser("generate", help="write synthetic REES46-format demo data")
    p.add_argument("--output", required=True, help="folder for events-YYYY-MM-DD.csv.gz")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--items", type=int, default=5_000)
    p.add_argument("--start-date", type=_date, default=date(2019, 10, 1))
    p.add_argument("--seed", type=int, default=42)
    _common(p)

    p = stages.add_parser("ingest", help="landing files -> bronze.events (+ quarantine)")
    p.add_argument("--source", required=True, choices=SOURCES)
    p.add_argument("--input", required=True, help="file, folder or glob (gzip ok)")
    _run_date(p)
    p.add_argument("--allow-empty", action="store_true", help="an empty input is not an error")
    p.add_argument("--lateness-days", type=int, default=3,
                   help="accept events up to this many days before the run date")
    p.add_argument("--max-price", type=float, default=1_000_000.0)
    p.add_argument("--window-start", type=_timestamp, default=None,
                   help="with --run-date all: earliest accepted event time")
    p.add_argument("--window-end", type=_timestamp, default=None,
                   help="with --run-date all: accepted event times are before this")
    _common(p)

    p = stages.add_parser("sessionize", help="bronze.events -> silver.events, silver.sessions")
    _run_date(p)
    p.add_argument("--session-gap", type=_duration, default="30m")
    p.add_argument("--max-session-length", type=_duration, default="24h")
    p.add_argument("--bot-events-per-minute", type=int, default=100)
    p.add_argument("--allow-empty", action="store_true")
    _common(p)

    p = stages.add_parser("vocab", help="silver.events -> ml.item/category/brand_vocab")
    p.add_argument("--window-start", required=True, type=_timestamp,
                   help="training window start (ISO date or timestamp, UTC)")
    p.add_argument("--window-end", required=True, type=_timestamp,
                   help="training window end (exclusive)")
    p.add_argument("--min-support", type=int, default=1,
                   help="events an id needs in the window to get its own index")
    _common(p)

    p = stages.add_parser("features", help="silver.events -> gold.user_features at a cutoff")
    p.add_argument("--as-of", required=True, type=_timestamp,
                   help="cutoff T (ISO date or timestamp, UTC): features read events < T")
    _feature_options(p)
    p.add_argument("--allow-empty", action="store_true")
    _common(p)

    p = stages.add_parser("training-examples",
                          help="gold.training_examples at several cutoffs, split by time")
    p.add_argument("--cutoffs", required=True, type=_timestamps,
                   help="comma-separated ISO timestamps, increasing")
    p.add_argument("--validation-from", required=True, type=_timestamp)
    p.add_argument("--test-from", required=True, type=_timestamp)
    p.add_argument("--horizon", type=_duration, default="7d",
                   help="labels read [cutoff, cutoff + horizon)")
    p.add_argument("--min-support", type=int, default=1,
                   help="for the vocab built from the training period (without --vocab-version)")
    _feature_options(p)
    _common(p)

    p = stages.add_parser("sql", help="run Spark SQL against the catalog and print the result")
    p.add_argument("query")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--limit", type=int, default=1_000, help="rows printed at most")
    _common(p)

    p = stages.add_parser("dq", help="data-quality results, and validation on demand")
    dq = p.add_subparsers(dest="dq_command", required=True, metavar="DQ_COMMAND")
    q = dq.add_parser("report", help="summary of ops.dq_results and the Data Docs path")
    q.add_argument("--run-date", default=None, type=_run_date_arg,
                   help="only this run date (YYYY-MM-DD or 'all')")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _common(q)
    q = dq.add_parser("run", help="validate a published table's partition now")
    q.add_argument("--table", required=True, choices=suite_tables(),
                   help="a table with a suite in schemas/expectations")
    _run_date(q)
    _common(q)

    p = stages.add_parser("demo", help="generate data, ingest + sessionize it, print a summary")
    p.add_argument("--days", type=int, default=3)
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=42)
    _common(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    data_root = resolve_data_root(args.data_root)
    started = time.perf_counter()
    try:
        _dispatch(args, data_root)
    except ClickscoreError as exc:
        log.error("%s failed: %s", args.command, exc)
        return 1
    log.info("%s finished in %.1fs", args.command, time.perf_counter() - started)
    return 0


def _dispatch(args: argparse.Namespace, data_root: str) -> None:
    if args.command == "generate":
        from clickscore.generate import generate

        generate(GenerateConfig(output_dir=args.output, days=args.days, users=args.users,
                                items=args.items, start_date=args.start_date, seed=args.seed))
        return

    from clickscore.spark import get_spark

    spark = get_spark(data_root, app_name=f"clickscore-{args.command}")
    if args.command == "ingest":
        from clickscore.ingest import run_ingest

        run_ingest(spark, IngestConfig(
            source=args.source, input_path=args.input, run_date=args.run_date,
            data_root=data_root, allow_empty=args.allow_empty,
            lateness_days=args.lateness_days, max_price=args.max_price,
            window_start=args.window_start, window_end=args.window_end))
    elif args.command == "sessionize":
        from clickscore.sessionize import run_sessionize

        run_sessionize(spark, SessionizeConfig(
            run_date=args.run_date, data_root=data_root, session_gap=args.session_gap,
            max_session_length=args.max_session_length,
            bot_events_per_minute=args.bot_events_per_minute, allow_empty=args.allow_empty))
    elif args.command == "vocab":
        from clickscore.vocab import VocabConfig, build_vocab

        version = build_vocab(spark, VocabConfig(
            window_start=args.window_start, window_end=args.window_end,
            min_support=args.min_support, data_root=data_root))
        print(version)
    elif args.command == "features":
        from clickscore.features_job import run_features

        run_features(spark, FeaturesConfig(
            as_of=args.as_of, data_root=data_root, lookback=args.lookback,
            windows=args.windows, vocab_version=args.vocab_version,
            allow_empty=args.allow_empty))
    elif args.command == "training-examples":
        from clickscore.features_job import run_training_examples

        run_training_examples(spark, TrainingExamplesConfig(
            cutoffs=args.cutoffs, validation_from=args.validation_from,
            test_from=args.test_from, data_root=data_root, horizon=args.horizon,
            lookback=args.lookback, windows=args.windows, vocab_version=args.vocab_version,
            min_support=args.min_support))
    elif args.command == "sql":
        from clickscore.report import print_query

        print_query(spark, args.query, fmt=args.format, limit=args.limit)
    elif args.command == "dq" and args.dq_command == "report":
        from clickscore.dq.report import print_dq_report

        print_dq_report(spark, data_root, fmt=args.format,
                        run_date=str(args.run_date) if args.run_date else None)
    elif args.command == "dq":
        from clickscore.dq.on_demand import run_dq

        run_dq(spark, DqRunConfig(table=args.table, run_date=args.run_date,
                                  data_root=data_root))
    elif args.command == "demo":
        from clickscore.demo import run_demo

        run_demo(spark, data_root, days=args.days, users=args.users, seed=args.seed,
                 landing=Path(data_root) / "landing" / "demo")


if __name__ == "__main__":
    sys.exit(main())
