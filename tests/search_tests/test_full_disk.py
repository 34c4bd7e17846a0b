"""A run dir whose disk fills up mid-search: the trial fails with that reason, the search
stops with one line, and nothing half-written looks complete. Uses a real, tiny tmpfs."""

from __future__ import annotations

import json
import subprocess

import optuna
import pytest
from mlflow import MlflowClient

from tests.conftest import run_cli, tiny_search_args

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    # Room for Hydra's files, the dense baseline and a trial or two of a 64-wide MLP.
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_fails_the_trial_and_stops_the_search(tmp_path, small_disk):
    run_dir = small_disk / "run"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [*tiny_search_args(tmp_path, seeded=True), f"hydra.run.dir={run_dir}", "model.hidden=[64]",
            "train.epochs=1", "search.n_trials=20", f"search.storage={storage}",
            "export.enabled=false"]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: trial ") and "(No space left on device)" in error, error
    assert "rerun the same command to resume" in error

    study = optuna.load_study(study_name="tiny", storage=storage)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and "No space left on device" in failed[0].user_attrs[
        "sparsearch.fail_reason"]
    assert len(study.trials) < 20  # it stopped instead of failing every trial after
    # The disk holds a trial or two first: those stay whole and complete.
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    key = failed[0].number
    # Every trial folder that says it finished is whole; no temporary file is left.
    for folder in (run_dir / "trials").iterdir():
        assert not list(folder.glob("*.tmp")), list(folder.iterdir())
        if (folder / "result.json").exists():
            assert json.loads((folder / "result.json").read_text())["status"] == "complete"
            assert (folder / "weights.safetensors").stat().st_size > 64 * 64 * 4
    assert not (run_dir / "trials" / f"{key:05d}" / "result.json").exists()

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    child = next(r for r in runs if r.data.tags.get("sparsearch.trial_key") == str(key))
    assert child.info.status == "FAILED"
    assert "No space left on device" in child.data.tags["sparsearch.fail_reason"]
    parent = next(r for r in runs if r.data.tags["sparsearch.role"] == "search")
    assert parent.info.status == "KILLED"
