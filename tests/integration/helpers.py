"""Small helpers the integration tests share."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from clickscore.config import IngestConfig, RunDate, SessionizeConfig
from clickscore.ingest import run_ingest
from clickscore.runs import RunCounts
from clickscore.sessionize import run_sessionize
from clickscore.tables import table_version


def ingest(spark: SparkSession, data_root: str, source: str, path, run_date: str,
           **kw) -> RunCounts:
    return run_ingest(spark, IngestConfig(source=source, input_path=str(path),
                                          run_date=RunDate.parse(run_date),
                                          data_root=data_root, **kw))


def sessionize(spark: SparkSession, data_root: str, run_date: str, **kw) -> RunCounts:
    return run_sessionize(spark, SessionizeConfig(run_date=RunDate.parse(run_date),
                                                  data_root=data_root, **kw))


def snapshot(spark: SparkSession, table: str) -> DataFrame:
    """The table as of its current Delta version (unaffected by later writes)."""
    return spark.sql(f"SELECT * FROM {table} VERSION AS OF {table_version(spark, table)}")


def same_rows(a: DataFrame, b: DataFrame) -> bool:
    """Equal as multisets of rows."""
    return a.exceptAll(b).isEmpty() and b.exceptAll(a).isEmpty()


def run_rows(spark: SparkSession, job: str) -> list[tuple]:
    """(run_date, status, input, output, quarantined, duplicates) of a job's runs, in order."""
    return [tuple(r) for r in spark.sql(f"""
        SELECT run_date, status, input_rows, output_rows, quarantined_rows, duplicate_rows
        FROM ops.pipeline_runs WHERE job = '{job}' ORDER BY started_at""").collect()]
