"""How the tests' warehouse states are restored (`tests/integration/helpers.WarehouseStates`):
a Delta `SHALLOW CLONE` of each frozen table against a copy of its folder registered by
location, alternated in one Spark session with the test suite's settings so both meet the
same warm JVM.

    python benchmarks/bench_restore.py [--tables 8] [--rounds 3]

Each round drops every table (as `tests/conftest.drop_all_tables` does) and restores the
frozen tables one way, then the other; the figure is seconds per table. The copy must be the
faster by a wide margin (it writes no Delta commit): a ratio, not an absolute target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

os.environ.setdefault("CLICKSCORE_DATA_DOCS", "off")

from clickscore.core.spark import DATABASES, get_spark  # noqa: E402

TABLES = ("bronze.events", "quarantine.events", "silver.events", "silver.sessions",
          "ops.pipeline_runs", "ops.dq_results", "ml.item_vocab", "gold.user_features",
          "gold.training_examples", "ml.category_vocab", "ml.brand_vocab", "gold.user_scores")


def drop_all(spark) -> None:
    for database in DATABASES:
        for table in spark.catalog.listTables(database):
            kind = "VIEW" if table.tableType == "VIEW" else "TABLE"
            spark.sql(f"DROP {kind} IF EXISTS {database}.{table.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=8, choices=range(1, len(TABLES) + 1),
                        metavar=f"1..{len(TABLES)}")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    spark = get_spark(str(root), app_name="bench-restore", conf={
        "spark.master": "local[2]", "spark.driver.memory": "3g",
        "spark.sql.shuffle.partitions": "2", "spark.sql.adaptive.enabled": "false",
        "spark.sql.codegen.wholeStage": "false", "spark.ui.enabled": "false"})
    tables = TABLES[:args.tables]
    frozen = root / "frozen"
    for table in tables:
        spark.range(10_000).selectExpr("id", "id % 7 AS k", "uuid() AS u").write \
            .format("delta").saveAsTable(table)
        location = spark.sql(f"DESCRIBE DETAIL {table}").first()["location"]
        shutil.copytree(urlparse(location).path, frozen / table)

    def clone(_: int) -> None:
        for folder in sorted(frozen.iterdir()):
            spark.sql(f"CREATE TABLE {folder.name} SHALLOW CLONE delta.`{folder}`")

    def copy(n: int) -> None:
        for folder in sorted(frozen.iterdir()):
            shutil.copytree(folder, root / f"copy-{n}" / folder.name)
            spark.sql(f"CREATE TABLE {folder.name} USING DELTA "
                      f"LOCATION '{root / f'copy-{n}' / folder.name}'")

    seconds: dict[str, list[float]] = {"shallow clone": [], "copy + register": []}
    for n in range(args.rounds):
        for name, restore in (("shallow clone", clone), ("copy + register", copy)):
            drop_all(spark)
            started = time.perf_counter()
            restore(n)
            seconds[name].append((time.perf_counter() - started) / len(tables))
    spark.stop()
    shutil.rmtree(root, ignore_errors=True)
    for name, values in seconds.items():
        print(f"{name:16s} s per table: " + ", ".join(f"{v:.2f}" for v in values)
              + " (first round warms the JVM)")
    best = {name: min(values) for name, values in seconds.items()}
    print(f"clone / copy: {best['shallow clone'] / best['copy + register']:.1f}x "
          f"({len(tables)} tables of 10,000 rows, best of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
