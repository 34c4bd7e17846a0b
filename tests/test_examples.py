"""examples/own_model runs as its README says: train, search from the checkpoint, reload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import REPO, run_cli


@pytest.mark.slow
def test_own_model_example(tmp_path) -> None:
    example = tmp_path / "own_model"
    shutil.copytree(REPO / "examples" / "own_model", example)
    env = {**os.environ, "PYTHONPATH": str(example)}
    trained = subprocess.run([sys.executable, "train_dense.py", "--epochs", "8"], cwd=example,
                             env=env, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-2000:]
    run = example / "outputs" / "run"
    result = run_cli(["model=custom", "model.target=mynets.nets:build",
                      "+model.options.width=32", "model.checkpoint=dense.safetensors",
                      f"space={example / 'space.yaml'}", "train.epochs=1", "search.n_trials=2",
                      "name=own_model", f"hydra.run.dir={run}", "export.batch_sizes=[1]",
                      f"tracking.uri=sqlite:///{example / 'mlflow.db'}"],
                     cwd=example, env={"PYTHONPATH": str(example)})
    assert result.returncode == 0, result.stderr[-3000:]
    dense = json.loads((run / "dense.json").read_text())
    # the checkpoint was trained: well above chance before any fine-tuning
    assert dense["checkpoint_accuracy"] > 0.8
    reload = subprocess.run(
        [sys.executable, "-c", "from sparsearch.export import load; import sys; "
         "print(type(load(sys.argv[1])).__name__)", str(run / "exports" / "rank-0")],
        cwd=example, env=env, capture_output=True, text=True, timeout=300)
    assert reload.returncode == 0, reload.stderr[-2000:]
    assert reload.stdout.strip() == "RowNet"
