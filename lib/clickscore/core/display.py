"""Printing query results for people (a table) and for scripts (CSV, JSON lines)."""

from __future__ import annotations

import sys
from typing import TextIO, cast

import pandas as pd
from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import SparkSession

from clickscore.core.errors import QueryError, java_cause
from clickscore.core.sql import SqlConfig


def print_query(
    spark: SparkSession, query: str, *, fmt: str = "table", limit: int = 1_000,
    out: TextIO | None = None,
) -> None:
    """Run Spark SQL and print at most `limit` rows as a table, CSV or JSON lines (to
    `out`, default the current sys.stdout)."""
    out = out or sys.stdout
    result = cast(pd.DataFrame, spark.sql(query).limit(limit).toPandas())
    if fmt == "csv":
        result.to_csv(out, index=False)
    elif fmt == "json":
        result.to_json(out, orient="records", lines=True, date_format="iso")
    elif result.empty:
        out.write("(no rows)\n")
    else:
        out.write(result.to_string(index=False) + "\n")
    out.flush()


def run_sql(spark: SparkSession, cfg: SqlConfig) -> None:
    """`clickscore sql`: a query Spark refuses (a syntax error, a missing table) or fails
    (an overflow under ANSI mode) is one line with Spark's error class, and exit 1."""
    try:
        print_query(spark, cfg.query, fmt=cfg.format, limit=cfg.limit)
    except PySparkException as exc:
        raise QueryError(exc.getCondition(), str(exc)) from exc
    except Py4JJavaError as exc:
        raise QueryError(None, java_cause(exc)) from exc

