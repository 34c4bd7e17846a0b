"""Shared fixtures: the digits splits, and running the real command in a subprocess."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits():
    from sparsearch.data import load_digits_splits

    return load_digits_splits()


def run_cli(args: list[str], *, cwd: Path, timeout: float = 600,
            env: dict[str, str] | None = None,
            python_args: list[str] | None = None) -> subprocess.CompletedProcess:
    """Runs ``python -m sparsearch ARGS`` as a user would, capturing its output."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
                **(env or {})}
    return subprocess.run([sys.executable, *(python_args or []), "-m", "sparsearch", *args],
                          cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=full_env)


_MLFLOW_TEMPLATE: list[Path] = []


def mlflow_uri(path: Path) -> str:
    """``sqlite:///<path>``, with the database there already created: a copy of one made
    once per test session. A new MLflow database runs every schema migration (about 3 s
    here), which most tests are not about; the quickstart, preset, example, concurrent-open
    and bad-input tests still start from none."""
    if not _MLFLOW_TEMPLATE:
        from mlflow import MlflowClient

        folder = Path(tempfile.mkdtemp(prefix="sparsearch-mlflow-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
        _MLFLOW_TEMPLATE.append(folder / "mlflow.db")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_MLFLOW_TEMPLATE[0], path)
    return f"sqlite:///{path}"


def tiny_search_args(tmp: Path, *, run: str = "run", seeded: bool = False) -> list[str]:
    """Overrides for a real search that takes seconds: small MLP, few epochs and trials.

    Args:
        seeded: the MLflow database exists already (``mlflow_uri``); leave it False where
            the test checks that bad input creates none.
    """
    uri = mlflow_uri(tmp / "mlflow.db") if seeded else f"sqlite:///{tmp / 'mlflow.db'}"
    return [f"hydra.run.dir={tmp / run}", f"tracking.uri={uri}",
            "model.hidden=[32,32]", "train.epochs=2", "search.n_trials=3", "name=tiny"]
