"""MLflow tracking and the model registry.

The embedded default is a SQLite tracking store and registry under the data root
(`<data root>/mlflow/mlflow.db`, artifacts beside it); `$CLICKSCORE_MLFLOW_URI` points at a
remote tracking server instead. Trained models register as versions of `clickscore-sequence`
with the alias `challenger`; `champion` is the version nightly scoring loads. A new version
becomes champion automatically only when its validation recall@20 (over each validation
user's next items) beats the champion's by more than the configured margin (or when there is
no champion yet); `models promote` overrides.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from clickscore.core.errors import ClickscoreError
from clickscore.registry.config import ModelsListConfig, PromoteConfig

log = logging.getLogger(__name__)

MLFLOW_URI_ENV = "CLICKSCORE_MLFLOW_URI"
MODEL_NAME = "clickscore-sequence"
EXPERIMENT = "clickscore"
VALIDATION_METRIC = "best_val_recall_all_at_20"  # over all of a user's next items


class ModelRegistryError(ClickscoreError):
    """No such model version or alias, or a model that cannot be loaded."""


def tracking_uri(data_root: str) -> str:
    if os.environ.get(MLFLOW_URI_ENV):
        return os.environ[MLFLOW_URI_ENV]
    folder = Path(data_root) / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / 'mlflow.db'}"


def client(data_root: str) -> Any:
    """An MlflowClient on the data root's store, with the clickscore experiment in place."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(data_root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        artifacts = None
        if not os.environ.get(MLFLOW_URI_ENV):
            artifacts = (Path(data_root) / "mlflow" / "artifacts").resolve().as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def metric_name(name: str) -> str:
    """MLflow metric names allow no '@': recall@20 -> recall_at_20."""
    return name.replace("@", "_at_")


def resolve_version(data_root: str, version: str | int) -> Any:
    """A ModelVersion by number or alias; a clear error when there is none."""
    version = str(version)
    mlflow_client = client(data_root)
    try:
        if version.isdigit():
            return mlflow_client.get_model_version(MODEL_NAME, version)
        return mlflow_client.get_model_version_by_alias(MODEL_NAME, version)
    except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST and kin
        raise ModelRegistryError(
            f"no model version {version!r} of {MODEL_NAME} in {tracking_uri(data_root)} "
            f"(train one with `clickscore train`, list them with `clickscore models list`)"
        ) from exc


def load_model(data_root: str, version: str) -> tuple[Any, Any]:
    """(the SequenceModel on CPU, its ModelVersion)."""
    import mlflow.pytorch

    found = resolve_version(data_root, version)
    try:
        model = mlflow.pytorch.load_model(f"models:/{MODEL_NAME}/{found.version}",
                                          map_location="cpu")
    except Exception as exc:
        raise ModelRegistryError(f"model version {found.version} of {MODEL_NAME} cannot be "
                                 f"loaded: {str(exc).splitlines()[0][:300]}") from exc
    return model, found


def aliases(data_root: str) -> dict[str, str]:
    """alias -> version of the registered model ({} when nothing is registered)."""
    try:
        found = client(data_root).get_registered_model(MODEL_NAME).aliases
    except Exception:  # no registered model yet
        return {}
    return {alias: str(version) for alias, version in found.items()}


def validation_metric(data_root: str, version: str) -> float | None:
    found = resolve_version(data_root, version)
    run = client(data_root).get_run(found.run_id)
    return run.data.metrics.get(VALIDATION_METRIC)


def decide_promotion(data_root: str, version: str, margin: float) -> bool:
    """Promote `version` to champion if it beats the champion by more than `margin` on the
    validation metric, or if there is no champion; returns whether it did."""
    current = aliases(data_root).get("champion")
    mine = validation_metric(data_root, version) or 0.0
    if current is not None:
        theirs = validation_metric(data_root, current) or 0.0
        if mine <= theirs + margin:
            log.info("model %s stays challenger: validation recall@20 %.4f does not beat "
                     "champion %s (%.4f) by more than %.4f", version, mine, current, theirs,
                     margin)
            return False
    promote(data_root, version)
    return True


def set_alias(data_root: str, alias: str, version: str) -> None:
    """Point `alias` (champion, challenger) at a version."""
    found = resolve_version(data_root, version)
    client(data_root).set_registered_model_alias(MODEL_NAME, alias, found.version)


def promote(data_root: str, version: str) -> None:
    set_alias(data_root, "champion", version)
    log.info("model %s is now champion", version)


def promote_command(cfg: PromoteConfig) -> None:
    """`clickscore models promote V [--if-better --margin M]`."""
    if cfg.if_better:
        decide_promotion(cfg.data_root, str(resolve_version(cfg.data_root, cfg.version).version),
                         cfg.margin)
    else:
        promote(cfg.data_root, cfg.version)


def print_models(cfg: ModelsListConfig) -> None:
    """`clickscore models list`: every version, newest first, with aliases and metrics."""
    mlflow_client = client(cfg.data_root)
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases(cfg.data_root).items():
        by_version.setdefault(str(version), []).append(alias)
    versions = sorted(mlflow_client.search_model_versions(f"name = '{MODEL_NAME}'"),
                      key=lambda v: int(v.version), reverse=True)
    if not versions:
        print(f"(no versions of {MODEL_NAME} in {tracking_uri(cfg.data_root)})")
        return
    print(f"{'version':>7}  {'aliases':<20} {'val recall@20':>13} {'test recall@20':>14} "
          f"{'test roc_auc':>12}  run_id")
    for v in versions:
        metrics = mlflow_client.get_run(v.run_id).data.metrics
        print(f"{v.version:>7}  {','.join(sorted(by_version.get(str(v.version), []))):<20} "
              f"{metrics.get(VALIDATION_METRIC, float('nan')):>13.4f} "
              f"{metrics.get('test_model_recall_at_20', float('nan')):>14.4f} "
              f"{metrics.get('test_model_roc_auc', float('nan')):>12.4f}  {v.run_id}")
