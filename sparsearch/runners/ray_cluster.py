"""Ray's side of the Ray runner that is not Tune: joining the cluster, sizing it, and what
each worker process sets up once (its MLflow client, torch's lazy imports, its threads).

``runner.address`` null starts a local Ray; ``auto`` or ``ray://host:port`` joins a
cluster started with ``ray start``.

Test hook: with ``SPARSEARCH_RAY_PID_FILES=1`` in the driver's environment, every worker
gets it too, and each unit with a trial key writes its worker's pid to
``trials/<key>/worker.pid`` as it starts, so a test can kill it.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparsearch.config import RunnerConfig
    from sparsearch.search.work import WorkEnv
    from sparsearch.tracking import Tracker

__all__ = ["PID_FILES_ENV", "init_ray", "node_id", "slots", "worker_env", "worker_tracker"]

PID_FILES_ENV = "SPARSEARCH_RAY_PID_FILES"


def init_ray(runner: RunnerConfig) -> bool:
    """Starts or joins Ray as ``runner.address`` says; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if PID_FILES_ENV in os.environ:
        # The test hook reaches workers on every node through the job's runtime env.
        kwargs["runtime_env"] = {"env_vars": {PID_FILES_ENV: os.environ[PID_FILES_ENV]}}
    if runner.address is None:
        # "local", not None: None would join a cluster `ray start` left on this machine.
        ray.init(address="local", num_cpus=runner.num_cpus, include_dashboard=False, **kwargs)
    else:
        ray.init(address=runner.address, **kwargs)
    return True


def slots(resources: dict[str, float], max_concurrent: int | None) -> int:
    """How many units of ``resources`` the cluster runs at once (at most ``max_concurrent``)."""
    import ray

    total = ray.cluster_resources()
    fits = [int(total.get(name.upper(), 0.0) // amount)
            for name, amount in resources.items() if amount > 0]
    n = max(1, min(fits, default=1))
    return min(n, max_concurrent) if max_concurrent else n


@functools.cache
def worker_tracker(uri: str, experiment: str) -> Tracker:
    """One MLflow client per worker process: reused actors keep it across units."""
    from sparsearch.tracking import Tracker

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return Tracker(uri, experiment)


@functools.cache
def _warm_torch() -> None:
    """Creates one torch optimizer, once per worker process.

    The first optimizer a process creates imports ``torch._dynamo`` (seconds). The local
    runner's process paid that in the dense baseline; a worker pays it here, before its first
    unit, so that ``train_s`` measures training alike under both runners.
    """
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def worker_env(env: WorkEnv, key: int) -> WorkEnv:
    """This worker's view of the search's env, set up for the unit of ``key``.

    Torch gets as many threads as CPUs Ray gave the unit (unless ``train.threads`` is set),
    so units do not oversubscribe; the test hook's pid file is written (module doc).
    """
    import ray

    from sparsearch.search.trial import trial_dir

    _warm_torch()
    if os.environ.get(PID_FILES_ENV) == "1" and key >= 0:
        folder = trial_dir(env.run_dir, key)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "worker.pid").write_text(str(os.getpid()))
    if env.ctx.threads is not None:
        return env
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    return replace(env, ctx=replace(env.ctx, threads=max(1, int(cpus))))
