"""The weekly retraining as Airflow runs it: `clickscore_train` on a Sunday (`airflow dags
test`, each task a spark-submit of the packaged code on local[1]) over five and a half weeks of
generated data, a week after the previous Sunday's run. That previous run is the same commands
with the arguments the DAG gives them for its Sunday, run in the process that builds the data
(a DAG run through Airflow costs a spark-submit per task; this was the test's first Sunday
through Airflow, 135 of its 360 s alone). The DAG's Sunday builds a second training set (other
cutoffs, another vocabulary) beside the first, trains on it alone, and promotes the version its
own run registered only when it beats the champion on validation. Before training sets had an
identity, the second Sunday's `train` failed on a table that mixed two vocabularies.
(tests/integration/test_training.py tests the same rules in-process: a set named by id, a
rebuild in place; this test is the DAG's.)"""

from __future__ import annotations

import json

import pytest

from clickscore import registry
from tests.cluster.conftest import airflow_submitting
from tests.dags.conftest import airflow_cli, dags_test, task_states
from tests.integration.helpers import run_cli_steps, table_at

pytestmark = pytest.mark.integration

TRAIN = "clickscore_train"
# two Sundays: each run's window ends at its logical date (03:00 UTC): cutoffs E-28d, E-25d,
# E-22d (train), E-14d (validation), E-7d (test, labelled up to E), features over 3 days
SUNDAYS = ("2019-10-13", "2019-10-20")
CUTOFFS = {"2019-10-13": ["2019-09-15", "2019-09-18", "2019-09-21", "2019-09-29", "2019-10-06"],
           "2019-10-20": ["2019-09-22", "2019-09-25", "2019-09-28", "2019-10-06", "2019-10-13"]}
# the data: the first Sunday's lookback start (E-28d-3d) to the second Sunday
FIRST_DAY, DAYS = "2019-09-12", 38
PARAMS = {"lookback_s": 3 * 86400, "windows": "1d,3d", "min_support": 2, "num_processes": 1,
          "epochs": 1}
FIRST_RUN = "scheduled__2019-10-13T03:00:00+00:00"  # who registered the first Sunday's model
# the first Sunday: the DAG's commands with the arguments it renders for 2019-10-13 and PARAMS
# (airflow_dags/clickscore_train.py); its `evaluate` only prints, and is left out
FIRST_SUNDAY = (
    ["vocab", "--window-start", FIRST_DAY, "--window-end", "2019-09-29", "--min-support", "2"],
    ["training-examples", "--cutoffs", ",".join(CUTOFFS["2019-10-13"]),
     "--validation-from", "2019-09-29", "--test-from", "2019-10-06", "--horizon", "7d",
     "--lookback", f"{PARAMS['lookback_s']}s", "--windows", "1d,3d", "--min-support", "2"],
    ["train", "--no-local-mode", "--num-processes", "1", "--epochs", "1", "--no-auto-promote",
     "--promotion-margin", "0.0", "--registered-by", f"{TRAIN}/{FIRST_RUN}"],
    ["models", "promote", f"registered-by:{TRAIN}/{FIRST_RUN}", "--if-better", "--margin",
     "0.0"],
)


def succeeded(spark, root) -> dict[str, dict]:
    """The details of each job's latest succeeded run."""
    return {r.job: json.loads(r.details) for r in table_at(spark, root, "ops.pipeline_runs")
            .where("status = 'succeeded'").orderBy("started_at").collect()}


def test_the_training_dags_sunday_trains_on_its_own_set_beside_last_weeks_and_promotes_its_own(
        spark, tmp_path):
    root = tmp_path / "lake"
    landing = tmp_path / "landing"
    built = run_cli_steps(
        ["generate", "--output", str(landing), "--days", str(DAYS), "--users", "150",
         "--start-date", FIRST_DAY],
        ["ingest", "--source", "rees46", "--input", str(landing / "events-*.csv.gz"),
         "--run-date", "all"],
        ["sessionize", "--run-date", "all"], *FIRST_SUNDAY, data_root=root)
    assert built.returncode == 0, built.stderr[-3000:]
    first = succeeded(spark, root)
    assert registry.aliases(str(root))["champion"] == "1"  # promoted: there was no champion

    home = tmp_path / "airflow"
    env = airflow_submitting(home, json.dumps({"conn_type": "spark", "host": "local[1]"}),
                             root, "2019-09-01", {"spark.driver.memory": "1g"})
    migrated = airflow_cli(home, env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]

    done = dags_test(home, env, TRAIN, f"{SUNDAYS[1]}T03:00:00+00:00", conf=PARAMS)
    run2, states = task_states(home, env, TRAIN)
    assert states == {"vocab": "success", "training_examples": "success",
                      "train_or_tune": "success", "train": "success", "tune": "skipped",
                      "evaluate": "success", "promote": "success"}, (
        states, (done.stdout + done.stderr)[-5000:])
    second = succeeded(spark, root)
    built1, trained1, run1 = first["training_examples"], first["train"], FIRST_RUN
    built2, trained2 = second["training_examples"], second["train"]
    log2 = done.stdout + done.stderr

    # each Sunday built its own set, at its own cutoffs, with its own vocabulary
    for sunday, built in zip(SUNDAYS, (built1, built2), strict=True):
        assert [c[:10] for c in built["cutoffs"]] == CUTOFFS[sunday]
    assert built2["training_set"] != built1["training_set"]
    assert built2["vocab_version"] != built1["vocab_version"]
    # the first set is intact beside the second, each of one vocabulary
    per_set = {r.training_set: (r["n"], r["vocabs"]) for r in table_at(
        spark, root, "gold.training_examples").groupBy("training_set").agg(
        {"*": "count", "vocab_version": "collect_set"}).withColumnsRenamed(
        {"count(1)": "n", "collect_set(vocab_version)": "vocabs"}).collect()}
    assert per_set == {b["training_set"]: (sum(b["rows_by_split"].values()),
                                           [b["vocab_version"]]) for b in (built1, built2)}

    # each Sunday trained on its own set only, and registered a version tagged with its run
    for built, trained, run_id, version in ((built1, trained1, run1, "1"),
                                            (built2, trained2, run2, "2")):
        assert trained["training_set"] == built["training_set"]
        assert trained["feature_spec"] == built["feature_spec"]
        assert trained["model_version"] == version
        model, found = registry.load_model(str(root), version)
        assert found.tags[registry.REGISTERED_BY] == f"{TRAIN}/{run_id}"
        # the set and how its features were built travel with the model, for scoring
        assert model.cfg.training_set == built["training_set"]
        assert model.cfg.features.to_dict() == built["feature_spec"]

    # the second Sunday's promote judged its own version 2 against champion 1, on validation
    mine, theirs = (registry.validation_metric(str(root), v) for v in ("2", "1"))
    champion = registry.aliases(str(root))["champion"]
    assert champion == ("2" if mine > theirs else "1"), (mine, theirs, champion)
    verdict = "model 2 is now champion" if champion == "2" else "model 2 stays challenger"
    assert verdict in log2, log2[-5000:]
