"""The daily DAG waits for its landing file, stops a day whose day before failed, and tells
someone: each through `airflow dags test` (the stages' spark-submits marked succeeded with
--mark-success-pattern: what is tested here is Airflow's part, no Spark runs), with the
e-mails caught by an SMTP server on 127.0.0.1 (tests/dags/smtp_sink.py)."""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest

from tests.dags.conftest import (
    AIRFLOW_PYTHON,
    DAGS,
    ROOT,
    airflow_cli,
    airflow_env,
    dags_test,
    task_states,
)
from tests.dags.smtp_sink import smtp_sink, text

pytestmark = pytest.mark.integration

DAILY = "clickscore_daily"
STAGES = "^(ingest|sessionize|features|score|export)$"  # marked succeeded, never submitted
RECIPIENTS = ["oncall@example.com", "data@example.com"]


def subjects(sink, count: int) -> list[str]:
    return [m["Subject"] for _, m in sink.wait(count)]


def test_a_missing_landing_file_fails_its_day_the_next_day_waits_for_it_and_each_failure_mails(
        tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    with smtp_sink() as sink:
        home = tmp_path / "airflow"
        env = airflow_env(home, **{
            "AIRFLOW_CONN_CLICKSCORE_ALERTS": json.dumps({
                "conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
                "extra": {"from_email": "clickscore@localhost", "to": ", ".join(RECIPIENTS),
                          "disable_tls": True, "disable_ssl": True, "timeout": 10}}),
            "AIRFLOW_VAR_CLICKSCORE_LANDING": str(landing / "events-{ds}.csv.gz"),
            "AIRFLOW_VAR_CLICKSCORE_DATA_ROOT": str(tmp_path / "lake"),
            "AIRFLOW_VAR_CLICKSCORE_HOME": str(ROOT),
            "CLICKSCORE_DAG_RETRIES": "0", "CLICKSCORE_START_DATE": "2019-10-01",
            "CLICKSCORE_DAG_DEADLINE": "off",  # see clickscore_common.deadlines
            "CLICKSCORE_LANDING_TIMEOUT": "3s", "CLICKSCORE_LANDING_POKE": "1s",
        })
        migrated = airflow_cli(home, env, "db", "migrate")
        assert migrated.returncode == 0, migrated.stderr[-3000:]

        # day 1's file never comes: the sensor gives up, nothing after it runs, and the
        # on-call recipients get one e-mail naming the task, the day and the cause
        first = dags_test(home, env, DAILY, "2019-10-01", skip=STAGES)
        _, states = task_states(home, env, DAILY)
        assert states == {"wait_for_landing": "failed", **{t: "upstream_failed" for t in (
            "ingest", "sessionize", "previous_day_published", "features", "score",
            "export")}}, (first.stdout + first.stderr)[-5000:]
        ((to, mail),) = sink.wait(1)
        assert to == RECIPIENTS and mail["From"] == "clickscore@localhost"
        assert mail["Subject"] == ("clickscore: clickscore_daily.wait_for_landing failed for "
                                   "2019-10-01")
        assert "timed out" in text(mail), text(mail)

        # day 2's file lands: its ingest and sessionize run, but not its features, scores and
        # export without day 1's events; the check fails in one line, and mails it
        for day in ("2019-10-02", "2019-10-01"):
            (landing / f"events-{day}.csv.gz").write_bytes(gzip.compress(b"header\n"))
        second = dags_test(home, env, DAILY, "2019-10-02", skip=STAGES)
        _, states = task_states(home, env, DAILY)
        assert states == {"wait_for_landing": "success", "ingest": "success",
                          "sessionize": "success", "previous_day_published": "failed",
                          "features": "upstream_failed", "score": "upstream_failed",
                          "export": "upstream_failed"}, (second.stdout + second.stderr)[-5000:]
        assert subjects(sink, 2)[1] == ("clickscore: clickscore_daily.previous_day_published "
                                        "failed for 2019-10-02")
        assert ("2019-10-02: the day before (2019-10-01) has no successful run"
                in text(sink.messages[1][1])), text(sink.messages[1][1])

        # day 1 repaired (its file came), then day 2 redone: both succeed, nothing is mailed
        for day in ("2019-10-01", "2019-10-02"):
            again = dags_test(home, env, DAILY, day, skip=STAGES)
            _, states = task_states(home, env, DAILY)
            assert set(states.values()) == {"success"}, (day, (again.stdout
                                                               + again.stderr)[-5000:])
        assert len(sink.messages) == 2

        # the deadline's callback, as the triggerer calls it, mails too
        late = subprocess.run([str(AIRFLOW_PYTHON), "-c", (
            "import asyncio, clickscore_common as c; asyncio.run(c.scores_late(context={"
            "'dag_run': {'run_id': 'scheduled__2019-10-02T00:00:00+00:00'}}))")],
            env={**env, "PYTHONPATH": str(DAGS)}, capture_output=True, text=True,
            timeout=120, check=False)
        assert late.returncode == 0, late.stderr[-3000:]
        assert subjects(sink, 3)[2] == ("clickscore: clickscore_daily's scores are late "
                                        "(scheduled__2019-10-02T00:00:00+00:00)")

    # without the connection an alert is an error line, not a crash
    unset = subprocess.run([str(AIRFLOW_PYTHON), "-c", (
        "import clickscore_common as c; print(c.send_alert('a subject', 'a body'))")],
        env={**airflow_env(home), "PYTHONPATH": str(DAGS)}, capture_output=True, text=True,
        timeout=120, check=False)
    assert unset.returncode == 0, unset.stderr[-3000:]
    assert unset.stdout.splitlines()[-1] == "False"
    assert "no clickscore_alerts connection: the alert was not sent" in unset.stdout
