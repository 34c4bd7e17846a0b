"""The Ray runner: the same search on Ray Tune, on this machine or across a cluster.

``run_ray`` has the local runner's contract (same budget, same records): a ``ray.tune.Tuner``
whose searcher is Ray's ``OptunaSearch`` over the search's own Optuna study (the same
storage and study name that ``app.run_one`` opened, the same seeded sampler, the same
define-by-run space), and whose trainable runs each trial through
``sparsearch.search.trial.run_trial`` on a Ray worker.

Why the study is shared rather than copied into afterwards: ``OptunaSearch`` opens its study
with ``create_study(storage=..., study_name=..., load_if_exists=True)``, so asking it for a
trial writes that trial straight into the run's study, numbered as the local runner numbers
it. A small subclass (``StudySearch``) adds what the stock searcher lacks: it records the
trial's metrics and failure reason as user attributes before telling, tells failed trials
FAIL (the stock one tells PRUNED), enforces ``search.n_trials``/``search.timeout_s`` against
the study and limits concurrency itself. The study, not Tune's experiment state, is the
record: Tune checkpoints its state every 10 s or more, the study is written as each trial
ends.

Budgets: ``search.n_trials`` counts the study's finished trials (stale attempts excluded),
as the local runner does; ``search.timeout_s`` stops asking for new trials once that many
seconds of this invocation have passed, and lets running trials finish. Tune's
``num_samples`` is left unbounded because a restored Tune experiment freezes it and counts
trials it skipped.

Resume: a rerun in the same run dir restores the interrupted Tune experiment with
``Tuner.restore``. Trials Tune had in flight are skipped there (``resume_unfinished=False``):
``app.run_one`` has already failed their RUNNING study trials as stale and enqueued them
again with the same trial key, so the searcher asks for them anew and they rerun under their
MLflow run; trials that finished after Tune's last checkpoint are finished in the study and
never run again. ``<run dir>/tune_session.json`` names the Tune experiment and whether its
searcher finished; a finished one is not restored (its searcher would refuse new trials), so
a rerun with a larger budget starts a new Tune experiment on the same study.

Early stopping (``search.scheduler``): each trial reports every epoch, and
``sparsearch.schedulers._ray.RungScheduler`` asks the local runner's promotion rule in the
driver; a trial it stops is ended by Tune mid-training, so ``StudySearch`` records it
(pruned, from its last epoch result) as ``run_trial`` would have.

Test hook: with ``SPARSEARCH_RAY_PID_FILES=1`` in the workers' environment each trial writes
its worker's pid to ``trials/<key>/worker.pid`` as it starts, so a test can kill it.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sparsearch.evaluate import EvalContext, TrialResult
from sparsearch.schedulers import open_scheduler
from sparsearch.schedulers._ray import (
    RungScheduler,
    epoch_result,
    register_rule,
    stopped_result,
    unregister_rule,
)
from sparsearch.search.setup import SearchSetup
from sparsearch.search.study import REASON, budget_used, trial_key
from sparsearch.search.trial import TrialJob, record_stopped_trial, run_trial, trial_dir
from sparsearch.space import SearchSpace

__all__ = ["StudySearch", "run_dass_ray", "run_ray"]

log = logging.getLogger("sparsearch")

# Keys the define-by-run space adds to a trial's config, and the trainable to its result.
KEY = "sparsearch.key"
NUMBER = "sparsearch.number"
STATUS = "sparsearch.status"
FAIL_REASON = "sparsearch.reason"
METRICS = "sparsearch.metrics"
NODE_ID = "sparsearch.node_id"
# DASS under Ray: the node that trained a derived subnet (NODE_ID: the one that searched it).
TRAIN_NODE_ID = "sparsearch.train_node_id"
PID_FILES_ENV = "SPARSEARCH_RAY_PID_FILES"
SESSION_FILE = "tune_session.json"


@dataclass(frozen=True)
class DefineByRun:
    """The space as ``OptunaSearch`` wants it: a picklable define-by-run function.

    It returns every value (fixed dimensions are never suggested, so Tune would not see
    them otherwise) and the trial's key and number, which the worker needs for its records.
    """

    space: SearchSpace

    def __call__(self, trial: Any) -> dict[str, Any]:
        values = self.space.suggest(trial)
        return {**values, KEY: trial_key(trial), NUMBER: trial.number}


@dataclass
class _Session:
    """This invocation's budget, progress and MLflow handle; looked up, never pickled.

    Tune pickles the searcher into its experiment state and ``Tuner.restore`` unpickles it,
    so what belongs to this process rather than to the search lives here, keyed by the
    search key.
    """

    n_trials: int | None
    deadline: float | None
    max_concurrent: int
    max_failures: int
    on_trial: Callable[[int, str], None]
    tracker: Any
    search_key: str
    session_file: Path
    experiment_path: str
    run_dir: Path
    in_flight: set[str] = field(default_factory=set)
    finished: bool = False

    def budget_spent(self, study: Any) -> bool:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return True
        return (self.n_trials is not None
                and budget_used(study) + len(self.in_flight) >= self.n_trials)

    def write_state(self, *, finished: bool) -> None:
        self.session_file.write_text(json.dumps(
            {"experiment": self.experiment_path, "finished": finished}, indent=1))


_SESSIONS: dict[str, _Session] = {}


class StudySearch(OptunaSearch):
    """``OptunaSearch`` over the run's own study, recording trials as the local runner does.

    Args:
        space: the search space (asked define-by-run).
        storage: the run's Optuna storage.
        study_name: the run's study name.
        sampler: the seeded sampler of the strategy.
        objectives: (metric, direction) pairs.
        session_key: the search key, under which ``run_ray`` registers this invocation.
    """

    def __init__(self, space: SearchSpace, *, storage: Any, study_name: str, sampler: Any,
                 objectives: list[tuple[str, str]], session_key: str) -> None:
        super().__init__(space=DefineByRun(space), metric=[m for m, _ in objectives],
                         mode=[d for _, d in objectives], sampler=sampler,
                         study_name=study_name, storage=storage)
        self._objectives = list(objectives)
        self._session_key = session_key

    @property
    def _session(self) -> _Session:
        return _SESSIONS[self._session_key]

    def suggest(self, trial_id: str) -> dict | str | None:
        session = self._session
        if len(session.in_flight) >= session.max_concurrent:
            return None
        if session.budget_spent(self._ot_study):
            if session.in_flight:
                # Not FINISHED yet: Tune would persist that, and a restore after a kill
                # now could never ask for the trials the kill interrupted.
                return None
            session.finished = True
            session.write_state(finished=True)
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        session.in_flight.add(trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Epoch results go to the rung records (``RungScheduler``), not to ``Trial.report``,
        which multi-objective studies refuse: both runners leave the same study."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        from optuna.trial import TrialState

        session = self._session
        session.in_flight.discard(trial_id)
        trial = self._ot_trials.get(trial_id)
        if trial is None or trial_id in self._completed_trials:
            return
        status = (result or {}).get(STATUS)
        key = trial_key(trial)
        stopped = None if status or error else stopped_result(self._ot_study, key, result)
        if status is None and not error and stopped is None:
            # Stopped without a result (the search was interrupted): the study keeps it
            # RUNNING, and the next run fails it as stale and runs it again.
            return
        if stopped is not None:
            # The scheduler stopped it: its worker was ended before it could record itself.
            record_stopped_trial(session.tracker, run_dir=session.run_dir,
                                 search_key=session.search_key, key=key, number=trial.number,
                                 result=stopped[0], series=stopped[1])
            status, metrics, node, reason = "pruned", stopped[0].metrics, None, None
        elif status is None:
            metrics, node = {}, None
            reason = f"the trial's Ray worker died {session.max_failures + 1} time(s)"
            session.tracker.fail_trial_run(session.search_key, key, reason)
            status = "failed"
        else:
            metrics = json.loads(result[METRICS])
            node, reason = result.get(NODE_ID), result.get(FAIL_REASON) or None
        trial.set_user_attr("sparsearch.metrics", metrics)
        if node:
            trial.set_user_attr(NODE_ID, node)
        if status == "complete" and all(m in metrics for m, _ in self._objectives):
            self._ot_study.tell(trial, [float(metrics[m]) for m, _ in self._objectives])
        elif status == "pruned":
            self._ot_study.tell(trial, state=TrialState.PRUNED)
        else:
            trial.set_user_attr(REASON, reason or "objective metric missing")
            self._ot_study.tell(trial, state=TrialState.FAIL)
        self._completed_trials.add(trial_id)
        session.on_trial(key, status)


@dataclass(frozen=True)
class TrialPayload:
    """What every worker needs besides the trial's config (sent once, by object store)."""

    space: SearchSpace
    ctx: EvalContext
    run_dir: str
    tracking_uri: str
    experiment: str
    search_key: str
    parent_run_id: str
    extra_params: dict[str, Any]
    objectives: tuple[str, ...]
    # Report every epoch to the scheduler (search.scheduler is not none).
    per_epoch: bool


@functools.cache
def _worker_tracker(uri: str, experiment: str) -> Any:
    """One MLflow client per worker process: reused actors keep it across trials."""
    from sparsearch.tracking import Tracker

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return Tracker(uri, experiment)


@functools.cache
def _warm_torch() -> None:
    """Creates one torch optimizer, once per worker process.

    The first optimizer a process creates imports ``torch._dynamo`` (seconds). The local
    runner's process paid that in the dense baseline; a worker pays it here, before its first
    trial, so that ``train_s`` measures training alike under both runners.
    """
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def train_trial(config: dict[str, Any], payload: TrialPayload) -> None:
    """The Tune trainable: one trial through ``run_trial``, reported with its node id."""
    import ray
    from ray import tune

    _warm_torch()
    key, number = int(config[KEY]), int(config[NUMBER])
    values = {k: v for k, v in config.items() if k not in (KEY, NUMBER)}
    if os.environ.get(PID_FILES_ENV) == "1":
        folder = trial_dir(payload.run_dir, key)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "worker.pid").write_text(str(os.getpid()))
    ctx = payload.ctx
    if ctx.threads is None:
        # As many torch threads as CPUs Ray gave this trial, so trials do not oversubscribe.
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        ctx = replace(ctx, threads=max(1, int(cpus)))
    job = TrialJob(spec=payload.space.to_spec(values), key=key, number=number, ctx=ctx,
                   run_dir=payload.run_dir, tracking_uri=payload.tracking_uri,
                   experiment=payload.experiment, search_key=payload.search_key,
                   parent_run_id=payload.parent_run_id, extra_params=payload.extra_params)

    def report(epoch: int, reported: dict[str, float], series: list) -> bool:
        # Tune's scheduler decides in the driver and ends this worker if it loses a rung.
        tune.report(epoch_result(key=key, epoch=epoch, reported=reported, series=series,
                                 objectives=payload.objectives))
        return False

    try:
        result = run_trial(job, tracker=_worker_tracker(payload.tracking_uri,
                                                        payload.experiment),
                           report=report if payload.per_epoch else None)
    except Exception as err:
        # Recording failed (MLflow, disk): the trial fails with its reason; it is not retried
        # (Tune retries only a worker that died), as the local runner would not retry it.
        result = TrialResult("failed", {}, f"{type(err).__name__}: {err}")
    # Tune insists on every objective in the result; a failed trial reports NaN for those
    # it lacks, and the searcher reads the status, not the NaN.
    objectives = {m: float(result.metrics.get(m, math.nan)) for m in payload.objectives}
    tune.report({**{k: float(v) for k, v in result.metrics.items()}, **objectives,
                 STATUS: result.status, FAIL_REASON: result.reason or "",
                 METRICS: json.dumps(result.metrics),
                 NODE_ID: ray.get_runtime_context().get_node_id()})


def trial_dirname(trial: Any) -> str:
    """Tune's folder of a trial: its sparsearch key first, so the two are easy to match."""
    return f"trial-{int(trial.config[KEY]):05d}-{trial.trial_id}"


def _absolute_uri(uri: str) -> str:
    """A sqlite URI relative to the driver's cwd means nothing on a worker: make it absolute."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///'):]).expanduser().resolve()}"
    return uri


def _study_storage(setup: SearchSetup) -> Any:
    """The run's Optuna storage: the URL ``search.study.open_study`` opened."""
    import optuna

    url = setup.cfg.search.storage or f"sqlite:///{(setup.run_dir / 'optuna.db').resolve()}"
    return optuna.storages.RDBStorage(url)


def _init_ray(runner: Any) -> bool:
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


def _slots(resources: dict[str, float], max_concurrent: int | None) -> int:
    """How many trials of ``resources`` the cluster runs at once (at most ``max_concurrent``)."""
    import ray

    total = ray.cluster_resources()
    fits = [int(total.get(name.upper(), 0.0) // amount)
            for name, amount in resources.items() if amount > 0]
    slots = max(1, min(fits, default=1))
    return min(slots, max_concurrent) if max_concurrent else slots


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
    return json.loads(session_file.read_text())


def _tuner(setup: SearchSetup, study: Any, *, trainable: Any, experiment_path: str,
           restore: bool) -> Any:
    """Tune's restored experiment, or a new one whose searcher asks the run's study."""
    from ray import tune

    if restore:
        log.info("restoring the Ray Tune experiment %s", experiment_path)
        # Unfinished trials are skipped: the study decides what runs again (module doc).
        return tune.Tuner.restore(experiment_path, trainable=trainable,
                                  resume_unfinished=False, resume_errored=False,
                                  restart_errored=False)
    searcher = StudySearch(setup.space, storage=_study_storage(setup),
                           study_name=setup.study_name, sampler=study.sampler,
                           objectives=setup.objectives, session_key=setup.search_key)
    storage_path, name = experiment_path.rsplit("/", 1)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname,
                                    scheduler=RungScheduler(setup.search_key)),
        run_config=tune.RunConfig(
            name=name, storage_path=storage_path, verbose=0,
            failure_config=tune.FailureConfig(max_failures=setup.cfg.runner.max_failures)))


def run_ray(setup: SearchSetup, study: Any, *, tracker: Any, parent_run_id: str,
            on_trial: Callable[[int, str], None]) -> None:
    """Runs trials on Ray Tune until ``search.n_trials`` are finished or ``timeout_s`` passed.

    Args:
        setup: the validated search.
        study: its Optuna study (resumed or new); the searcher opens the same study.
        tracker: the MLflow tracker.
        parent_run_id: the search's parent run.
        on_trial: called after each trial with (trial key, status), for progress.

    Raises:
        RuntimeError: Tune stopped before the budget was spent (e.g. interrupted); rerunning
            the same command resumes.
    """
    import ray
    from ray import tune

    cfg, runner = setup.cfg, setup.cfg.runner
    run_dir = setup.run_dir.resolve()
    # Tune passes this on to the trials: paths in the search are the driver's, not relative
    # to Tune's trial folders.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    # Tune's new console output prints a table even when silent; sparsearch shows progress.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started_ray = _init_ray(runner)
    set_env: list[str] = []
    try:
        session_file = run_dir / SESSION_FILE
        previous = _previous_session(session_file)
        restore = (previous is not None and not previous["finished"]
                   and _restorable(previous["experiment"]))
        if restore:
            experiment_path = previous["experiment"]
        else:
            # A new Tune experiment per fresh session: a finished one stays as it was.
            stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            experiment_path = (f"{_storage_path(runner.storage_path, run_dir)}/"
                               f"{setup.study_name}-{setup.search_key[:8]}-{stamp}")
        resources = {k: float(v) for k, v in runner.resources_per_trial.items()}
        slots = _slots(resources, runner.max_concurrent_trials)
        session = _Session(
            n_trials=cfg.search.n_trials,
            deadline=None if cfg.search.timeout_s is None
            else time.monotonic() + cfg.search.timeout_s,
            max_concurrent=slots, max_failures=runner.max_failures, on_trial=on_trial,
            tracker=tracker, search_key=setup.search_key, session_file=session_file,
            experiment_path=experiment_path, run_dir=run_dir)
        _SESSIONS[setup.search_key] = session
        register_rule(setup.search_key, open_scheduler(
            cfg.search, max_epochs=cfg.train.epochs, objectives=setup.objectives, study=study),
            study)
        session.write_state(finished=False)
        # Tune keeps one trial pending at a time for a custom searcher, so each worker would
        # start only once the previous one runs; let every slot start at once instead.
        if "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ:
            os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(slots)
            set_env.append("TUNE_MAX_PENDING_TRIALS_PG")
        payload = TrialPayload(
            space=setup.space, ctx=setup.ctx, run_dir=str(run_dir),
            tracking_uri=_absolute_uri(cfg.tracking.uri), experiment=setup.experiment,
            search_key=setup.search_key, parent_run_id=parent_run_id,
            extra_params={"strategy": cfg.search.strategy},
            objectives=tuple(m for m, _ in setup.objectives),
            per_epoch=cfg.search.scheduler != "none")
        trainable = tune.with_resources(tune.with_parameters(train_trial, payload=payload),
                                        resources)
        _tuner(setup, study, trainable=trainable, experiment_path=experiment_path,
               restore=restore).fit()
        if not session.finished:
            raise RuntimeError("the Ray search stopped before its budget was spent; "
                               "rerun the same command to resume it")
    finally:
        for name in set_env:
            os.environ.pop(name, None)
        _SESSIONS.pop(setup.search_key, None)
        unregister_rule(setup.search_key)
        if started_ray:
            ray.shutdown()


def _dass_task(job: Any) -> tuple[Any, str]:
    """One lambda of DASS on a Ray worker: ``search_lambda`` and the node it ran on."""
    import ray

    from sparsearch.search.dass import search_lambda

    _warm_torch()
    return search_lambda(job), ray.get_runtime_context().get_node_id()


def _dass_train_task(job: Any) -> tuple[TrialResult, str]:
    """One derived DASS subnet trained, scored and recorded on a Ray worker, as a sampled
    trial is (``run_trial``), and the node it ran on."""
    import ray

    _warm_torch()
    result = run_trial(job, tracker=_worker_tracker(job.tracking_uri, job.experiment))
    return result, ray.get_runtime_context().get_node_id()


def _dass_warm_up_task(plan: Any, ctx: EvalContext, dass: Any, deadline: float | None) -> Any:
    """DASS's shared dense warm-up on a worker (a GPU node when the trials ask for GPUs)."""
    from sparsearch.search.dass import warm_up

    return warm_up(plan, ctx, dass, deadline=deadline)


def run_dass_ray(setup: SearchSetup, study: Any, *, tracker: Any, parent_run_id: str,
                 on_trial: Callable[[int, str], None]) -> None:
    """DASS with ``runner=ray``: each lambda's supernet search is a Ray task, several at once.

    The lambda sweep is ``run_dass``'s: the listed lambdas first, then refinements and
    rounds; lambdas still running count as searched, so no lambda is proposed twice and a
    refinement or a new round waits for the results it depends on. As many lambdas run at
    once as the cluster has slots for ``runner.resources_per_trial`` (at most
    ``runner.max_concurrent_trials``); a task whose worker dies is retried
    ``runner.max_failures`` times. Each outcome is recorded with ``record_outcome``, as
    ``run_dass`` records it, except that its derived subnet trains as a Ray task; its child
    run is tagged with the node that searched it and the node that trained it. Once the
    sweep is complete, the front is retrained under the space's other training values, as
    ``run_dass`` does.

    Args:
        setup, study, tracker, parent_run_id, on_trial: as for ``run_dass``.
    """
    import ray
    from ray.exceptions import NodeDiedError, OutOfMemoryError, WorkerCrashedError

    from sparsearch.search.dass import (
        LambdaJob,
        SweepPoint,
        build_supernet,
        check_dass,
        record_outcome,
        sweep_points,
    )
    from sparsearch.search.dass.bilevel import DeadlineReached
    from sparsearch.search.dass.run import record_next_retrain, round_levels
    from sparsearch.search.dass.sweep import next_step

    cfg, runner = setup.cfg.search, setup.cfg.runner
    deadline = time.time() + cfg.timeout_s if cfg.timeout_s is not None else None
    started_ray = _init_ray(runner)
    try:
        resources = {k: float(v) for k, v in runner.resources_per_trial.items()}
        slots = _slots(resources, runner.max_concurrent_trials)
        options = {"num_cpus": resources.get("cpu", 1.0), "num_gpus": resources.get("gpu", 0.0)}
        search = ray.remote(_dass_task).options(max_retries=runner.max_failures, **options)
        train_remote = ray.remote(_dass_train_task).options(max_retries=runner.max_failures,
                                                            **options)
        warm_up = ray.remote(_dass_warm_up_task).options(max_retries=runner.max_failures,
                                                         **options)
        ctx = setup.ctx
        if ctx.threads is None:
            ctx = replace(ctx, threads=max(1, int(options["num_cpus"])))
        trained_on: dict[int, str] = {}

        def train(job: Any) -> TrialResult:
            # A derived subnet trains on a worker with the trials' resources, not in the
            # driver: on a cluster the head would otherwise train every one of them.
            job = replace(job, ctx=replace(job.ctx, threads=ctx.threads),
                          tracking_uri=_absolute_uri(job.tracking_uri),
                          run_dir=str(Path(job.run_dir).resolve()))
            try:
                result, node = ray.get(train_remote.remote(job))
            except (WorkerCrashedError, NodeDiedError, OutOfMemoryError) as err:
                reason = f"worker died {runner.max_failures + 1} time(s): {err}"
                tracker.fail_trial_run(setup.search_key, job.key, reason)
                return TrialResult("failed", {}, reason)
            trained_on[job.key] = node
            return result

        def tag_nodes(point: SweepPoint, searched_on: str | None) -> None:
            run_id = tracker.trial_runs(setup.search_key).get(point.key)
            if run_id is None:
                return
            tags = {TRAIN_NODE_ID: trained_on[point.key]} if point.key in trained_on else {}
            if searched_on is not None:
                tags[NODE_ID] = searched_on
            if tags:
                tracker.set_tags(run_id, tags)
        plans = {0: check_dass(setup)}
        min_cost = build_supernet(plans[0], ctx).cheapest_cost(cfg.dass.cost)
        points = sweep_points(study)
        warm: dict[int, Any] = {}
        running: dict[Any, SweepPoint] = {}
        lost: list[SweepPoint] = []
        out_of_time = False

        def budget_left() -> bool:
            if deadline is not None and time.time() >= deadline:
                return False
            return cfg.n_trials is None or budget_used(study) + len(running) < cfg.n_trials

        while True:
            while not out_of_time and len(running) < slots and budget_left():
                searched = [*points, *running.values(), *lost]
                step = next_step(cfg.dass.lambdas, searched, refine=cfg.dass.refine,
                                 min_cost=min_cost)
                if step is None and not running and cfg.dass.refine:
                    # The sweep is complete: retrain the front under the space's other
                    # training values, as run_dass does (each retrain a Ray task too).
                    point = record_next_retrain(setup, study, points, tracker=tracker,
                                                parent_run_id=parent_run_id, train=train)
                    if point is None:
                        break
                    points.append(point)
                    tag_nodes(point, None)
                    on_trial(point.key, "complete" if point.accuracy is not None
                             else "failed")
                    continue
                current = max((p.round for p in searched), default=0)
                if step is None or (running and step[0] > current):
                    break  # nothing to propose until running lambdas report
                round_, lam = step
                if round_ not in plans:
                    plans[round_] = check_dass(setup,
                                               levels=round_levels(cfg.dass.levels, round_))
                round_ctx = replace(ctx, seed=ctx.seed + round_)
                if round_ not in warm:
                    try:
                        warm[round_] = ray.get(warm_up.remote(plans[round_], round_ctx,
                                                              cfg.dass, deadline))
                    except DeadlineReached:
                        log.info("dass: the budget ran out during the dense warm-up")
                        out_of_time = True
                        break
                keys = [p.key for p in searched] + [trial_key(t) for t in
                                                    study.get_trials(deepcopy=False)]
                key = max(keys, default=-1) + 1
                job = LambdaJob(lam=lam, key=key, plan=plans[round_], ctx=round_ctx,
                                dass=cfg.dass, warm_state=warm[round_], deadline=deadline)
                running[search.remote(job)] = SweepPoint(lam=lam, key=key, digest="",
                                                         cost=math.nan, round=round_)
            if not running:
                return
            (ready,), _ = ray.wait(list(running), num_returns=1)
            pending = running.pop(ready)
            try:
                outcome, node = ray.get(ready)
            except (WorkerCrashedError, NodeDiedError, OutOfMemoryError) as err:
                # Not proposed again in this run; a rerun searches it anew.
                log.warning("dass: lambda=%g lost its worker: %s", pending.lam, err)
                lost.append(pending)
                continue
            if outcome.status != "derived":
                log.info("dass: the budget ran out while searching lambda=%g", pending.lam)
                out_of_time = True
                continue
            point = record_outcome(setup, study, outcome, points=points, tracker=tracker,
                                   parent_run_id=parent_run_id, round_=pending.round,
                                   train=train)
            points.append(point)
            if point.duplicate_of is None:
                tag_nodes(point, node)
                on_trial(point.key, "complete" if point.accuracy is not None else "failed")
    finally:
        if started_ray:
            ray.shutdown()
