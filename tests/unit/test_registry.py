"""The registry's promotion rule on a real (SQLite) MLflow store: the first model becomes
champion, a worse or not-enough-better challenger does not, a better one does, and an
explicit promote overrides."""

from __future__ import annotations

import mlflow
import pytest

from clickscore import registry
from clickscore.registry.config import ModelsListConfig, PromoteConfig


def register(data_root: str, validation: float, by: str = "someone") -> str:
    mlflow_client = registry.client(data_root)
    with mlflow.start_run() as run:
        mlflow.log_metric(registry.VALIDATION_METRIC, validation)
    return registry.register(mlflow_client, f"{run.info.artifact_uri}/bundle",
                             run.info.run_id, {"head_next_item": "model",
                                               registry.REGISTERED_BY: by})


def test_promotion_needs_a_champion_to_be_beaten_by_more_than_the_margin(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.delenv(registry.MLFLOW_URI_ENV, raising=False)
    root = str(tmp_path)
    assert registry.aliases(root) == {}
    first = register(root, 0.20)
    assert registry.decide_promotion(root, first, margin=0.05)  # no champion yet
    worse = register(root, 0.10)
    assert not registry.decide_promotion(root, worse, margin=0.05)
    better = register(root, 0.30)
    assert registry.decide_promotion(root, better, margin=0.05)
    barely = register(root, 0.33)  # beats 0.30, but not by more than 0.05
    assert not registry.decide_promotion(root, barely, margin=0.05)
    assert registry.aliases(root) == {"champion": better}
    # `clickscore models promote 2` overrides the rule (the runbook's rollback) ...
    registry.promote_command(PromoteConfig(version=worse, data_root=root))
    assert registry.aliases(root) == {"champion": worse}
    # ... and `--if-better` is the rule: the best one beats it, the worse one does not
    registry.promote_command(PromoteConfig(version=first, data_root=root, if_better=True))
    assert registry.aliases(root) == {"champion": first}
    registry.promote_command(PromoteConfig(version=worse, data_root=root, if_better=True,
                                           margin=0.0))
    assert registry.aliases(root) == {"champion": first}
    registry.promote_command(PromoteConfig(version=worse, data_root=root))
    assert registry.validation_metric(root, "champion") == pytest.approx(0.10)
    registry.print_models(ModelsListConfig(data_root=root))  # `clickscore models list`
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed[1:]] == ["4", "3", "2", "1"]  # newest first
    assert listed[3].split()[:4] == ["2", "champion", "model", "0.1000"]
    with pytest.raises(registry.ModelRegistryError, match="no model version '9'"):
        registry.resolve_version(root, "9")
    # a scheduled run's later steps name the version its own train step registered
    ours = register(root, 0.5, by="clickscore_train/scheduled__2019-10-13")
    register(root, 0.9, by="clickscore_train/manual__other")  # a later, overlapping run
    assert str(registry.resolve_version(
        root, "registered-by:clickscore_train/scheduled__2019-10-13").version) == ours
    with pytest.raises(registry.ModelRegistryError, match="no model version of "
                                                          "clickscore-sequence was registered "
                                                          "by 'nobody'"):
        registry.resolve_version(root, "registered-by:nobody")
