"""`clickscore` command line: the commands the stages declare, gathered here.

Each module in `COMMAND_MODULES` declares `COMMANDS` (see `core.commands`): a stage adds its
module to that tuple and adds no branch here. The `jobs/*.py` spark-submit entry points call
`main` with their stage's command name.

Exit codes: 0 success; 1 a run failed (bad data, a failed gate; one line says why, nothing was
published); 2 the command line was wrong (one line says what was expected and what was found).

The command line is also a library (as dbt's `dbtRunner().invoke`): `invoke(argv)` runs a
command in this process, in the Spark session already running when there is one, and returns
a `Result` (exit code, what it printed, the one line of a failure, the entry's return value:
a stage's `RunCounts`). Tests call commands this way; `main` is `invoke` plus logging set-up
for a process of its own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from clickscore.core.commands import Command, build_parser, config_from_arguments
from clickscore.core.config import resolve_data_root
from clickscore.core.errors import ClickscoreError
from clickscore.core.files import private_files
from clickscore.core.logs import configure_logging

COMMAND_MODULES = (
    "clickscore.demo.config",
    "clickscore.ingest.config",
    "clickscore.sessionize.config",
    "clickscore.features.config",
    "clickscore.audit.config",
    "clickscore.training.config",
    "clickscore.registry.config",
    "clickscore.scoring.config",
    "clickscore.export.config",
    "clickscore.report.config",
    "clickscore.maintain.config",
    "clickscore.core.sql",
)

GROUP_HELP = {"dq": "data-quality results, and validation on demand"}

log = logging.getLogger("clickscore")


def commands() -> Iterator[Command]:
    for module in COMMAND_MODULES:
        yield from import_module(module).COMMANDS


@dataclass(frozen=True)
class Result:
    """What a command did: its exit code, what it printed (stdout and, for a command line
    that did not parse, argparse's stderr), the one line saying why it failed, and the
    entry point's return value (a stage run's `RunCounts`, a report's path...)."""

    exit_code: int
    output: str
    error: str | None = None
    value: Any = None

    @property
    def counts(self) -> Any:
        """The run's counts, for a stage command (`RunCounts`), else None."""
        from clickscore.core.runs import RunCounts

        return self.value if isinstance(self.value, RunCounts) else None


def invoke(argv: Sequence[str], *, capture: bool = True) -> Result:
    """Run one command in this process; see the module docstring. With `capture` (the
    default) its printed output is returned in `Result.output` instead of reaching stdout."""
    out = io.StringIO() if capture else None
    with contextlib.ExitStack() as stack:
        if out is not None:
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        code, error, value = _run(argv)
    return Result(code, out.getvalue() if out is not None else "", error, value)


def parse(argv: Sequence[str]) -> tuple[Command, Any, str]:
    """A command line's command, its typed config and the data root, without running it;
    argparse's SystemExit for --help (0) or a wrong command line (2), as `clickscore` exits.
    Used by `invoke` and by tests that check the command lines a DAG submits."""
    by_name = {c.name: c for c in commands()}
    parser, parsers = build_parser(
        "clickscore", "Raw e-commerce clickstream to per-user predictions, on Spark + Delta.",
        by_name.values(), GROUP_HELP)
    args = parser.parse_args(list(argv))
    command = by_name[args.command_name]
    data_root = resolve_data_root(args.data_root)
    try:
        return command, config_from_arguments(command.config, args, data_root), data_root
    except ValueError as exc:
        parsers[command.name].error(str(exc))  # exits 2
        raise  # not reached: error() exits


def _run(argv: Sequence[str]) -> tuple[int, str | None, Any]:
    try:
        command, config, data_root = parse(argv)
    except SystemExit as exc:  # argparse: --help (0) or a wrong command line (2)
        code = exc.code if isinstance(exc.code, int) else 2
        return code, None if code == 0 else "the command line was wrong", None
    try:
        entry = command.load()
        if command.needs_spark:
            spark = _session(data_root, command.name)
            result = entry(spark, config)
        else:
            result = entry(config)
    except ClickscoreError as exc:
        line = f"{command.name} failed: {exc}"
        log.error("%s", line)
        return 1, line, None
    if isinstance(result, str):
        print(result)
    return 0, None, result


def _session(data_root: str, name: str) -> Any:
    """The running session when this process has one (it must be on `data_root`: a Spark
    application has one warehouse and catalog), else a new one."""
    from pyspark.sql import SparkSession

    from clickscore.core.spark import get_spark

    active = SparkSession.getActiveSession()
    if active is not None:
        warehouse = str(active.conf.get("spark.sql.warehouse.dir")).removeprefix("file:")
        wanted = f"{data_root}/warehouse"
        same = (warehouse.rstrip("/") == wanted.rstrip("/")) if "://" in wanted else (
            Path(warehouse).resolve() == Path(wanted).resolve())
        if not same:
            raise ClickscoreError(
                f"this process's Spark session uses the warehouse {warehouse}, not {wanted}: "
                "run the command in a process of its own (one warehouse per Spark application)")
        return active
    return get_spark(data_root, app_name=f"clickscore-{name.replace(' ', '-')}")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: logging for a process of its own, then `invoke`."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    private_files()  # before anything is written: files for their owner and group only
    configure_logging(verbose="--verbose" in arguments or "-v" in arguments)
    return invoke(arguments, capture=False).exit_code


if __name__ == "__main__":
    sys.exit(main())
