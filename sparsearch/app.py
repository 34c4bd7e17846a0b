"""The sparsearch application: one search from a composed Hydra config to its report.

``python -m sparsearch`` composes the config (``__main__``) and calls ``run``; tests and
scripts can call ``run`` with a composed config too.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsearch import mlflow_keys as keys
from sparsearch.config import ConfigError, SparsearchConfig, take_hydra_target, validate

if TYPE_CHECKING:
    from rich.console import Console

    from sparsearch.search.report import SearchReport
    from sparsearch.search.setup import SearchSetup

__all__ = ["run", "run_search"]

log = logging.getLogger("sparsearch")


def _pattern_text(spec: dict[str, Any]) -> str:
    if spec["pattern"] == "nm":
        return f"nm {spec['nm']}"
    if spec["pattern"] == "block":
        return f"block {spec['block']}"
    return spec["pattern"]


def print_report(report: SearchReport, setup: SearchSetup, console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"Pareto-optimal subnets of {setup.cfg.name} "
                        f"({setup.cfg.search.strategy}, {report.n_complete} complete, "
                        f"{report.n_failed} failed)")
    # Objectives beyond the fixed columns (latency_ms, loss, train_s) get their own column.
    extra = [m for m, _ in report.objectives if m not in ("accuracy", "density", "nnz", "flops")]
    for col in ("rank", "trial", "val acc", "test acc", "density", "nnz", "FLOPs", *extra,
                "pattern", "allocation", "recipe"):
        table.add_column(col, justify="right" if col not in ("pattern", "allocation", "recipe")
                         else "left")
    d = report.dense
    table.add_row("dense" if "checkpoint_accuracy" not in d else "dense+ft", "-", f"{d['accuracy']:.4f}", f"{d['test_accuracy']:.4f}", "1.000",
                  f"{int(d['nnz'])}", f"{int(d['flops'])}",
                  *[f"{d[m]:.4g}" if m in d else "-" for m in extra], "dense", "-", "-",
                  style="cyan")
    if "checkpoint_accuracy" in d:
        # The user's dense weights as loaded; the row above is them after the trials' budget.
        table.add_row("checkpoint", "-", f"{d['checkpoint_accuracy']:.4f}",
                      f"{d['checkpoint_test_accuracy']:.4f}", "1.000", f"{int(d['nnz'])}",
                      f"{int(d['flops'])}", *["-" for _ in extra], "dense", "-", "as loaded",
                      style="cyan")
    for e in report.front:
        m = e.metrics
        table.add_row(str(e.rank), str(e.key), f"{m['accuracy']:.4f}",
                      f"{m.get('test_accuracy', float('nan')):.4f}", f"{m['density']:.3f}",
                      f"{int(m['nnz'])}", f"{int(m['flops'])}",
                      *[f"{m[k]:.4g}" for k in extra], _pattern_text(e.spec),
                      e.spec["allocation"], e.spec["recipe"])
    console.print(table)
    test = ("" if report.test_hypervolume is None
            else f", on the test split {report.test_hypervolume:.4f}")
    console.print(f"hypervolume {report.hypervolume:.4f}{test} "
                  f"(reference {dict(zip([m for m, _ in report.objectives], report.reference))})")
    if report.early_stopping is not None:
        console.print(f"{report.early_stopping.summary()} "
                      f"(search.scheduler={setup.cfg.search.scheduler}, eta "
                      f"{setup.cfg.search.eta})")
    for name, path in report.paths.items():
        console.print(f"  {name:<12} {path}")


def run_one(cfg: SparsearchConfig, run_dir: Path, *, console: Console) -> SearchReport:
    """Runs one validated search (one strategy) in ``run_dir``; returns its SearchReport."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sparsearch.preflight import check_environment
    from sparsearch.runners import RUNNERS
    from sparsearch.schedulers import scheduler_hook
    from sparsearch.search.fingerprint import (
        check_fingerprint,
        search_fingerprint,
        write_fingerprint,
    )
    from sparsearch.search.report import dense_baseline, finalize_search
    from sparsearch.search.setup import config_dict, prepare_search
    from sparsearch.search.strategies import STRATEGIES
    from sparsearch.search.study import budget_used, open_study, recover_stale, study_file
    from sparsearch.space import resolve_space
    from sparsearch.terminal import quiet_library_loggers
    from sparsearch.tracking import Tracker

    validate(cfg)
    setup = prepare_search(cfg, run_dir)
    strategy_cls = STRATEGIES.get(cfg.search.strategy)
    runner_cls = RUNNERS.get(cfg.runner.kind)
    # What a strategy cannot search fails here, before any MLflow run or study exists.
    strategy_cls.check(setup)
    # Before anything is opened or written: a run dir holds one search, and every path and
    # service the search needs answers now rather than after the dense baseline trained.
    fingerprint = search_fingerprint(cfg, space_path=resolve_space(cfg.space),
                                     model=setup.ctx.model, train=setup.ctx.train)
    check_fingerprint(run_dir, fingerprint)
    check_environment(cfg, run_dir)
    quiet_library_loggers()
    write_fingerprint(run_dir, fingerprint)
    tracker = Tracker(cfg.tracking.uri, setup.experiment)
    parent = tracker.start_search(
        search_key=setup.search_key, run_name=f"{setup.study_name}-{cfg.search.strategy}",
        params={"strategy": cfg.search.strategy, "space": cfg.space, "seed": cfg.seed,
                "n_trials": cfg.search.n_trials, "timeout_s": cfg.search.timeout_s,
                "objectives": list(cfg.search.objectives), "model": cfg.model.kind,
                "data": cfg.data.name, "runner": cfg.runner.kind,
                "scheduler": cfg.search.scheduler, "min_epochs": cfg.search.min_epochs,
                "eta": cfg.search.eta, "rung_masks": cfg.search.rung_masks},
        tags={keys.RUN_DIR: str(run_dir.resolve())})
    started = time.monotonic()
    try:
        import yaml

        (run_dir / "config.yaml").write_text(yaml.safe_dump(config_dict(cfg), sort_keys=False))
        tracker.log_artifact(parent, run_dir / "config.yaml")
        dense = dense_baseline(setup)
        study = open_study(name=setup.study_name, storage=cfg.search.storage, run_dir=run_dir,
                           sampler=strategy_cls.sampler(cfg, offset=0),
                           directions=setup.directions)
        if study.get_trials(deepcopy=False):
            # A resumed search must not replay the first trials' random draws: the seed moves
            # on by the trials the study already has, so it stays reproducible and new.
            study.sampler = strategy_cls.sampler(
                cfg, offset=len(study.get_trials(deepcopy=False)))
        stale = recover_stale(study)
        if stale:
            log.info("resuming: %d interrupted trial(s) will run again", stale)
        done = budget_used(study)
        with Progress(TextColumn(f"[bold]{cfg.search.strategy} trials"), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[last]}"), console=console) as progress:
            task = progress.add_task("search", total=cfg.search.n_trials, completed=done,
                                     last="")

            def on_trial(key: int, status: str) -> None:
                progress.update(task, advance=1, last=f"trial {key}: {status}")

            trials_started = time.monotonic()
            strategy = strategy_cls(setup, study, tracker=tracker, parent_run_id=parent,
                                    on_trial=on_trial)
            runner = runner_cls(setup, tracker=tracker, parent_run_id=parent)
            # search.scheduler's hook on the report seam (None: nothing stops a trial).
            runner.on_report = scheduler_hook(cfg.search, max_epochs=cfg.train.epochs,
                                              objectives=setup.objectives, study=study)
            runner.run(strategy)
            search_s = time.monotonic() - trials_started
        report = finalize_search(setup, study, tracker=tracker, parent_run_id=parent,
                                 dense=dense)
        if cfg.export.enabled and report.front:
            from sparsearch.search.exports import export_front

            exports = export_front(setup, report, tracker=tracker)
            report.paths["exports"] = str(run_dir / "exports")
            log.info("exported %d Pareto subnet(s)", len(exports))
    except BaseException:
        tracker.end_run(parent, "KILLED")
        raise
    report.wall_s = time.monotonic() - started
    report.search_s = search_s
    tracker.log_metrics(parent, {"search_wall_s": report.wall_s, "search_trials_s": search_s})
    tracker.end_run(parent, "FINISHED")
    report.paths["run dir"] = str(run_dir)
    if cfg.search.storage is None:  # a storage URL may hold a password: not printed
        report.paths["optuna"] = str(study_file(run_dir))
    report.paths["mlflow"] = cfg.tracking.uri
    print_report(report, setup, console)
    return report


def run_search(cfg: SparsearchConfig, run_dir: Path, *, console: Console | None = None
               ) -> SearchReport | dict[str, SearchReport]:
    """Runs the search, or each strategy of ``search.compare`` on the same budget.

    Returns:
        The SearchReport, or a dict strategy -> SearchReport when comparing.
    """
    from rich.console import Console
    from rich.table import Table

    # Piped output gets a wide table instead of rich's 80-column default.
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    if not cfg.search.compare:
        report = run_one(cfg, run_dir, console=console)
        _print_review(console, cfg.tracking.uri, {cfg.search.strategy: report.run_url})
        return report
    from sparsearch.config import split_compare_entry

    def entry_config(entry: str) -> SparsearchConfig:
        # An entry without a scheduler suffix runs with search.scheduler.
        strategy, scheduler = split_compare_entry(entry)
        return replace(cfg, search=replace(cfg.search, strategy=strategy, compare=[],
                                           scheduler=scheduler or cfg.search.scheduler))

    for entry in cfg.search.compare:
        validate(entry_config(entry))
    reports = {}
    for entry in cfg.search.compare:
        sub_dir = run_dir / entry
        sub_dir.mkdir(parents=True, exist_ok=True)
        first = run_dir / cfg.search.compare[0] / "dense.json"
        if first.exists() and not (sub_dir / "dense.json").exists():
            # One dense baseline for all strategies: the same hypervolume reference.
            shutil.copy(first, sub_dir / "dense.json")
        reports[entry] = run_one(entry_config(entry), sub_dir, console=console)
    table = Table(title=f"{cfg.name}: strategies on the same space and budget "
                        f"(n_trials={cfg.search.n_trials}, timeout_s={cfg.search.timeout_s})")
    # "search s" is the budgeted part (the trials); "wall s" adds the dense baseline (trained
    # once, by the first strategy), the report and the exports.
    for col in ("strategy", "val HV", "test HV", "front size", "complete", "failed", "stopped",
                "epochs saved", "search s", "wall s"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for strategy, rep in reports.items():
        stop = rep.early_stopping
        test = "-" if rep.test_hypervolume is None else f"{rep.test_hypervolume:.4f}"
        table.add_row(strategy, f"{rep.hypervolume:.4f}", test, str(len(rep.front)),
                      str(rep.n_complete), str(rep.n_failed),
                      str(stop.n_pruned) if stop else "-",
                      f"{stop.fraction_saved:.0%}" if stop else "-",
                      f"{rep.search_s:.1f}", f"{rep.wall_s:.1f}")
    console.print(table)
    _print_review(console, cfg.tracking.uri, {s: rep.run_url for s, rep in reports.items()})
    return reports


def _print_review(console: Any, uri: str, run_urls: dict[str, str]) -> None:
    """Where to look next: the parent run of each strategy in the MLflow UI."""
    if uri.startswith(("http://", "https://")):
        start = ""
    else:
        start = f"mlflow ui --backend-store-uri {uri}, then open "
    if len(run_urls) == 1:
        console.print(f"review: {start}{next(iter(run_urls.values()))}", soft_wrap=True)
        return
    console.print(f"review: {start}the parent run of each strategy:", soft_wrap=True)
    for strategy, url in run_urls.items():
        console.print(f"  {strategy:<8} {url}", soft_wrap=True)


def _only_hydra_files(run_dir: Path) -> bool:
    return all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir())


def run(dict_cfg: Any) -> Any:
    """Hydra task: types the config, runs the search; bad input exits with code 2, a DASS
    (dass, dass_tpe) search that completed no subnet with code 3."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from sparsearch.search.trial import TrialWriteError
    from sparsearch.terminal import chatter_to_log_file

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        take_hydra_target(dict_cfg)
        cfg = OmegaConf.to_object(dict_cfg)
        assert isinstance(cfg, SparsearchConfig)  # the structured config's schema
        with chatter_to_log_file():
            result = run_search(cfg, run_dir)
    except ConfigError as err:
        # Leave nothing behind that looks like a run, unless the dir held one already.
        if run_dir.is_dir() and _only_hydra_files(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrialWriteError as err:
        print(f"error: {err}; the trial is recorded failed and the search stopped: free space "
              f"(or fix the run dir) and rerun the same command to resume", file=sys.stderr)
        sys.exit(2)
    reports = result if isinstance(result, dict) else {cfg.search.strategy: result}
    empty = [s for s in ("dass", "dass_tpe")
             if reports.get(s) is not None and reports[s].n_complete == 0]
    if empty:
        # An empty front is a failed search, not a result: say so and exit non-zero.
        print(f"warning: {empty[0]} completed no subnet within the budget (its log says where "
              f"the time went; search.dass.fit_budget=true scales its epochs to fit); the "
              f"front is empty", file=sys.stderr)
        sys.exit(3)
    return result
