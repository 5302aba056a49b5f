"""The README's reference sections, generated so they cannot drift: every table and column
(from schemas/tables), every command and option (from the commands' configs) and every
environment variable.

    python -m clickscore.reference --write README.md   # rewrite the marked sections
    python -m clickscore.reference --check README.md   # exit 1 if they are stale

A section sits between `<!-- reference:NAME -->` and `<!-- /reference:NAME -->`;
tests/unit/test_readme.py runs the check."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from clickscore.core.contracts import table_schema
from clickscore.core.paths import schemas_dir

# Every environment variable clickscore reads, what it does (a test greps the code for more).
ENVIRONMENT = (
    ("CLICKSCORE_DATA_ROOT", "the data root when `--data-root` is not given (default "
                             "`./.clickscore`)"),
    ("CLICKSCORE_SPARK_MASTER", "`spark.master` for a local run (default `local[*]`); "
                                "spark-submit's `--master` wins"),
    ("CLICKSCORE_DRIVER_MEMORY", "`spark.driver.memory` for a local run (default `4g`)"),
    ("CLICKSCORE_SPARK_LOG_LEVEL", "Spark's log level (default `WARN`; `--verbose` shows INFO)"),
    ("CLICKSCORE_LOCAL_DIR", "for a data root on an object store: the shared local folder of "
                             "its catalog, lock, MLflow store, checkpoints, reports and GX "
                             "project"),
    ("CLICKSCORE_UMASK", "the umask of every file a process creates (default `007`: owner and "
                         "group only; Spark's files follow it too)"),
    ("CLICKSCORE_CATALOG_WAIT_S", "how long a process waits for a busy embedded catalog "
                                  "(default 300 s)"),
    ("CLICKSCORE_CLASS_ARCHIVE", "`off`: local Spark drivers start without the class-data "
                                 "archive setup writes (`<venv>/clickscore-spark.jsa`; it saves "
                                 "each fresh JVM a few CPU-seconds, and a JVM ignores one that "
                                 "does not match its JDK or jars)"),
    ("CLICKSCORE_METASTORE_URL", "JDBC URL of a shared Hive metastore in PostgreSQL, instead "
                                 "of the data root's embedded Derby"),
    ("CLICKSCORE_METASTORE_USER", "its user (default `clickscore`)"),
    ("CLICKSCORE_METASTORE_PASSWORD", "its password"),
    ("CLICKSCORE_METASTORE_PASSWORD_FILE", "a file holding its password (Docker/Kubernetes "
                                           "secrets)"),
    ("CLICKSCORE_MLFLOW_URI", "an MLflow tracking and registry server, instead of the data "
                              "root's SQLite store (`<data root>/mlflow`)"),
    ("CLICKSCORE_JDBC_USER", "the warehouse user for `export` (and `score --export-jdbc-url`)"),
    ("CLICKSCORE_JDBC_PASSWORD", "its password"),
    ("CLICKSCORE_JDBC_PASSWORD_FILE", "a file holding its password"),
    ("CLICKSCORE_DQ_DIR", "where the GX project lives: suites, validation results, Data Docs "
                          "(default `<data root>/dq`)"),
    ("CLICKSCORE_DATA_DOCS", "`off`: validation results are kept but no Data Docs HTML is "
                             "rendered (default `on`: each run renders its pages and the "
                             "index of the newest 200 validations)"),
    ("CLICKSCORE_ASSETS", "where setup put the Data Docs front-end files (default "
                          "`<venv>/share/clickscore`)"),
    ("CLICKSCORE_PAUSE_AT", "`job:point`: the run stops and waits there (fault-injection "
                            "tests; see \"A run killed midway\")"),
    ("CLICKSCORE_START_DATE", "Airflow: the DAGs' start date (no run is created before it)"),
    ("CLICKSCORE_DAG_RETRIES", "Airflow: retries per task (default 3)"),
    ("CLICKSCORE_DAG_DEADLINE", "Airflow: `off` turns the daily deadline alert off (for "
                                "`airflow dags test`)"),
    ("CLICKSCORE_TASK_TIMEOUTS", "Airflow: execution timeouts by task id over the defaults, "
                                 "e.g. `score=6h,export=20m` (s, m, h, d)"),
    ("CLICKSCORE_LANDING_TIMEOUT", "Airflow: how long the daily DAG waits for its landing file "
                                   "(default `12h`)"),
    ("CLICKSCORE_LANDING_POKE", "Airflow: how often it looks for it (default `5m`)"),
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def tables_markdown() -> str:
    """Every published table: what a row is, partitioning, keys, and every column."""
    out = []
    for path in sorted((schemas_dir() / "tables").glob("*.yaml")):
        schema = table_schema(path.stem)
        out.append(f"#### `{schema.table}`\n")
        facts = [f"key: {', '.join(f'`{k}`' for k in schema.keys)}"] if schema.keys else []
        if schema.partition_by:
            facts.append(f"partitioned by {', '.join(f'`{p}`' for p in schema.partition_by)}")
        out.append(f"{schema.comment} ({'; '.join(facts)})\n" if facts else
                   f"{schema.comment}\n")
        out.append("| column | type | nullable | meaning |\n|---|---|---|---|")
        for column in schema.columns:
            out.append(f"| `{column.name}` | `{column.type}` | "
                       f"{'yes' if column.nullable else 'no'} | {_cell(column.comment)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def commands_markdown() -> str:
    """Every command with every option, its help and default, from the parser itself."""
    from clickscore.cli import GROUP_HELP, commands
    from clickscore.core.commands import build_parser

    by_name = {c.name: c for c in commands()}
    _, parsers = build_parser("clickscore", "", by_name.values(), GROUP_HELP)
    out = []
    for name in sorted(parsers):
        out.append(f"**`clickscore {name}`**: {_cell(by_name[name].help)}\n")
        out.append("| option | meaning |\n|---|---|")
        for action in parsers[name]._actions:
            if isinstance(action, argparse._HelpAction) or action.dest in {"data_root",
                                                                           "verbose"}:
                continue
            flag = " / ".join(action.option_strings) or action.dest.upper()
            notes = []
            if action.choices:
                notes.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
            if action.required or not action.option_strings:
                notes.append("required")
            extra = f" ({'; '.join(notes)})" if notes else ""
            out.append(f"| `{flag}` | {_cell(action.help or '')}{extra} |")
        out.append("")
    out.append("Every command also takes `--data-root PATH` and `-v/--verbose`.")
    return "\n".join(out) + "\n"


def environment_markdown() -> str:
    rows = "\n".join(f"| `{name}` | {_cell(text)} |" for name, text in ENVIRONMENT)
    return f"| variable | effect |\n|---|---|\n{rows}\n"


SECTIONS: dict[str, Callable[[], str]] = {
    "tables": tables_markdown, "commands": commands_markdown,
    "environment": environment_markdown}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- reference:{name} -->\n)(.*?)(<!-- /reference:{name} -->)",
                      re.DOTALL)


def rewrite(text: str) -> str:
    """`text` with every marked section regenerated."""
    for name, make in SECTIONS.items():
        pattern = _pattern(name)
        if not pattern.search(text):
            raise ValueError(f"no <!-- reference:{name} --> section")
        body = make()

        def replaced(match: re.Match[str], body: str = body) -> str:
            return match.group(1) + body + match.group(3)

        text = pattern.sub(replaced, text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate or check the README's reference")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="README")
    mode.add_argument("--check", type=Path, metavar="README")
    args = parser.parse_args(argv)
    path = args.write or args.check
    text = path.read_text()
    fresh = rewrite(text)
    if args.write:
        path.write_text(fresh)
    elif fresh != text:
        print(f"{path}: the reference sections are stale; run "
              f"`python -m clickscore.reference --write {path}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
