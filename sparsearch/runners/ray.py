"""The Ray runner: any strategy's units as Ray Tune trials, on this machine or a cluster.

``RayRunner`` has the local runner's contract (same budget, same records): a
``ray.tune.Tuner`` whose searcher (``tune_searcher.StrategySearcher``) asks the strategy
for units and whose trainable (``execute_unit``) executes each on a Ray worker with the
resources of ``runner.resources_per_trial``, as many at once as the cluster has slots for
(at most ``runner.max_concurrent_trials``). A unit whose worker dies is retried
``runner.max_failures`` times (Tune's ``FailureConfig``), then handed back as failed.
Cluster connection and worker set-up are in ``ray_cluster``.

The study, not Tune's experiment state, is the record: Tune checkpoints its state every
10 s or more, the study is written as each unit ends. Budgets are the strategy's; Tune's
``num_samples`` is left unbounded because a restored Tune experiment freezes it and counts
trials it skipped.

Resume: a rerun in the same run dir restores the interrupted Tune experiment with
``Tuner.restore``. Trials Tune had in flight are skipped there (``resume_unfinished=False``):
``app.run_one`` has already failed their RUNNING study trials as stale and enqueued them
again with the same trial key, so the strategy proposes them anew and they rerun under
their MLflow run; trials that finished after Tune's last checkpoint are finished in the
study and never run again. ``<run dir>/tune_session.json`` names the Tune experiment and
whether its searcher finished; a finished one is not restored (its searcher would refuse
new trials), so a rerun with a larger budget starts a new Tune experiment on the same study.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsearch.runners import Runner
from sparsearch.runners.ray_cluster import init_ray, node_id, slots, worker_env, worker_tracker
from sparsearch.runners.tune_searcher import (
    ERROR,
    KEY,
    NODE_ID,
    SESSIONS,
    STATUS,
    UNIT,
    VALUE,
    RaySession,
    StrategySearcher,
    encode,
)
from sparsearch.schedulers._ray import (
    RungScheduler,
    forward_epoch,
    register_hook,
    unregister_hook,
)
from sparsearch.search.work import WorkEnv, Worker, work_env

if TYPE_CHECKING:
    from ray.tune import Tuner

    from sparsearch.search.strategies import Strategy

__all__ = ["RayRunner"]

log = logging.getLogger("sparsearch")

SESSION_FILE = "tune_session.json"


def execute_unit(config: dict[str, Any], env: WorkEnv, per_epoch: bool) -> None:
    """The Tune trainable: one unit on this worker, its value reported with its node id.

    With ``per_epoch`` (a scheduler is on) a trial also reports every epoch to Tune, whose
    scheduler may stop it there (``sparsearch.schedulers._ray``).
    """
    from ray import tune

    from sparsearch.evaluate import TrialResult

    unit = config[UNIT]
    env = worker_env(env, unit.key)
    node = node_id()
    worker = Worker(env=env, tracker=worker_tracker(env.tracking_uri, env.experiment),
                    node_id=node, on_report=forward_epoch if per_epoch else None)
    try:
        value, error = unit.execute(worker), ""
    except Exception as err:
        # The unit failed here (MLflow, disk, a bug): it is handed back with its reason and
        # not retried (Tune retries only a worker that died), as the local runner would not.
        value, error = None, f"{type(err).__name__}: {err}"
    # A trial's metrics go into Tune's record of it too, for whoever reads Tune's results.
    metrics = ({k: float(v) for k, v in value.metrics.items()}
               if isinstance(value, TrialResult) else {})
    tune.report({**metrics, STATUS: "error" if error else "done", ERROR: error,
                 VALUE: encode(value), NODE_ID: node})


def trial_dirname(trial: Any) -> str:
    """Tune's folder of a trial: its sparsearch key first, so the two are easy to match."""
    return f"trial-{int(trial.config[KEY]):05d}-{trial.trial_id}"


def _storage_path(configured: str | None, run_dir: Path) -> str:
    """Tune's storage: ``runner.storage_path`` (a folder or a URI such as s3://) or run dir/ray."""
    if configured and "://" in configured:
        return configured.rstrip("/")
    return str(Path(configured or run_dir / "ray").expanduser().resolve())


def _restorable(experiment_path: str) -> bool:
    """Whether Tune wrote enough of the experiment to restore it.

    ``Tuner.can_restore`` only looks for tuner.pkl; without an experiment state (a kill in
    the first seconds) Tune would silently start over with one sample.
    """
    import pyarrow.fs
    from ray import tune

    if not tune.Tuner.can_restore(experiment_path):
        return False
    if "://" in experiment_path:
        fs, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    else:
        fs, root = pyarrow.fs.LocalFileSystem(), experiment_path
    return any(info.base_name.startswith("experiment_state-")
               for info in fs.get_file_info(pyarrow.fs.FileSelector(root)))


def _previous_session(session_file: Path) -> dict[str, Any] | None:
    if not session_file.exists():
        return None
    return dict(json.loads(session_file.read_text()))


class RayRunner(Runner):
    """Executes a strategy's units as Ray Tune trials (module doc)."""

    def _tuner(self, *, trainable: Any, experiment_path: str, restore: bool) -> Tuner:
        """Tune's restored experiment, or a new one whose searcher asks the strategy."""
        from ray import tune

        if restore:
            log.info("restoring the Ray Tune experiment %s", experiment_path)
            # Unfinished trials are skipped: the study decides what runs again (module doc).
            return tune.Tuner.restore(experiment_path, trainable=trainable,
                                      resume_unfinished=False, resume_errored=False,
                                      restart_errored=False)
        storage_path, name = experiment_path.rsplit("/", 1)
        return tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=StrategySearcher(self.setup.search_key),
                                        num_samples=-1, reuse_actors=True,
                                        trial_dirname_creator=trial_dirname,
                                        scheduler=RungScheduler(self.setup.search_key)),
            run_config=tune.RunConfig(
                name=name, storage_path=storage_path, verbose=0,
                failure_config=tune.FailureConfig(
                    max_failures=self.setup.cfg.runner.max_failures)))

    def run(self, strategy: Strategy) -> None:
        """Runs the strategy's units on Ray Tune until it proposes no more.

        Raises:
            RuntimeError: Tune stopped before the strategy finished (e.g. interrupted);
                rerunning the same command resumes.
        """
        import ray
        from ray import tune

        setup, runner = self.setup, self.setup.cfg.runner
        run_dir = setup.run_dir.resolve()
        # Tune passes this on to the trials: paths in the search are the driver's, not
        # relative to Tune's trial folders.
        os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
        # Tune's new console output prints a table even when silent; sparsearch shows progress.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        started_ray = init_ray(runner)
        set_env: list[str] = []
        try:
            session_file = run_dir / SESSION_FILE
            previous = _previous_session(session_file)
            restore = (previous is not None and not previous["finished"]
                       and _restorable(previous["experiment"]))
            if previous is not None and restore:
                experiment_path = str(previous["experiment"])
            else:
                # A new Tune experiment per fresh session: a finished one stays as it was.
                stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
                experiment_path = (f"{_storage_path(runner.storage_path, run_dir)}/"
                                   f"{setup.study_name}-{setup.search_key[:8]}-{stamp}")
            resources = {k: float(v) for k, v in runner.resources_per_trial.items()}
            n_slots = slots(resources, runner.max_concurrent_trials)
            session = RaySession(strategy=strategy, max_concurrent=n_slots,
                                 max_failures=runner.max_failures, session_file=session_file,
                                 experiment_path=experiment_path)
            SESSIONS[setup.search_key] = session
            register_hook(setup.search_key, self.on_report)
            session.write_state(finished=False)
            # Tune keeps one trial pending at a time for a custom searcher, so each worker
            # would start only once the previous one runs; let every slot start at once.
            if "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ:
                os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(n_slots)
                set_env.append("TUNE_MAX_PENDING_TRIALS_PG")
            env = work_env(setup, self.parent_run_id)
            trainable = tune.with_resources(
                tune.with_parameters(execute_unit, env=env,
                                     per_epoch=self.on_report is not None), resources)
            self._tuner(trainable=trainable, experiment_path=experiment_path,
                        restore=restore).fit()
            if not session.finished:
                raise RuntimeError("the Ray search stopped before its budget was spent; "
                                   "rerun the same command to resume it")
        finally:
            for name in set_env:
                os.environ.pop(name, None)
            SESSIONS.pop(setup.search_key, None)
            unregister_hook(setup.search_key)
            if started_ray:
                ray.shutdown()
