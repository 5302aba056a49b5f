"""`clickscore dq report`: what the gates decided, from ops.dq_results, and where the Data Docs
HTML is."""

from __future__ import annotations

import sys
from typing import TextIO

from pyspark.sql import SparkSession

from clickscore.audit.config import DqReportConfig
from clickscore.core.delta import ensure_table
from clickscore.core.display import print_query
from clickscore.dq.context import data_docs_index
from clickscore.dq.results import RESULTS_TABLE


def print_dq_report(
    spark: SparkSession, data_root: str, *, run_date: str | None = None, fmt: str = "table",
    out: TextIO | None = None,
) -> None:
    """One line per validated batch (newest first), then every failed check, then the path
    to the Data Docs index; to `out`, or stdout as it is at the call (not at import: a
    command called in-process writes to the stdout its caller redirected)."""
    out = out or sys.stdout
    ensure_table(spark, RESULTS_TABLE)
    where = f"WHERE run_date = '{run_date}'" if run_date else ""
    out.write("Validated batches (ops.dq_results):\n")
    print_query(spark, f"""
        SELECT run_date, table_name, job, max(batch_rows) AS batch_rows,
               count(*) AS checks,
               sum(CAST(NOT success AND severity = 'critical' AS INT)) AS critical_failed,
               sum(CAST(NOT success AND severity = 'warning' AS INT)) AS warnings,
               CASE max(CAST(published AS INT)) WHEN 1 THEN 'published'
                    WHEN 0 THEN 'rejected' ELSE 'on demand' END AS outcome,
               max(validated_at) AS validated_at, run_id
        FROM {RESULTS_TABLE} {where}
        GROUP BY run_id, run_date, table_name, job
        ORDER BY validated_at DESC, table_name""", fmt=fmt, out=out)
    out.write("\nFailed checks:\n")
    print_query(spark, f"""
        SELECT run_date, table_name, check_name, severity, column_name,
               coalesce(observed_value, CAST(unexpected_count AS STRING)) AS observed,
               substr(unexpected_sample, 1, 60) AS sample, validated_at
        FROM {RESULTS_TABLE} {where} {'AND' if where else 'WHERE'} NOT success
        ORDER BY validated_at DESC, table_name, check_name""", fmt=fmt, out=out)
    out.write(f"\nData Docs: {data_docs_index(data_root)}\n")


def run_dq_report(spark: SparkSession, cfg: DqReportConfig) -> None:
    """`clickscore dq report`."""
    print_dq_report(spark, cfg.data_root, fmt=cfg.format,
                    run_date=str(cfg.run_date) if cfg.run_date else None)
