"""Runners: where trials execute. Same inputs, same outputs, same MLflow records.

A runner is a function ``run(setup, study, *, tracker, parent_run_id, on_trial)`` that runs
trials until the search's budget is spent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["get_runner", "list_runners"]

RUNNERS = ("local", "ray")


def list_runners() -> list[str]:
    return list(RUNNERS)


def get_runner(kind: str) -> Callable[..., Any]:
    """The runner function of ``runner.kind`` (imported lazily: ray only when asked for)."""
    if kind == "local":
        from sparsearch.runners.local import run_local

        return run_local
    if kind == "ray":
        from sparsearch.runners.ray import run_ray

        return run_ray
    raise ValueError(f"runner.kind must be one of {list(RUNNERS)}, got {kind!r}")
