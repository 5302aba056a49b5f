"""`clickscore` command line: the commands the stages declare, gathered here.

Each module in `COMMAND_MODULES` declares `COMMANDS` (see `core.commands`): a stage adds its
module to that tuple and adds no branch here. The `jobs/*.py` spark-submit entry points call
`main` with their stage's command name.

Exit codes: 0 success; 1 a run failed (bad data, a failed gate; one line says why, nothing was
published); 2 the command line was wrong (one line says what was expected and what was found).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from importlib import import_module

from clickscore.core.commands import Command, build_parser, config_from_arguments
from clickscore.core.config import resolve_data_root
from clickscore.core.errors import ClickscoreError
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
    "clickscore.core.sql",
)

GROUP_HELP = {"dq": "data-quality results, and validation on demand"}

log = logging.getLogger("clickscore")


def commands() -> Iterator[Command]:
    for module in COMMAND_MODULES:
        yield from import_module(module).COMMANDS


def main(argv: Sequence[str] | None = None) -> int:
    by_name = {c.name: c for c in commands()}
    parser, parsers = build_parser(
        "clickscore", "Raw e-commerce clickstream to per-user predictions, on Spark + Delta.",
        by_name.values(), GROUP_HELP)
    args = parser.parse_args(argv)
    command = by_name[args.command_name]
    configure_logging(verbose=args.verbose)
    data_root = resolve_data_root(args.data_root)
    try:
        config = config_from_arguments(command.config, args, data_root)
    except ValueError as exc:
        parsers[command.name].error(str(exc))  # exits 2
    try:
        entry = command.load()
        if command.needs_spark:
            from clickscore.core.spark import get_spark

            spark = get_spark(data_root, app_name=f"clickscore-{command.name.replace(' ', '-')}")
            result = entry(spark, config)
        else:
            result = entry(config)
    except ClickscoreError as exc:
        log.error("%s failed: %s", command.name, exc)
        return 1
    if isinstance(result, str):
        print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
