"""One trial, wherever it runs: evaluate a spec, keep its weights, record it in MLflow.

``run_trial`` takes a ``TrialJob`` (plain, picklable data) so the local runner and Ray
workers execute exactly the same code and leave exactly the same records: a child run
under the search's parent run, and ``trials/<key>/`` in the run dir with the spec, the
result and the trained weights (masked weights stored as exact zeros).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsearch import mlflow_keys as keys
from sparsearch.evaluate import EvalContext, TrialResult
from sparsearch.spec import SubnetSpec

if TYPE_CHECKING:
    from sparsearch.search.work import Worker
    from sparsearch.tracking import Tracker

__all__ = ["TrialJob", "TrialReport", "TrialUnit", "TrialWriteError", "load_trial_model",
           "record_stopped_trial", "run_trial", "trial_dir"]

# report(epoch, metrics, series so far) -> True to stop the trial there (see ``evaluate``).
TrialReport = Callable[[int, dict[str, float], list[tuple[str, float, int]]], bool]


@dataclass(frozen=True)
class TrialJob:
    """Everything one trial needs.

    Attributes:
        spec: the subnet to build and train.
        key: the trial's stable identity (Optuna number of its first attempt).
        number: this attempt's Optuna trial number.
        ctx: data, model, training defaults, seed, device.
        run_dir: the search's run dir (shared storage when trials run on several nodes).
        tracking_uri, experiment, search_key, parent_run_id: where to record it.
        extra_params: added to the child run's params (e.g. the strategy).
    """

    spec: SubnetSpec
    key: int
    number: int
    ctx: EvalContext
    run_dir: str
    tracking_uri: str
    experiment: str
    search_key: str
    parent_run_id: str
    extra_params: dict[str, Any]


class TrialWriteError(OSError):
    """A trial's files could not be written (a full disk, a lost mount): the trial is
    recorded failed and the search must stop, since every later trial would fail alike."""


def _write_atomic(path: Path, write: Any) -> None:
    """``write(tmp)`` then a rename: a file under its final name is always whole."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class TrialUnit:
    """The unit of work of one trial (``search/work.py``): train, score and record a spec.

    Attributes:
        spec: the subnet.
        key, number: as in ``TrialJob``.
        extra_params: added to the child run's params (the strategy and its settings).
        model: model options that replace the search's (a DASS cell genotype), or None.
    """

    spec: SubnetSpec
    key: int
    number: int
    extra_params: dict[str, Any]
    model: dict[str, Any] | None = None

    def job(self, worker: Worker) -> TrialJob:
        env = worker.env
        ctx = replace(env.ctx, model=self.model) if self.model else env.ctx
        return TrialJob(spec=self.spec, key=self.key, number=self.number, ctx=ctx,
                        run_dir=env.run_dir, tracking_uri=env.tracking_uri,
                        experiment=env.experiment, search_key=env.search_key,
                        parent_run_id=env.parent_run_id, extra_params=self.extra_params)

    def execute(self, worker: Worker) -> TrialResult:
        # Multi-fidelity seam (search/work.py): per-epoch reports go to worker.report.
        report = (None if worker.on_report is None
                  else lambda epoch, metrics, series: worker.report(self.key, epoch, metrics,
                                                                   series))
        return run_trial(self.job(worker), tracker=worker.tracker, report=report)


def trial_dir(run_dir: str | Path, key: int) -> Path:
    return Path(run_dir) / "trials" / f"{key:05d}"


def _save_weights(model: Any, path: Path) -> None:
    import copy

    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from sparsearch.sparsity.masking import remove_masks

    baked = copy.deepcopy(model).cpu()
    remove_masks(baked)
    try:
        save_file({k: v.contiguous() for k, v in baked.state_dict().items()}, str(path))
    except SafetensorError as err:
        # safetensors' Rust writer reports an I/O failure as "... (os error 28)": the same
        # OSError a Python write would raise, so a full disk reads the same everywhere.
        found = re.search(r"os error (\d+)", str(err))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code), str(path)) from err


def load_trial_model(job_ctx: EvalContext, run_dir: str | Path, key: int) -> Any:
    """Rebuilds a trial's trained subnet from ``trials/<key>/weights.safetensors``.

    A trial that trained another architecture than the search's model (a DASS cell
    genotype) left its model config in ``trials/<key>/model.json``; it is built from that.
    """
    from safetensors.torch import load_file

    from sparsearch.evaluate import build_model

    folder = trial_dir(run_dir, key)
    if (folder / "model.json").exists():
        job_ctx = replace(job_ctx, model=json.loads((folder / "model.json").read_text()))
    model = build_model(job_ctx)
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    model.eval()
    return model


# MLflow has no "pruned" run status; KILLED is its word for a run stopped before its end.
RUN_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


@contextlib.contextmanager
def _trial_files(tracker: Tracker, run_id: str, *, key: int, number: int, folder: Path,
                 series: list[tuple[str, float, int]]) -> Iterator[None]:
    """Writes of a trial's files: one that fails (a full disk) fails the trial's run with
    the reason and raises ``TrialWriteError``, which stops the search."""
    try:
        yield
    except OSError as err:
        reason = f"cannot write {folder} ({err.strerror or err})"
        tracker.record(run_id, metrics={}, series=series, tags={
            keys.STATUS: "failed", keys.OPTUNA_NUMBER: number, keys.FAIL_REASON: reason})
        tracker.end_run(run_id, "FAILED")
        raise TrialWriteError(f"trial {key}: {reason}") from None


def _record(tracker: Tracker, run_id: str, *, folder: Path, number: int, result: TrialResult,
            series: list[tuple[str, float, int]]) -> None:
    """result.json, then the run's metrics, series and tags, and its end status."""
    # Written last of a trial's files: a trial folder with result.json is a finished trial.
    _write_atomic(folder / "result.json",
                  lambda tmp: tmp.write_text(json.dumps(result.to_dict(), indent=1)))
    # Off the front until the search's end says otherwise (finalize_search then writes only
    # to the front's runs, not to every run of a search of a thousand trials).
    tracker.record(run_id, metrics={**result.metrics, keys.PARETO: 0.0}, series=series, tags={
        keys.STATUS: result.status, keys.OPTUNA_NUMBER: number, keys.PARETO: "false",
        **({keys.FAIL_REASON: result.reason}
           if result.reason and result.status == "failed" else {}),
        **({keys.STOPPED_AT_EPOCH: int(result.metrics["stopped_at_epoch"])}
           if result.status == "pruned" else {})})
    tracker.end_run(run_id, RUN_STATUS[result.status])


def record_stopped_trial(tracker: Tracker, *, run_dir: str | Path, search_key: str, key: int,
                         number: int, result: TrialResult,
                         series: list[tuple[str, float, int]]) -> None:
    """Records a trial a scheduler stopped on a Ray worker, where it could not (see ray runner)."""
    folder = trial_dir(run_dir, key)
    folder.mkdir(parents=True, exist_ok=True)
    run_id = tracker.trial_run_id(search_key, key)
    if run_id is None:
        raise RuntimeError(f"trial {key} has no MLflow run in search {search_key}")
    _record(tracker, run_id, folder=folder, number=number, result=result, series=series)


def run_trial(job: TrialJob, *, tracker: Tracker | None = None,
              report: TrialReport | None = None) -> TrialResult:
    """Evaluates ``job.spec`` and records it; returns the TrialResult.

    Args:
        job: the trial.
        tracker: an open ``sparsearch.tracking.Tracker`` (one is opened when None).
        report: the scheduler's per-epoch hook (see ``evaluate``); a trial it stops is
            recorded pruned, with no weights (it is never exported).
    """
    from sparsearch.evaluate import evaluate
    from sparsearch.tracking import Tracker

    tracker = tracker or Tracker(job.tracking_uri, job.experiment)
    run_id = tracker.trial_run(parent_id=job.parent_run_id, search_key=job.search_key,
                               trial_key=job.key, run_name=f"trial-{job.key:04d}",
                               tags={keys.SPEC: job.spec.to_json()})
    tracker.log_params(run_id, {**job.spec.flat_params(), **job.extra_params})
    folder = trial_dir(job.run_dir, job.key)
    with _trial_files(tracker, run_id, key=job.key, number=job.number, folder=folder,
                      series=[]):
        folder.mkdir(parents=True, exist_ok=True)
        # Written first: a trial stopped on a Ray worker is recorded by the driver from here on.
        _write_atomic(folder / "spec.json", lambda tmp: tmp.write_text(job.spec.to_json()))
    series: list[tuple[str, float, int]] = []
    try:
        result, model = evaluate(
            job.spec, job.ctx, log_metric=lambda k, v, s: series.append((k, v, s)),
            report=None if report is None else lambda e, m: report(e, m, list(series)))
    except Exception as err:
        # A crash inside one trial is that trial's failure, not the search's.
        result, model = TrialResult("failed", {}, f"{type(err).__name__}: {err}"), None
    with _trial_files(tracker, run_id, key=job.key, number=job.number, folder=folder,
                      series=series):
        if model is not None:
            _write_atomic(folder / "weights.safetensors", lambda tmp: _save_weights(model, tmp))
        _record(tracker, run_id, folder=folder, number=job.number, result=result, series=series)
    return result
