"""`maintain`'s pruning on real folders and a real (SQLite) MLflow store: what is older than
the retention goes, what is newer, named by an alias or used by a score stays. (Compaction
and VACUUM on Delta tables: tests/integration/test_scoring.py.)"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import mlflow

from clickscore import registry
from clickscore.maintain.job import prune_models, prune_training, prune_validations


def aged(path: Path, days: float) -> Path:
    """`path` (made if missing, with a file's content) last modified `days` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("{}")
    then = time.time() - days * 86400
    os.utime(path, (then, then))
    return path


def test_validations_checkpoints_and_caches_older_than_the_retention_go(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKSCORE_DATA_DOCS", "off")
    monkeypatch.delenv("CLICKSCORE_DQ_DIR", raising=False)
    root = tmp_path / "root"
    gx = root / "dq" / "gx" / "uncommitted"
    old_result = aged(gx / "validations" / "suite_a" / "run1" / "result.json", 40)
    new_result = aged(gx / "validations" / "suite_a" / "run2" / "result.json", 2)
    old_page = aged(gx / "data_docs" / "local_site" / "validations" / "a" / "run1.html", 40)
    assert prune_validations(str(root), timedelta(days=30)) == {
        "validation_results": 1, "data_docs_pages": 1}
    assert not old_result.exists() and not old_page.exists() and new_result.exists()
    assert not old_result.parent.exists()  # the folder left empty went too

    runs = root / "training" / "runs"
    for run_id, days in (("finished-long-ago", 40), ("recent", 1)):
        record = aged(runs / run_id / "run.json", days)
        record.write_text(json.dumps({"run_id": run_id, "finished": True}))
        aged(record, days)
        aged(runs / run_id / "checkpoint.pt", days)
    cache = root / "training" / "petastorm-cache"
    aged(cache / "killed-run" / "part-0.parquet", 3)
    os.utime(cache / "killed-run", (time.time() - 3 * 86400,) * 2)
    aged(cache / "live-run" / "part-0.parquet", 0.01)
    assert prune_training(str(root), timedelta(days=30)) == {"training_runs": 1,
                                                             "petastorm_caches": 1}
    assert sorted(p.name for p in runs.iterdir()) == ["recent"]
    assert sorted(p.name for p in cache.iterdir()) == ["live-run"]


def test_model_versions_beyond_the_newest_go_unless_named_or_used_by_scores(tmp_path,
                                                                          monkeypatch):
    monkeypatch.delenv(registry.MLFLOW_URI_ENV, raising=False)
    root = str(tmp_path / "root")
    client = registry.client(root)
    folders = {}
    for _ in range(5):
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "bundle/bundle.pt")
        version = registry.register(client, f"{run.info.artifact_uri}/bundle", run.info.run_id,
                                    {})
        folders[version] = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"{run.info.artifact_uri}/bundle"))
    client.set_registered_model_alias(registry.MODEL_NAME, "champion", "1")
    # 5 and 4 are the newest two, 1 the champion, 2 a score within the retention used
    assert prune_models(root, keep=2, used={"2"}) == ["3"]
    left = sorted(str(v.version) for v in client.search_model_versions(
        f"name = '{registry.MODEL_NAME}'"))
    assert left == ["1", "2", "4", "5"]
    assert [v for v, folder in sorted(folders.items()) if folder.exists()] == [
        "1", "2", "4", "5"]
