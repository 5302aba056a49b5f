"""Integration fixtures: warehouses built once per session and restored for each test."""

from __future__ import annotations

import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clickscore.core.config import parse_windows
from clickscore.demo.config import GenerateConfig
from clickscore.demo.generator import generate
from clickscore.features.config import TrainingExamplesConfig
from clickscore.features.job import run_training_examples
from tests.conftest import utc
from tests.integration.helpers import WarehouseStates, ingest, run_cli, sessionize

GENERATED_START = datetime(2019, 10, 1, tzinfo=UTC)
# five training cutoffs (more examples per user history), one validation, one test
GENERATED_CUTOFFS = tuple(GENERATED_START + timedelta(hours=h)
                          for h in (24, 30, 36, 42, 48, 54, 66))


@pytest.fixture(scope="session")
def warehouse_states(spark, tmp_path_factory) -> WarehouseStates:
    return WarehouseStates(spark, tmp_path_factory.mktemp("warehouse-states"))


@pytest.fixture
def rees46_day(warehouse_states, spark, data_root, rees46_file):
    """REES46 sample ingested and sessionized as run date 2019-10-01; the runs' counts."""
    return warehouse_states.start_from("rees46-2019-10-01", lambda: {
        "ingest": ingest(spark, data_root, "rees46", rees46_file, "2019-10-01"),
        "sessionize": sessionize(spark, data_root, "2019-10-01")})


@pytest.fixture
def rees46_all(warehouse_states, spark, data_root, rees46_file):
    """REES46 sample ingested and sessionized with run date `all`; the runs' counts."""
    return warehouse_states.start_from("rees46-all", lambda: {
        "ingest": ingest(spark, data_root, "rees46", rees46_file, "all"),
        "sessionize": sessionize(spark, data_root, "all")})


@pytest.fixture
def taobao_all(warehouse_states, spark, data_root, taobao_file):
    """The whole Taobao sample ingested and sessionized with run date `all`; the runs'
    counts."""
    return warehouse_states.start_from("taobao-all", lambda: {
        "ingest": ingest(spark, data_root, "taobao", taobao_file, "all"),
        "sessionize": sessionize(spark, data_root, "all")})


def real_examples_config(source: str, data_root: str) -> TrainingExamplesConfig:
    """The real samples' training examples: three cutoffs (train, validation, test) inside
    the sample's two hours, so horizon, lookback and windows are minutes."""
    cutoffs, horizon, lookback, windows = REAL_EXAMPLES[source]
    return TrainingExamplesConfig(
        cutoffs=cutoffs, validation_from=cutoffs[1], test_from=cutoffs[2],
        data_root=data_root, horizon=horizon, lookback=lookback,
        windows=parse_windows(windows))


REAL_EXAMPLES = {  # cutoffs, horizon, lookback, windows
    # the Taobao sample spans 2017-11-26 01:00-03:10 UTC
    "taobao": ((utc(2017, 11, 26, 1, 40), utc(2017, 11, 26, 2, 10),
                utc(2017, 11, 26, 2, 40)),
               timedelta(minutes=20), timedelta(minutes=40), "5m,15m,40m"),
    # the REES46 sample spans 2019-10-01 00:00-02:50 UTC
    "rees46": ((utc(2019, 10, 1, 1, 0), utc(2019, 10, 1, 1, 40),
                utc(2019, 10, 1, 2, 20)),
               timedelta(minutes=20), timedelta(minutes=60), "5m,15m,60m"),
}


@pytest.fixture
def taobao_examples(warehouse_states, spark, data_root, request):
    """`taobao_all` and gold.training_examples built on it (`real_examples_config`): the
    runs' counts, the build's under "examples". The features test checks the build; the
    scoring test trains on it (one build of the sample's examples per session)."""
    return warehouse_states.start_from("taobao-examples", lambda: {
        **request.getfixturevalue("taobao_all"), "examples": run_training_examples(
            spark, real_examples_config("taobao", data_root))})


@pytest.fixture
def rees46_examples(warehouse_states, spark, data_root, request):
    """`rees46_all` and gold.training_examples built on it (`real_examples_config`): the
    runs' counts, the build's under "examples"."""
    return warehouse_states.start_from("rees46-examples", lambda: {
        **request.getfixturevalue("rees46_all"), "examples": run_training_examples(
            spark, real_examples_config("rees46", data_root))})


@pytest.fixture
def generated_examples(warehouse_states, spark, data_root, tmp_path_factory):
    """Three generated days (2019-10-01..03) up to gold.training_examples; see
    `start_from_generated_examples`."""
    return start_from_generated_examples(warehouse_states, spark, data_root, tmp_path_factory)


def start_from_generated_examples(warehouse_states, spark, data_root, tmp_path_factory):
    """Three generated days (2019-10-01..03) through every stage up to
    gold.training_examples (five training cutoffs, then validation and test; 6 h labels, 12 h
    lookback); the generator's manifest. The days are ingested and sessionized in one run of
    date `all` (a stage run costs seconds of fixed work; dated runs of generated days, and
    their equality with such a rebuild, are tests/integration/test_generated_days.py's)."""
    landing = tmp_path_factory.mktemp("training-landing")

    def build():
        manifest = generate(GenerateConfig(output_dir=str(landing), days=3, users=2_000,
                                           seed=11))
        ingest(spark, data_root, "rees46", landing, "all")
        sessionize(spark, data_root, "all")
        # a 12 h lookback: the test rows' histories (54-66 h) hold no event any training row
        # saw (all before 54 h), so every test position is an honest measurement
        cutoffs = GENERATED_CUTOFFS
        return {"examples": run_training_examples(spark, TrainingExamplesConfig(
            cutoffs=cutoffs, validation_from=cutoffs[-2], test_from=cutoffs[-1],
            data_root=data_root, horizon=timedelta(hours=6), lookback=timedelta(hours=12),
            windows=parse_windows("1h,6h,12h"))), "manifest": manifest}

    return warehouse_states.start_from("generated-examples", build)


@pytest.fixture
def generated_model(warehouse_states, spark, data_root, tmp_path_factory):
    """`generated_examples` and a small model trained on them (a few steps, not promoted):
    the state's counts with the model's registry version under "model_version". The model
    stays registered in the session's MLflow store; a test that damages its artifacts puts
    them back."""
    from clickscore.training.config import TrainConfig
    from clickscore.training.job import run_train

    def build():
        counts = dict(start_from_generated_examples(warehouse_states, spark, data_root,
                                                    tmp_path_factory))
        trained = run_train(spark, TrainConfig.of(
            data_root=data_root, epochs=1, max_steps_per_epoch=5, batch_size=128, d_model=32,
            n_layers=1, auto_promote=False))
        return {**counts, "model_version": trained.details["model_version"]}

    return warehouse_states.start_from("generated-model", build)


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server on 127.0.0.1 for the whole session, started on first use and
    stopped by its process id."""
    from tests.integration import postgres as pg

    # not under pytest's temporary folder: as root, the server runs as `postgres`, which
    # may not enter root's private folders
    server = pg.start(Path(tempfile.mkdtemp(prefix="clickscore-postgres-")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`clickscore demo` (three generated days, 300 users, three epochs) run once, in its own
    process and data root: its output, and a warehouse that the report and the notebooks read
    after it ended (the embedded catalog admits one process at a time)."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    return root, run_cli("demo", "--days", "3", "--users", "300", "--epochs", "3",
                         data_root=root, timeout=900)
