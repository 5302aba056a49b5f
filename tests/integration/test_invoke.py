"""Commands called as a library (`clickscore.cli.invoke`), in this test session's Spark: what
they print, their exit codes and one-line failures, and the run's counts they return."""

from __future__ import annotations

import json

import pytest

from tests.integration.helpers import invoke_cli

pytestmark = pytest.mark.integration


def test_dq_run_and_report_print_what_the_gates_decided(spark, rees46_day, data_root):
    checked = invoke_cli("dq", "run", "--table", "bronze.events", "--run-date", "2019-10-01",
                         data_root=data_root)
    assert checked.exit_code == 0 and checked.error is None, checked.output[-3000:]
    report = invoke_cli("dq", "report", "--run-date", "2019-10-01", "--format", "csv",
                        data_root=data_root)
    assert report.exit_code == 0, report.output[-3000:]
    outcomes = [line.split(",") for line in report.output.splitlines()
                if line.startswith("2019-10-01,bronze.events,")]
    assert sorted(row[2] for row in outcomes) == ["dq_run", "ingest"]
    assert {row[7] for row in outcomes} == {"published", "on demand"}
    assert f"Data Docs: {data_root}/dq/gx" in report.output


def test_a_stage_returns_its_counts_and_sql_prints_json(spark, rees46_day, data_root,
                                                        rees46_file):
    again = invoke_cli("ingest", "--source", "rees46", "--input", str(rees46_file),
                       "--run-date", "2019-10-01", data_root=data_root)
    assert again.exit_code == 0, again.output[-3000:]
    # a rerun of the date reads and accounts for the same rows (and writes none twice)
    assert again.counts.as_dict() == rees46_day["ingest"].as_dict() == {
        "input_rows": 17_434, "output_rows": 17_434, "quarantined_rows": 0,
        "duplicate_rows": 0}
    assert spark.table("bronze.events").count() == 17_434
    query = invoke_cli("sql", "SELECT event_type, count(*) AS n FROM bronze.events GROUP BY 1 "
                       "ORDER BY 1", "--format", "json", data_root=data_root)
    assert query.exit_code == 0, query.output
    assert [json.loads(line) for line in query.output.splitlines()] == [
        {"event_type": "cart", "n": 165}, {"event_type": "purchase", "n": 214},
        {"event_type": "view", "n": 17_055}]


def test_failures_are_one_line_and_wrong_arguments_exit_2(spark, data_root, tmp_path):
    bad = invoke_cli("ingest", "--source", "rees46", "--input", str(tmp_path / "missing*.csv"),
                     "--run-date", "2019-10-01", data_root=data_root)
    assert bad.exit_code == 1 and bad.counts is None
    assert bad.error.startswith("ingest failed: ") and "input not found" in bad.error
    assert "missing*.csv" in bad.error and "\n" not in bad.error
    wrong = invoke_cli("sessionize", "--run-date", "yesterday", data_root=data_root)
    assert wrong.exit_code == 2 and "YYYY-MM-DD or 'all'" in wrong.output
    elsewhere = invoke_cli("sql", "SELECT 1", data_root=tmp_path / "another-root")
    assert elsewhere.exit_code == 1
    assert "run the command in a process of its own" in elsewhere.error


def test_vocab_prints_its_version_and_a_rebuild_of_the_window_gives_the_same(
        spark, rees46_day, data_root):
    window = ("--window-start", "2019-10-01", "--window-end", "2019-10-01T02:00",
              "--min-support", "2")
    built = invoke_cli("vocab", *window, data_root=data_root)
    assert built.exit_code == 0, built.output[-3000:]
    version = built.value
    assert built.output.strip().splitlines()[-1] == version and version.startswith("v")
    # every item with 2+ non-bot events before 02:00 gets its own index, from 2 up
    expected = spark.sql("""
        SELECT count(*) FROM (SELECT e.item_id FROM silver.events e
          JOIN silver.sessions s ON e.session_id = s.session_id
          WHERE NOT s.is_bot AND e.event_ts < TIMESTAMP '2019-10-01 02:00:00'
          GROUP BY e.item_id HAVING count(*) >= 2)""").first()[0]
    items = spark.table("ml.item_vocab").where(f"vocab_version = '{version}'")
    assert items.count() == expected > 100
    assert items.agg({"idx": "min"}).first()[0] == 2
    again = invoke_cli("vocab", *window, data_root=data_root)
    assert again.value == version and items.count() == expected
