"""MLflow tracking and the model registry.

The embedded default is a SQLite tracking store and registry under the data root
(`<data root>/mlflow/mlflow.db`, artifacts beside it); `$CLICKSCORE_MLFLOW_URI` points at a
remote tracking server instead.

A version of `clickscore-sequence` is a bundle of scorers trained on one training set (the
sequence model and every baseline, `clickscore.model.bundle`), stored as one file that loads
with `torch.load(weights_only=True)` (no pickle; MLflow's pickle flavour is not used), with
tags naming the scorer that serves each head (`head_next_item`, `head_propensity`), chosen on
validation: the model serves a head only when it beats the best baseline. Trained versions get
the alias `challenger`; `champion` is the version nightly scoring loads. A new version becomes
champion automatically only when its next-item head's validation NDCG@20 (over each
validation user's next items) beats the champion's by more than the configured margin (or
when there is no champion yet); `models promote` overrides.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from clickscore.core.config import local_dir
from clickscore.core.errors import ClickscoreError
from clickscore.registry.config import ModelsListConfig, PromoteConfig

log = logging.getLogger(__name__)

MLFLOW_URI_ENV = "CLICKSCORE_MLFLOW_URI"
MODEL_NAME = "clickscore-sequence"
EXPERIMENT = "clickscore"
REGISTERED_BY = "registered_by"  # a version's tag: who registered it (train --registered-by)
BY_PREFIX = "registered-by:"
BUNDLE_FILE = "bundle.pt"  # in a version's artifacts (model/bundle.py)
LOOP_METRIC = "best_val_recall_all_at_20"  # the training loop's early-stopping metric


def head_metric(head: str) -> str:
    """The MLflow metric holding a version's validation figure for one head (the figure of
    the scorer that serves it)."""
    from clickscore.model.bundle import HEAD_METRICS

    return metric_name(f"val_head_{head}_{HEAD_METRICS[head]}")


# what versions are compared by: the next-item head's validation NDCG@20 (all next items)
VALIDATION_METRIC = "val_head_next_item_ndcg_all_at_20"


class ModelRegistryError(ClickscoreError):
    """No such model version or alias, or a model that cannot be loaded."""


def tracking_uri(data_root: str) -> str:
    if os.environ.get(MLFLOW_URI_ENV):
        return os.environ[MLFLOW_URI_ENV]
    folder = local_dir(data_root, "mlflow")
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
            artifacts = local_dir(data_root, "mlflow", "artifacts").resolve().as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=artifacts)
    mlflow.set_experiment(EXPERIMENT)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def metric_name(name: str) -> str:
    """MLflow metric names allow no '@': recall@20 -> recall_at_20."""
    return name.replace("@", "_at_")


def resolve_version(data_root: str, version: str | int) -> Any:
    """A ModelVersion by number, alias, or `registered-by:ID` (the newest version `train
    --registered-by ID` registered); a clear error when there is none."""
    version = str(version)
    mlflow_client = client(data_root)
    if version.startswith(BY_PREFIX):
        who = version.removeprefix(BY_PREFIX).replace("'", "")
        found = mlflow_client.search_model_versions(
            f"name = '{MODEL_NAME}' and tags.{REGISTERED_BY} = '{who}'")
        if not found:
            raise ModelRegistryError(f"no model version of {MODEL_NAME} was registered by "
                                     f"{who!r} in {tracking_uri(data_root)}")
        return max(found, key=lambda v: int(v.version))
    try:
        if version.isdigit():
            return mlflow_client.get_model_version(MODEL_NAME, version)
        return mlflow_client.get_model_version_by_alias(MODEL_NAME, version)
    except Exception as exc:  # MlflowException: RESOURCE_DOES_NOT_EXIST and kin
        raise ModelRegistryError(
            f"no model version {version!r} of {MODEL_NAME} in {tracking_uri(data_root)} "
            f"(train one with `clickscore train`, list them with `clickscore models list`)"
        ) from exc


ARTIFACTS = "/mlflow/artifacts/"


def own_artifacts(data_root: str, source: str) -> str:
    """Where a version's files are in this data root. The embedded store records absolute
    artifact URIs (`file:///old/place/mlflow/artifacts/...`): a data root copied, restored or
    moved elsewhere would read the original place's files (or none, once it is gone). Such a
    URI is read from this root's own `mlflow/artifacts`; a tracking server's are kept."""
    if os.environ.get(MLFLOW_URI_ENV) or not source.startswith("file:") \
            or ARTIFACTS not in source:
        return source
    inside = source.split(ARTIFACTS, 1)[1]
    return f"{local_dir(data_root, 'mlflow', 'artifacts').resolve().as_uri()}/{inside}"


def register(mlflow_client: Any, source: str, run_id: str, tags: dict[str, str]) -> str:
    """A new version of the model whose files are at `source` (a run's artifact folder
    holding BUNDLE_FILE), with `tags`; its number."""
    with contextlib.suppress(Exception):  # MlflowException RESOURCE_ALREADY_EXISTS
        mlflow_client.create_registered_model(MODEL_NAME)
    return str(mlflow_client.create_model_version(MODEL_NAME, source=source, run_id=run_id,
                                                  tags=tags).version)


def load_bundle(data_root: str, version: str) -> tuple[Any, Any]:
    """(the version's ScorerBundle on CPU, its ModelVersion); a version that is not a bundle
    (a pickle among them) is refused in one line, before anything in it runs."""
    import mlflow

    from clickscore.model.bundle import ScorerBundle

    found = resolve_version(data_root, version)
    what = f"model version {found.version} of {MODEL_NAME}"
    try:
        folder = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=own_artifacts(data_root, found.source)))
        path = folder / BUNDLE_FILE
        if not path.is_file():
            raise ModelRegistryError(f"{what} cannot be loaded: it holds no {BUNDLE_FILE} "
                                     "(registered before bundles, or not by clickscore "
                                     "train); train it again")
        return ScorerBundle.from_bytes(path.read_bytes(), what), found
    except ModelRegistryError:
        raise
    except ValueError as exc:  # BundleError, UntrustedModelError
        raise ModelRegistryError(f"{what} cannot be loaded: {exc}") from None
    except Exception as exc:
        raise ModelRegistryError(f"{what} cannot be loaded: "
                                 f"{str(exc).splitlines()[0][:300]}") from exc


def load_model(data_root: str, version: str) -> tuple[Any, Any]:
    """(the version's SequenceModel on CPU, its ModelVersion)."""
    bundle, found = load_bundle(data_root, version)
    return bundle.model, found


def heads(data_root: str, version: str) -> dict[str, str]:
    """Which scorer serves each head of a version (`model` where none is recorded)."""
    from clickscore.model.bundle import HEADS, MODEL

    tags = resolve_version(data_root, version).tags or {}
    return {head: tags.get(f"head_{head}", MODEL) for head in HEADS}


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
            log.info("model %s stays challenger: validation NDCG@20 %.4f does not beat "
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
    """`clickscore models list`: every version, newest first, with its aliases, the scorer
    serving each head and the validation figures behind that choice (the head's scorer, the
    sequence model's own and the best baseline's), and the head's test figure."""
    from clickscore.model.bundle import HEAD_METRICS, HEADS, MODEL, SCORERS

    mlflow_client = client(cfg.data_root)
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases(cfg.data_root).items():
        by_version.setdefault(str(version), []).append(alias)
    versions = sorted(mlflow_client.search_model_versions(f"name = '{MODEL_NAME}'"),
                      key=lambda v: int(v.version), reverse=True)
    if not versions:
        print(f"(no versions of {MODEL_NAME} in {tracking_uri(cfg.data_root)})")
        return
    header = f"{'version':>7}  {'aliases':<20}"
    for head in HEADS:
        metric = HEAD_METRICS[head]
        header += (f" {head + ' by':<24} {'val ' + metric:>16} {'model':>7} "
                   f"{'best baseline':>14} {'test':>7}")
    print(header + "  run_id")
    nan = float("nan")
    for v in versions:
        metrics = mlflow_client.get_run(v.run_id).data.metrics
        line = f"{v.version:>7}  {','.join(sorted(by_version.get(str(v.version), []))):<20}"
        for head in HEADS:
            metric = metric_name(HEAD_METRICS[head])
            scorer = (v.tags or {}).get(f"head_{head}", MODEL)
            baselines = [metrics.get(f"val_{b}_{metric}", nan) for b in SCORERS[head][1:]]
            best = max((b for b in baselines if b == b), default=nan)
            line += (f" {scorer:<24} {metrics.get(head_metric(head), nan):>16.4f} "
                     f"{metrics.get(f'val_{MODEL}_{metric}', nan):>7.4f} {best:>14.4f} "
                     f"{metrics.get(f'test_{scorer}_{metric}', nan):>7.4f}")
        print(line + f"  {v.run_id}")
