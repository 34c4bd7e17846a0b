"""The end of a search: the Pareto front, test accuracy of its subnets, records and plot.

Runs after every runner, over what the study holds (so a resumed search reports on all of
its trials, and a rerun of a finished search only re-derives the same records).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsearch import mlflow_keys as keys
from sparsearch.evaluate import EvalContext
from sparsearch.pareto import hypervolume, pareto_front
from sparsearch.search.setup import SearchSetup
from sparsearch.search.study import trial_key

if TYPE_CHECKING:
    import optuna

    from sparsearch.tracking import Tracker

__all__ = ["EarlyStopping", "FrontEntry", "SearchReport", "default_reference",
           "describe_search", "early_stopping", "finalize_search"]


@dataclass
class FrontEntry:
    """One Pareto subnet: rank 0 is the best in the first objective."""

    rank: int
    key: int
    run_id: str | None
    spec: dict[str, Any]
    metrics: dict[str, float]


@dataclass
class SearchReport:
    """What a finished search reports."""

    objectives: list[tuple[str, str]]
    reference: list[float]
    hypervolume: float
    front: list[FrontEntry]
    n_complete: int
    n_failed: int
    dense: dict[str, float]
    paths: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    search_s: float = 0.0
    early_stopping: EarlyStopping | None = None
    # Where the MLflow UI shows the search's parent run.
    run_url: str = ""
    # The val front scored on the test split: its hypervolume with each member's test
    # accuracy in place of its val accuracy (None when accuracy is not an objective).
    test_hypervolume: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "objectives": [f"{m}:{d}" for m, d in self.objectives],
            "reference": self.reference,
            "hypervolume": self.hypervolume,
            "test_hypervolume": self.test_hypervolume,
            "n_complete": self.n_complete,
            "n_failed": self.n_failed,
            "dense": self.dense,
            "front": [entry.__dict__ for entry in self.front],
            **({"early_stopping": self.early_stopping.__dict__} if self.early_stopping else {}),
        }


@dataclass
class EarlyStopping:
    """What the scheduler stopped: trials per rung epoch and the epochs that saved."""

    stopped_at: dict[int, int]
    epochs_saved: int
    epochs_trained: int

    @property
    def n_pruned(self) -> int:
        return sum(self.stopped_at.values())

    @property
    def fraction_saved(self) -> float:
        total = self.epochs_saved + self.epochs_trained
        return self.epochs_saved / total if total else 0.0

    def summary(self) -> str:
        rungs = ", ".join(f"{n} at epoch {e}" for e, n in sorted(self.stopped_at.items()))
        return (f"early stopping: {self.n_pruned} trial(s) stopped ({rungs or 'none'}); "
                f"{self.epochs_saved} of {self.epochs_saved + self.epochs_trained} epochs "
                f"saved ({self.fraction_saved:.0%})")


def early_stopping(finished: list[Any]) -> EarlyStopping:
    """Counts stopped trials per rung and epochs saved, from finished trials' metrics."""
    stopped_at: dict[int, int] = {}
    saved = trained = 0
    for trial in finished:
        metrics = trial.user_attrs.get("sparsearch.metrics", {})
        if "stopped_at_epoch" in metrics:
            epoch = int(metrics["stopped_at_epoch"])
            stopped_at[epoch] = stopped_at.get(epoch, 0) + 1
            saved += int(metrics["max_epochs"]) - epoch
            trained += epoch
        else:
            trained += int(metrics.get("epochs", 0))
    return EarlyStopping(stopped_at=stopped_at, epochs_saved=saved, epochs_trained=trained)


def front_test_hypervolume(front: list[FrontEntry], objectives: list[tuple[str, str]],
                     reference: list[float]) -> float | None:
    """Hypervolume of the val front with test accuracy in place of val accuracy.

    The front is chosen on val, so this is what the search found, measured on data it never
    read; the val hypervolume of the same front is optimistic by the selection.
    """
    names = [m for m, _ in objectives]
    if "accuracy" not in names or not front:
        return None if "accuracy" not in names else 0.0
    points = [[e.metrics["test_accuracy"] if m == "accuracy" else e.metrics[m] for m in names]
              for e in front]
    return hypervolume(points, reference, [d for _, d in objectives])


def default_reference(metric: str, dense: dict[str, float], num_classes: int) -> float:
    """The hypervolume bound of a metric: the worst value that still counts."""
    defaults = {"accuracy": 0.0, "density": 1.0, "nnz": dense.get("nnz"),
                "flops": dense.get("flops"), "loss": math.log(num_classes),
                "latency_ms": dense.get("latency_ms")}
    value = defaults.get(metric)
    if value is None:
        raise ValueError(f"search.reference.{metric} must be set: it has no default bound")
    return float(value)


def checkpoint_metrics(ctx: EvalContext) -> dict[str, float]:
    """Val and test accuracy of the dense checkpoint as loaded, before any training."""
    from sparsearch.data import iterate_batches
    from sparsearch.evaluate import accuracy_on_test, build_model
    from sparsearch.train import accuracy_and_loss

    model = build_model(ctx)
    accuracy, loss = accuracy_and_loss(model, iterate_batches(ctx.data.val, 1024))
    return {"checkpoint_accuracy": accuracy, "checkpoint_loss": loss,
            "checkpoint_test_accuracy": accuracy_on_test(model, ctx.data)}


def dense_baseline(setup: SearchSetup) -> dict[str, float]:
    """Trains the dense model once per run dir (cached in dense.json): the yardstick."""
    from sparsearch.evaluate import accuracy_on_test, evaluate
    from sparsearch.spec import SubnetSpec

    path = setup.run_dir / "dense.json"
    if path.exists():
        return json.loads(path.read_text())
    result, model = evaluate(SubnetSpec(pattern="dense"), setup.ctx)
    if model is None:
        raise RuntimeError(f"the dense baseline failed: {result.reason}")
    dense = {**result.metrics, "test_accuracy": accuracy_on_test(model, setup.ctx.data)}
    if setup.ctx.model.get("checkpoint"):
        # The user's weights as loaded, beside the same weights after the trials' budget of
        # dense fine-tuning (the baseline above): both are yardsticks.
        dense.update(checkpoint_metrics(setup.ctx))
    path.write_text(json.dumps(dense, indent=1))
    return dense


def _plot(path: Path, setup: SearchSetup, points: list[list[float]], front: list[int],
          dense: dict[str, float], *, stopped: list[list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (mx, dx), (my, dy) = setup.objectives[1], setup.objectives[0]
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    ax.scatter([p[1] for p in points], [p[0] for p in points], s=14, c="#9aa5b1",
               label="trials")
    if stopped:
        # Measured at the rung they stopped at, not after full training: not comparable.
        ax.scatter([p[1] for p in stopped], [p[0] for p in stopped], s=14, marker="x",
                   c="#e0a458", alpha=0.7, label="stopped early (at their rung)")
    fp = sorted((points[i] for i in front), key=lambda p: p[1])
    ax.plot([p[1] for p in fp], [p[0] for p in fp], "o-", c="#d1495b", ms=5,
            label="Pareto front")
    if mx in dense and my in dense:
        ax.scatter([dense[mx]], [dense[my]], marker="*", s=120, c="#00798c", label="dense")
    ax.set_xlabel(f"{mx} ({dx})")
    ax.set_ylabel(f"{my} ({dy})")
    scheduler = setup.cfg.search.scheduler
    ax.set_title(f"{setup.cfg.name}: {setup.cfg.search.strategy}"
                 + (f" + {scheduler}" if scheduler != "none" else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def finalize_search(setup: SearchSetup, study: optuna.Study, *, tracker: Tracker,
                    parent_run_id: str,
                    dense: dict[str, float]) -> SearchReport:
    """Derives the front, scores its subnets on test, tags runs, writes pareto.json/png."""
    from optuna.trial import TrialState

    from sparsearch.evaluate import accuracy_on_test
    from sparsearch.search.study import STALE
    from sparsearch.search.trial import load_trial_model, trial_dir

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    n_failed = sum(1 for t in trials if t.state == TrialState.FAIL
                   and not t.user_attrs.get(STALE))
    points = [list(t.values) for t in complete]
    directions = setup.directions
    front = pareto_front(points, directions)
    first_sign = -1.0 if directions[0] == "max" else 1.0
    front.sort(key=lambda i: first_sign * points[i][0])
    reference = [float(setup.cfg.search.reference[m]) if m in setup.cfg.search.reference
                 else default_reference(m, dense, setup.ctx.data.num_classes)
                 for m, _ in setup.objectives]
    volume = hypervolume(points, reference, directions)
    tagged = tracker.trial_run_tags(setup.search_key)
    runs = {key: run_id for key, (run_id, _) in tagged.items()}
    front_keys = {trial_key(complete[i]) for i in front}
    for key, (run_id, tags) in tagged.items():
        # Trials are recorded off the front; only a run an earlier end of this search put
        # on the front (a resume), or one a dead worker left untagged, needs a write.
        if key not in front_keys and tags.get(keys.PARETO) != "false":
            # As a metric too: the UI's charts colour and filter by metrics, not by tags.
            tracker.record(run_id, metrics={keys.PARETO: 0.0}, series=[],
                           tags={keys.PARETO: "false"})
    entries = []
    for rank, i in enumerate(front):
        t = complete[i]
        key = trial_key(t)
        metrics = dict(t.user_attrs.get(keys.METRICS, {}))
        cached = trial_dir(setup.run_dir, key) / "test.json"
        if cached.exists():
            metrics["test_accuracy"] = json.loads(cached.read_text())["test_accuracy"]
        else:
            model = load_trial_model(setup.ctx, setup.run_dir, key)
            metrics["test_accuracy"] = accuracy_on_test(model, setup.ctx.data)
            cached.write_text(json.dumps({"test_accuracy": metrics["test_accuracy"]}))
        spec = json.loads((trial_dir(setup.run_dir, key) / "spec.json").read_text())
        front_run = runs.get(key)
        if front_run is not None:
            summary = ", ".join(f"{m} {_cell(metrics[m])}" for m, _ in setup.objectives
                                if m in metrics)
            tracker.record(front_run, metrics={"test_accuracy": metrics["test_accuracy"],
                                            keys.PARETO: 1.0, keys.PARETO_RANK: rank},
                           series=[], tags={keys.PARETO: "true", keys.PARETO_RANK: rank,
                                            keys.NOTE: (
                               f"Pareto rank **{rank}** of the `{setup.cfg.search.strategy}` "
                               f"search **{setup.cfg.name}**: {summary}, test_accuracy "
                               f"{_cell(metrics['test_accuracy'])}; {_pattern(spec)}, "
                               f"allocation {spec.get('allocation')}, recipe "
                               f"{spec.get('recipe')}.")})
        entries.append(FrontEntry(rank=rank, key=key, run_id=front_run, spec=spec,
                                  metrics=metrics))
    report = SearchReport(objectives=setup.objectives, reference=reference, hypervolume=volume,
                          front=entries, n_complete=len(complete), n_failed=n_failed,
                          dense=dense, test_hypervolume=front_test_hypervolume(
                              entries, setup.objectives, reference))
    if setup.cfg.search.scheduler != "none":
        report.early_stopping = early_stopping(complete + pruned)
    json_path = setup.run_dir / "pareto.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=1))
    report.paths["pareto.json"] = str(json_path)
    tracker.log_artifact(parent_run_id, json_path)
    if len(setup.objectives) >= 2 and points:
        png = setup.run_dir / "pareto.png"
        stopped = [[t.user_attrs["sparsearch.metrics"].get(m, math.nan)
                    for m, _ in setup.objectives] for t in pruned]
        _plot(png, setup, points, front, dense,
              stopped=[p for p in stopped if all(math.isfinite(v) for v in p[:2])])
        tracker.log_artifact(parent_run_id, png)
        report.paths["pareto.png"] = str(png)
    stopping = report.early_stopping
    tracker.log_metrics(parent_run_id, {
        "hypervolume": volume, "n_complete": len(complete), "n_failed": n_failed,
        **({"test_hypervolume": report.test_hypervolume}
           if report.test_hypervolume is not None else {}),
        **{f"dense_{k}": v for k, v in dense.items()},
        **({"n_pruned": stopping.n_pruned, "epochs_saved": stopping.epochs_saved,
            "epochs_trained": stopping.epochs_trained,
            **{f"pruned_at_epoch_{e}": n for e, n in stopping.stopped_at.items()}}
           if stopping else {})})
    data = setup.ctx.data
    root = setup.cfg.data.root
    tracker.log_dataset(parent_run_id, name=data.name, splits={
        "train": _arrays(data.train), "validation": _arrays(data.val), "test": _arrays(data.test)},
        source=str(Path(root).expanduser().resolve()) if root else None)
    report.run_url = tracker.run_url(parent_run_id)
    tracker.set_tags(parent_run_id, {keys.NOTE: describe_search(setup, report, runs=runs)})
    return report


def _arrays(pair: tuple[Any, Any]) -> tuple[Any, Any]:
    return pair[0].cpu().numpy(), pair[1].cpu().numpy()


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_search(setup: SearchSetup, report: SearchReport, *, runs: dict[int, str]) -> str:
    """The parent run's description (markdown): what was searched, on what budget, and the
    Pareto front as a table, so the run's page opens on the results."""
    cfg = setup.cfg
    data = setup.ctx.data
    sizes = "/".join(str(len(pair[1])) for pair in (data.train, data.val, data.test))
    budget = ", ".join(part for part in (
        f"{cfg.search.n_trials} trials" if cfg.search.n_trials is not None else "",
        f"{cfg.search.timeout_s:g} s" if cfg.search.timeout_s is not None else "") if part)
    metrics = [m for m, _ in report.objectives]
    columns = ["rank", "trial", *metrics, "test_accuracy", "pattern", "allocation", "recipe",
               "run"]
    # The UI shows the first lines of a description until "Show more": results first.
    lines = [
        f"Hypervolume **{report.hypervolume:.4f}** (reference "
        f"{', '.join(f'{m} {r:g}' for m, r in zip(metrics, report.reference, strict=True))}) "
        f"of `{cfg.search.strategy}` search **{cfg.name}**; budget {budget}: "
        f"{report.n_complete} complete, {report.n_failed} failed"
        + (f", {report.early_stopping.n_pruned} stopped early by `{cfg.search.scheduler}`."
           if report.early_stopping else "."),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        "| dense | - | " + " | ".join(_cell(report.dense.get(m, "-")) for m in metrics)
        + f" | {_cell(report.dense.get('test_accuracy', '-'))} | dense | - | - | - |",
    ]
    for entry in report.front:
        run = f"trial-{entry.key:04d}" if entry.key in runs else "-"
        lines.append("| " + " | ".join([
            str(entry.rank), str(entry.key), *(_cell(entry.metrics.get(m, "-")) for m in metrics),
            _cell(entry.metrics.get("test_accuracy", "-")), _pattern(entry.spec),
            str(entry.spec.get("allocation", "-")), str(entry.spec.get("recipe", "-")), run])
            + " |")
    lines += [
        "",
        f"Space `{cfg.space}`, model `{cfg.model.kind}`, data `{data.name}` "
        f"(train/val/test {sizes}), seed {cfg.seed}. "
        f"Objectives: {', '.join(f'{m} ({d})' for m, d in report.objectives)}.",
        "",
        f"Every trial is a child run: in the Chart view, plot `{metrics[0]}` against "
        f"`{metrics[-1]}`; the metric `pareto` is 1 on the front."]
    return "\n".join(lines)


def _pattern(spec: dict[str, Any]) -> str:
    if spec.get("pattern") == "nm":
        return f"nm {spec.get('nm')}"
    if spec.get("pattern") == "block":
        return f"block {spec.get('block')}"
    return str(spec.get("pattern", "-"))
