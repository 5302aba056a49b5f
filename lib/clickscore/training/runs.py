"""Checkpoints belong to a training run: `<data root>/training/runs/<run id>/` holds one run's
checkpoints (`last.pt`, `best.pt`) and `run.json` (its settings, their digest, the training
set, when it started, whether it finished and the version it registered).

`train` starts a new run folder; `train --resume` continues the newest *unfinished* run with
the same settings and training set, and refuses in one line a run that finished (its weights
are registered already: resuming it would register them again as a new version) or settings
that no unfinished run has.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickscore.core.config import local_dir
from clickscore.core.errors import ClickscoreError
from clickscore.training.config import TrainConfig

RUNS_FOLDER = Path("training") / "runs"
RECORD = "run.json"


class TrainingRunError(ClickscoreError):
    """Nothing to resume, or a run that may not be resumed."""


def settings_of(cfg: TrainConfig) -> dict[str, Any]:
    """What makes two training runs the same run: every setting but where the data root is
    and whether to resume."""
    settings = asdict(cfg)
    settings.pop("data_root")
    settings["loop"].pop("resume")
    settings["loop"].pop("checkpoint_dir")
    return settings


def _digest(settings: dict[str, Any], training_set: str) -> str:
    text = json.dumps({"settings": settings, "training_set": training_set}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TrainingRun:
    folder: Path
    record: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.record["run_id"])

    @property
    def finished(self) -> bool:
        return bool(self.record.get("finished"))

    def finish(self, version: str) -> None:
        """Mark the run finished, with the model version it registered."""
        record = {**self.record, "finished": True, "model_version": version,
                  "finished_at": datetime.now(UTC).isoformat()}
        _write(self.folder, record)


def _write(folder: Path, record: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    tmp.replace(folder / RECORD)


def runs(data_root: str) -> list[TrainingRun]:
    """Every recorded training run under the data root, newest first."""
    found = []
    for record in local_dir(data_root, RUNS_FOLDER).glob(f"*/{RECORD}"):
        try:
            found.append(TrainingRun(record.parent, json.loads(record.read_text())))
        except (OSError, ValueError):  # a torn record: not a run to resume
            continue
    return sorted(found, key=lambda r: str(r.record.get("started_at")), reverse=True)


def start(cfg: TrainConfig, training_set: str, run_id: str) -> TrainingRun:
    """The run folder this `train` writes its checkpoints to: a new one, or with
    `--resume` the newest unfinished run of the same settings and training set."""
    settings = settings_of(cfg)
    digest = _digest(settings, training_set)
    if cfg.loop.resume:
        return _resumable(cfg.data_root, digest, settings, training_set)
    record = {"run_id": run_id, "digest": digest, "training_set": training_set,
              "settings": settings, "started_at": datetime.now(UTC).isoformat(),
              "finished": False}
    folder = local_dir(cfg.data_root, RUNS_FOLDER, run_id)
    _write(folder, record)
    return TrainingRun(folder, record)


def _resumable(data_root: str, digest: str, settings: dict[str, Any],
               training_set: str) -> TrainingRun:
    every = runs(data_root)
    same = [r for r in every if r.record.get("digest") == digest]
    unfinished = [r for r in same if not r.finished]
    if unfinished:
        return unfinished[0]
    if same:
        run = same[0]
        raise TrainingRunError(
            f"train --resume: training run {run.run_id} with these settings on training set "
            f"{training_set} finished (model version {run.record.get('model_version')}); "
            "nothing to resume (train without --resume starts a new run)")
    if not every:
        raise TrainingRunError(f"train --resume: no training run under "
                               f"{local_dir(data_root, RUNS_FOLDER)} to resume")
    newest = every[0]
    differs = _differences(newest.record.get("settings", {}), settings)
    if newest.record.get("training_set") != training_set:
        differs.insert(0, f"training set {newest.record.get('training_set')} -> {training_set}")
    raise TrainingRunError(
        f"train --resume: no unfinished training run with these settings on training set "
        f"{training_set}; the newest, {newest.run_id}, differs in "
        f"{', '.join(differs[:5]) or 'nothing recorded'}")


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} -> {b!r}")
    return out
