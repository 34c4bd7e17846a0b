"""Shared fixtures: the digits splits, and running the real command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
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


def tiny_search_args(tmp: Path, *, run: str = "run") -> list[str]:
    """Overrides for a real search that takes seconds: small MLP, few epochs and trials."""
    return [f"hydra.run.dir={tmp / run}", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
            "model.hidden=[32,32]", "train.epochs=2", "search.n_trials=3", "name=tiny"]
