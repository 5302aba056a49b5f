"""The registry's promotion rule on a real (SQLite) MLflow store: the first model becomes
champion, a worse or not-enough-better challenger does not, a better one does, and an
explicit promote overrides."""

from __future__ import annotations

import mlflow
import mlflow.pytorch
import pytest
import torch

from clickscore.training import registry


def register(data_root: str, validation: float) -> str:
    registry.client(data_root)
    with mlflow.start_run():
        mlflow.log_metric(registry.VALIDATION_METRIC, validation)
        info = mlflow.pytorch.log_model(torch.nn.Linear(2, 1), name="model",
                                        registered_model_name=registry.MODEL_NAME,
                                        serialization_format="pickle",
                                        pip_requirements=["torch"])
    return str(info.registered_model_version)


def test_promotion_needs_a_champion_to_be_beaten_by_more_than_the_margin(tmp_path, monkeypatch):
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
    registry.promote(root, worse)  # `clickscore models promote` overrides the rule
    assert registry.aliases(root) == {"champion": worse}
    assert registry.validation_metric(root, "champion") == pytest.approx(0.10)
    with pytest.raises(registry.ModelRegistryError, match="no model version '9'"):
        registry.resolve_version(root, "9")
