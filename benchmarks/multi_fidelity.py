"""Early stopping (search.scheduler=asha) against full training, on equal wall-clock budgets.

Li & Talwalkar (arXiv 1902.07638) make random search with early stopping the baseline any
NAS method must beat; MO-ASHA (Schmucker et al., arXiv 2106.12639) extends ASHA's rungs to
several objectives, as sparsearch's are. Per task (``--task digits``: the MLP on
scikit-learn's digits; ``mnist1d``: the 1-D CNN on MNIST-1D) and seed this runs the real
command once per method (random, random_asha, tpe, tpe_asha by default; ``--ray`` adds
random_asha under ``runner=ray`` with two trials at once), each in its own process, run dir
and MLflow database, with one shared dense baseline. A method runs at the same time as its
twin (one torch thread each on two cores), so both see the same machine load; the order of
the pairs rotates by seed. Methods already in the seed's folder (another invocation's) are
kept: ``benchmarks/search_quality.py`` judges DASS against them.
Every method is budget-agnostic, so the front a method holds at time t (trials completed by
t, read from the study and counted from its MLflow parent run's start) is what a run with
budget t holds. Fronts are chosen on val and scored on the test split (test hypervolume of
(test accuracy, density), reference (0, 1)).

It reports per budget the mean test hypervolume per method and, paired by seed, the mean
difference of each scheduled method to its unscheduled twin with a bootstrap 95% CI; the
fraction of epochs early stopping saved; the Spearman rank correlation between the val
accuracy at the first rung and the final val accuracy, over the unscheduled runs' trials
(low: stopping at that rung cannot pick winners); and the goal: random_asha reaches plain
random's test hypervolume at the largest budget within half of it on at least 4 of 5 seeds.

    nice python benchmarks/multi_fidelity.py [--seeds 0 1 2 3 4] [--budgets 60 180 600]
        [--task digits|mnist1d] [--methods random random_asha tpe tpe_asha] [--ray] [--epochs 9]
        [--out outputs/bench/multi_fidelity.json]

Takes about len(methods) / 2 x max(budgets) per seed (5 seeds of random and random_asha at
240 s: about 25 minutes per task on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

NAME = "multi_fidelity"
TWINS = {"random_asha": "random", "tpe_asha": "tpe", "random_asha_ray2": "random"}
# The task: the data, model and space overrides of each.
TASKS = {"digits": ["space=digits_mlp"],
         "mnist1d": ["data=mnist1d", "model=cnn1d", "space=mnist1d_cnn",
                     "train.batch_size=100"]}


# Methods that run another's strategy with other settings (``search_quality.py`` gives them).
VARIANTS = {"dass_weights": "dass", "dass_noprobe": "dass", "dass_tpe_grid": "dass_tpe"}


def parse_method(method: str) -> tuple[str, str, bool]:
    """``STRATEGY[_asha][_ray2]`` -> (strategy, scheduler, under Ray with two trials)."""
    base = method.removesuffix("_ray2")
    asha = base.endswith("_asha")
    strategy = base.removesuffix("_asha")
    # A variant's name is not a scheduler suffix: dass_tpe_grid runs dass_tpe without ASHA.
    strategy = VARIANTS.get(strategy, strategy)
    return strategy, "asha" if asha else "none", base != method


def _overrides(run_dir: Path, method: str, *, task: str, seed: int, timeout_s: float,
               epochs: int, min_epochs: int, extra: list[str] | None = None) -> list[str]:
    strategy, scheduler, ray = parse_method(method)
    runner = (["runner=ray", "runner.max_concurrent_trials=2", "runner.num_cpus=2"]
              if ray else [])
    return [f"hydra.run.dir={run_dir / method}", _tracking(run_dir, method),
            f"name={NAME}", *TASKS[task], f"seed={seed}", f"train.epochs={epochs}",
            "train.threads=1", f"search.strategy={strategy}", f"search.scheduler={scheduler}",
            f"search.min_epochs={min_epochs}", "search.eta=3", "search.n_trials=null",
            f"search.timeout_s={timeout_s}", "export.enabled=false", *runner, *(extra or [])]


def _tracking(run_dir: Path, method: str) -> str:
    # A database per method: methods run at the same time, and SQLite serialises writers.
    return f"tracking.uri=sqlite:///{run_dir / f'mlflow-{method}.db'}"


def start_method(run_dir: Path, method: str) -> subprocess.Popen[bytes]:
    overrides = json.loads((run_dir / "overrides.json").read_text())[method]
    log = (run_dir / f"{method}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "sparsearch", *overrides], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def waves_of(methods: list[str]) -> list[list[str]]:
    """Methods that run at the same time, two at once on two cores (each with one torch
    thread), so both see the same machine load: a method beside its early-stopping twin, the
    rest in pairs in the order given; a Ray method (two trials at once) alone."""
    waves: list[list[str]] = []
    single: list[str] = []
    for m in methods:
        twin = TWINS.get(m)
        if m.endswith("ray2"):
            waves.append([m])
        elif twin in methods and not m.endswith("ray2"):
            waves.append([twin, m])
        elif not any(m == TWINS.get(o) for o in methods if not o.endswith("ray2")):
            single.append(m)
    return waves + [single[i:i + 2] for i in range(0, len(single), 2)]


def run_wave(run_dir: Path, wave: list[str], *, ok: tuple[int, ...] = (0,)) -> dict[str, int]:
    """Runs ``wave``'s methods at once; their exit codes (raises for one not in ``ok``)."""
    procs = {m: start_method(run_dir, m) for m in wave}
    codes = {m: proc.wait() for m, proc in procs.items()}
    for m, code in codes.items():
        if code not in ok:
            tail = (run_dir / f"{m}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{m} failed:\n{tail}")
    return codes


def measure(run_dir: Path, method: str, budgets: list[float], *,
            rung: int, rung_pairs: bool = True) -> dict[str, Any]:
    """Test hypervolume of the val front by each budget; epochs saved; (rung, final) pairs."""
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from sparsearch.evaluate import accuracy_on_test
    from sparsearch.pareto import hypervolume, pareto_front
    from sparsearch.search.setup import prepare_search
    from sparsearch.search.study import load_run_study, trial_key
    from sparsearch.search.trial import load_trial_model

    client = MlflowClient(tracking_uri=_tracking(run_dir, method).partition("=")[2])
    exp = client.get_experiment_by_name(NAME)
    parent = next(r for r in client.search_runs(
        [exp.experiment_id], filter_string="tags.`sparsearch.role` = 'search'")
        if r.data.tags.get("sparsearch.run_dir") == str((run_dir / method).resolve()))
    t0 = parent.info.start_time / 1000.0
    study = load_run_study(run_dir / method, NAME)
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
                  key=lambda t: t.datetime_complete)
    setup = prepare_search(method_config(run_dir, method), run_dir / method)
    test = {t.number: accuracy_on_test(load_trial_model(setup.ctx, setup.run_dir,
                                                        trial_key(t)), setup.ctx.data)
            for t in done}
    per_budget = {}
    for b in budgets:
        seen = [t for t in done if t.datetime_complete.timestamp() - t0 <= b]
        front = [seen[i] for i in pareto_front([list(t.values) for t in seen], ["max", "min"])]
        per_budget[str(int(b))] = {
            "test_hypervolume": hypervolume([[test[t.number], t.values[1]] for t in front],
                                            [0.0, 1.0], ["max", "min"]),
            "trials": len(seen)}
    saved, trained = parent.data.metrics.get("epochs_saved"), parent.data.metrics.get(
        "epochs_trained")
    pairs = []
    if saved is None and rung_pairs:
        # Unscheduled: every trial ran every epoch, an unbiased sample of (rung, final).
        for t in done:
            run_id = next(r.info.run_id for r in client.search_runs(
                [exp.experiment_id], filter_string=f"tags.`sparsearch.trial_key` = '{trial_key(t)}' "
                f"and tags.`mlflow.parentRunId` = '{parent.info.run_id}'"))
            first = [m.value for m in client.get_metric_history(run_id, "val_accuracy")
                     if m.step == rung]
            pairs += [(first[0], t.values[0])] if first else []
    trials = [{"s": t.datetime_complete.timestamp() - t0, "accuracy": t.values[0],
               "density": t.values[1], "test_accuracy": test[t.number]} for t in done]
    return {"budgets": per_budget, "trials": trials,
            "n_pruned": parent.data.metrics.get("n_pruned", 0.0),
            "fraction_saved": saved / (saved + trained) if saved is not None and saved + trained
            else 0.0, "rung_final_pairs": pairs}


def method_config(run_dir: Path, method: str) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sparsearch.config import register_configs

    register_configs()
    overrides = [o for o in json.loads((run_dir / "overrides.json").read_text())[method]
                 if not o.startswith("hydra.")]
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=overrides))


def prepare_seed(run_dir: Path, methods: list[str], **kwargs: Any) -> None:
    """Fresh run dirs for ``methods`` beside the seed's other methods (kept), their
    overrides recorded, and the seed's one dense baseline (the same hypervolume reference
    for all), trained before any clock if no method of the seed has it yet."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for m in methods:
        shutil.rmtree(run_dir / m, ignore_errors=True)
        (run_dir / f"mlflow-{m}.db").unlink(missing_ok=True)
    index = run_dir / "overrides.json"
    recorded = json.loads(index.read_text()) if index.exists() else {}
    recorded.update({m: _overrides(run_dir, m, **kwargs) for m in methods})
    index.write_text(json.dumps(recorded))
    dense = next((p for p in run_dir.glob("*/dense.json")), None)
    if dense is None:
        from sparsearch.search.report import dense_baseline
        from sparsearch.search.setup import prepare_search

        (run_dir / methods[0]).mkdir()
        dense_baseline(prepare_search(method_config(run_dir, methods[0]), run_dir / methods[0]))
        dense = run_dir / methods[0] / "dense.json"
    for m in methods:
        (run_dir / m).mkdir(exist_ok=True)
        if not (run_dir / m / "dense.json").exists():
            shutil.copy(dense, run_dir / m / "dense.json")


def run_seed(out_dir: Path, *, task: str, seed: int, methods: list[str],
             budgets: list[float], epochs: int, min_epochs: int,
             measure_only: bool = False) -> dict[str, Any]:
    run_dir = out_dir / task / f"seed{seed}"
    if measure_only:
        # Runs made before (another invocation, or search_quality.py): judged, not rerun.
        return {"seed": seed, "waves": [], "load": [], "total_s": 0.0,
                "methods": {m: measure(run_dir, m, budgets, rung=min_epochs)
                            for m in methods}}
    waves = waves_of(methods)
    waves = waves[seed % len(waves):] + waves[:seed % len(waves)]
    kwargs = {"task": task, "seed": seed, "timeout_s": max(budgets), "epochs": epochs,
              "min_epochs": min_epochs}
    prepare_seed(run_dir, methods, **kwargs)
    load: list[tuple[float, float, float]] = []
    started = time.time()
    for wave in waves:
        load.append(os.getloadavg())
        run_wave(run_dir, wave)
    load.append(os.getloadavg())
    return {"seed": seed, "waves": waves, "load": load, "total_s": time.time() - started,
            "methods": {m: measure(run_dir, m, budgets, rung=min_epochs) for m in methods}}


def paired_ci(diffs: list[float], *, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% CI of the mean of paired differences (resampling seeds)."""
    rng = random.Random(seed)
    means = sorted(statistics.mean(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return means[int(0.025 * rounds)], means[int(0.975 * rounds) - 1]


def summarise(results: list[dict[str, Any]], methods: list[str],
              budgets: list[float]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    summary: dict[str, Any] = {"budgets": {}}
    for b in budgets:
        key, row = str(int(b)), {}
        for m in methods:
            hvs = [r["methods"][m]["budgets"][key]["test_hypervolume"] for r in results]
            row[m] = {"test_hypervolume_mean": statistics.mean(hvs), "per_seed": hvs}
            twin = TWINS.get(m)
            if twin in methods:
                diffs = [h - r["methods"][twin]["budgets"][key]["test_hypervolume"]
                         for h, r in zip(hvs, results)]
                row[m]["vs_" + twin] = {"mean_diff": statistics.mean(diffs),
                                        "ci95": paired_ci(diffs)}
        summary["budgets"][key] = row
    loads = [w[0] for r in results for w in r["load"]] or [math.nan]
    summary["load_1min"] = {"min": min(loads), "median": statistics.median(loads),
                            "max": max(loads)}
    summary["fraction_saved"] = {m: statistics.mean(r["methods"][m]["fraction_saved"]
                                                    for r in results) for m in methods}
    pairs = [p for r in results for m in methods for p in r["methods"][m]["rung_final_pairs"]]
    summary["spearman_first_rung_final"] = (float(spearmanr(*zip(*pairs)).statistic)
                                       if len(pairs) > 2 else None)
    if "random" in methods and "random_asha" in methods:
        top = str(int(max(budgets)))
        early = [str(int(b)) for b in budgets if b <= max(budgets) / 2]
        met = [any(r["methods"]["random_asha"]["budgets"][b]["test_hypervolume"]
                   >= r["methods"]["random"]["budgets"][top]["test_hypervolume"] for b in early)
               for r in results]
        summary["goal_asha_reaches_random_final_in_half"] = {
            "seeds_met": sum(met), "seeds": len(results), "budgets_checked": early}
    return summary


def print_table(summary: dict[str, Any], methods: list[str], n_seeds: int, task: str) -> None:
    print(f"\nearly stopping, {task}, {n_seeds} seed(s): test hypervolume of the val front "
          f"(test accuracy max, density min; reference (0, 1)), mean over seeds")
    print(f"{'budget s':>9} " + " ".join(f"{m:>17}" for m in methods))
    for key, row in summary["budgets"].items():
        print(f"{key:>9} " + " ".join(f"{row[m]['test_hypervolume_mean']:>17.4f}"
                                      for m in methods))
        for m in methods:
            for twin_key, d in ((k, v) for k, v in row[m].items() if k.startswith("vs_")):
                lo, hi = d["ci95"]
                print(f"{'':>9}   {m} - {twin_key[3:]}: {d['mean_diff']:+.4f} "
                      f"(95% CI {lo:+.4f} .. {hi:+.4f})")
    print("fraction of epochs saved: " + ", ".join(
        f"{m} {v:.0%}" for m, v in summary["fraction_saved"].items()))
    rho = summary["spearman_first_rung_final"]
    print(f"Spearman(val accuracy at the first rung, final val accuracy): "
          f"{'-' if rho is None else f'{rho:.3f}'}")
    goal = summary.get("goal_asha_reaches_random_final_in_half")
    if goal:
        print(f"goal: random_asha reaches random's final test hypervolume by "
              f"{goal['budgets_checked']} s on {goal['seeds_met']} of {goal['seeds']} seeds "
              f"(needed: 4 of 5)")
    load = summary["load_1min"]
    print(f"1-min load average at the start/end of each wave: min {load['min']:.2f}, "
          f"median {load['median']:.2f}, max {load['max']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 180.0, 300.0, 600.0])
    parser.add_argument("--methods", nargs="+",
                        default=["random", "random_asha", "tpe", "tpe_asha"])
    parser.add_argument("--ray", action="store_true",
                        help="add random_asha under runner=ray, two trials at once")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--min-epochs", type=int, default=1,
                        help="the first rung; the rank correlation is read at this epoch")
    parser.add_argument("--measure-only", action="store_true",
                        help="judge the runs the work dir holds, run nothing")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/bench/multi_fidelity"))
    args = parser.parse_args()
    methods = [*args.methods, *(["random_asha_ray2"] if args.ray else [])]
    budgets = sorted(args.budgets)
    out = args.out or Path(f"outputs/bench/multi_fidelity_{args.task}.json")
    results = []
    for seed in args.seeds:
        print(f"seed {seed}: {', '.join(methods)}, {max(budgets):.0f} s each ...", flush=True)
        results.append(run_seed(args.work_dir.resolve(), task=args.task, seed=seed, methods=methods,
                                budgets=budgets, epochs=args.epochs,
                                min_epochs=args.min_epochs, measure_only=args.measure_only))
        summary = summarise(results, methods, budgets)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"task": args.task, "budgets": budgets, "seeds": args.seeds,
                                        "methods": methods, "epochs": args.epochs,
                                        "min_epochs": args.min_epochs,
                                        "summary": summary, "results": results}, indent=1))
    print_table(summary, methods, len(results), args.task)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
