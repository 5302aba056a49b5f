"""The command line grows by registration: arguments derived from typed configs, user errors
as one line with exit code 2, entry points that resolve, and declarations that load no Spark."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest

from clickscore.cli import commands, main
from clickscore.core.commands import Command, build_parser, config_from_arguments, option
from clickscore.core.config import RunDate
from clickscore.features.config import TrainingExamplesConfig
from clickscore.ingest.config import IngestConfig
from tests.conftest import utc


@dataclass(frozen=True)
class ToyConfig:
    run_date: RunDate = field(metadata=option("the day"))
    data_root: str
    input_path: str = field(default="in", metadata=option("where", flag="--input"))
    gap: timedelta = field(default=timedelta(minutes=30))
    as_of: datetime | None = None
    start: date = date(2019, 10, 1)
    ratio: float = 0.5
    is_strict: bool = True
    kind: str = field(default="a", metadata=option("one of a, b", choices=lambda: ("a", "b")))
    query: str = field(default="", metadata=option("the query", positional=True))

    def __post_init__(self) -> None:
        if self.ratio > 1:
            raise ValueError(f"ratio must be at most 1, got {self.ratio}")


TOY = Command("toy run", "a toy", ToyConfig, "tests.unit.test_commands:ToyConfig")


def parse(argv: list[str]) -> ToyConfig:
    parser, _ = build_parser("prog", "test", [TOY])
    return config_from_arguments(ToyConfig, parser.parse_args(argv), "/root")


def test_arguments_come_from_the_config_fields_with_the_dataclass_defaults():
    assert parse(["toy", "run", "--run-date", "2019-10-02", "SELECT 1"]) == ToyConfig(
        run_date=RunDate(date(2019, 10, 2)), data_root="/root", query="SELECT 1")
    assert parse(["toy", "run", "--run-date", "all", "--input", "x", "--gap", "5m",
                  "--as-of", "2019-10-01T06:00", "--start", "2019-09-30", "--ratio", "0.25",
                  "--no-is-strict", "--kind", "b", "q"]) == ToyConfig(
        run_date=RunDate(None), data_root="/root", input_path="x",
        gap=timedelta(minutes=5), as_of=utc(2019, 10, 1, 6), start=date(2019, 9, 30),
        ratio=0.25, is_strict=False, kind="b", query="q")


@pytest.mark.parametrize("argv, expected", [
    (["toy", "run", "q"], "the following arguments are required: --run-date"),
    (["toy", "run", "--run-date", "2019-10-32", "q"],
     "run date must be YYYY-MM-DD or 'all', got '2019-10-32'"),
    (["toy", "run", "--run-date", "all", "--gap", "soon", "q"],
     "duration must look like 30m, 90s, 24h or 7d, got 'soon'"),
    (["toy", "run", "--run-date", "all", "--kind", "c", "q"], "invalid choice: 'c'"),
])
def test_a_bad_argument_is_one_line_on_stderr_and_exit_2(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and err.startswith("prog toy run: error:")


def test_registered_commands_parse_with_their_configs_defaults():
    parser, _ = build_parser("clickscore", "", list(commands()))
    args = parser.parse_args(["ingest", "--source", "taobao", "--input", "f.csv",
                              "--run-date", "2019-10-01"])
    cfg = config_from_arguments(IngestConfig, args, "/data")
    assert cfg == IngestConfig(source="taobao", input_path="f.csv",
                               run_date=RunDate(date(2019, 10, 1)), data_root="/data")
    args = parser.parse_args(["training-examples", "--cutoffs", "2019-10-03,2019-10-06",
                              "--validation-from", "2019-10-06", "--test-from", "2019-10-09",
                              "--horizon", "3d", "--windows", "1h,1d"])
    cfg = config_from_arguments(TrainingExamplesConfig, args, "/data")
    assert (cfg.cutoffs, cfg.horizon, cfg.lookback, cfg.windows, cfg.min_support) == (
        (utc(2019, 10, 3), utc(2019, 10, 6)), timedelta(days=3), timedelta(days=30),
        (("1h", timedelta(hours=1)), ("1d", timedelta(days=1))), 1)


@pytest.mark.parametrize("argv, expected", [
    (["vocab", "--window-start", "2019-10-05", "--window-end", "2019-10-01"],
     "the vocab window must end after it starts, got start 2019-10-05T00:00:00+00:00 and "
     "end 2019-10-01T00:00:00+00:00"),
    (["ingest", "--source", "csv", "--input", "x", "--run-date", "2019-10-01"],
     "argument --source: invalid choice: 'csv' (choose from 'diginetica', "
     "'diginetica_purchases', 'rees46', 'retailrocket', 'taobao')"),
    (["sessionize", "--run-date", "2019-02-30"],
     "run date must be YYYY-MM-DD or 'all', got '2019-02-30'"),
    (["training-examples", "--cutoffs", "2019-10-06,2019-10-03", "--validation-from",
      "2019-10-06", "--test-from", "2019-10-09"],
     "cutoffs must be distinct and in increasing order, got "
     "2019-10-06T00:00:00+00:00,2019-10-03T00:00:00+00:00"),
])
def test_user_errors_from_the_real_cli_exit_2_with_one_line(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_every_command_has_a_unique_name_and_an_entry_point_that_loads():
    registered = list(commands())
    assert len({c.name for c in registered}) == len(registered)
    assert {c.name for c in registered} >= {"generate", "demo", "ingest", "sessionize", "vocab",
                                             "features", "training-examples", "dq report",
                                             "dq run", "sql"}
    for command in registered:
        assert callable(command.load()), command.name


def test_listing_the_commands_imports_no_spark():
    """`clickscore --help` must not start a JVM or import Spark, GX or torch."""
    probe = ("import sys; from clickscore.cli import commands, build_parser; "
             "build_parser('c', '', list(commands())); "
             "print(sorted({m.split('.')[0] for m in sys.modules} "
             "& {'pyspark', 'great_expectations', 'torch', 'pandas'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_config_made_of_groups_takes_their_fields_as_flat_options():
    """`train` is composed of the model's hyper-parameters, the loop's settings and the
    distribution's: each option lands in its part, each default comes from that part."""
    from clickscore.model.config import ModelHyper
    from clickscore.training.config import DistributionConfig, LoopConfig, TrainConfig

    parser, _ = build_parser("clickscore", "", list(commands()))
    args = parser.parse_args(["train", "--d-model", "32", "--epochs", "1", "--no-local-mode",
                              "--loss", "sampled", "--training-set", "ts1"])
    cfg = config_from_arguments(TrainConfig, args, "/data")
    assert cfg == TrainConfig(
        data_root="/data", training_set="ts1", model=ModelHyper(d_model=32, loss="sampled"),
        loop=LoopConfig(epochs=1), distribution=DistributionConfig(local_mode=False))
    assert cfg == TrainConfig.of("/data", d_model=32, loss="sampled", epochs=1,
                                 local_mode=False, training_set="ts1")
    # defaults are the parts' own, written once
    default = config_from_arguments(TrainConfig, parser.parse_args(["train"]), "/data")
    assert default == TrainConfig(data_root="/data")
    assert default.model.d_model == ModelHyper().d_model and default.loop.epochs == 5
    with pytest.raises(ValueError, match=r"d_model \(30\) must be a multiple of n_heads"):
        config_from_arguments(TrainConfig, parser.parse_args(
            ["train", "--d-model", "30", "--n-heads", "4"]), "/data")
    hidden = {"--checkpoint-dir", "--k", "--grad-clip"}
    assert not hidden & set(parser._subparsers._group_actions[0].choices["train"]
                            ._option_string_actions)
