"""Search strategies judged on *test* hypervolume, with paired bootstrap intervals.

Issue 10's benchmark (a skeleton: digits only; MNIST-1D, ``dass_tpe`` and the
multi-fidelity baseline are not built yet). Per seed it runs the real command
``python -m sparsearch +experiment=digits_dass_vs_random search.strategy=S`` for each
strategy S of random, tpe and dass (``--dass`` adds DASS overrides, e.g.
``search.dass.supernet=space search.dass.inherit=weights``), in processes of their own,
after one shared dense baseline. The ablation ``sweep`` asks whether the supernet adds
anything: it trains, in process and without a supernet, uniform and ERK unstructured
specs at the densities DASS derived in the same seed (in DASS's order), with DASS's
recipe and lr.

A strategy's front at budget t is the val-Pareto front of its trials completed by t
(seconds since its parent run started); its *test* hypervolume scores that front with each
member's test accuracy (reference: accuracy 0, density 1, the same for all). Per budget
the table gives each strategy's mean test hypervolume and the paired bootstrap 95%
interval of its difference to random over seeds (seeds resampled together, so machine
drift common to a seed cancels).

    python benchmarks/search_quality.py [--seeds 0 1 2 3 4] [--budgets 60 180 600]
        [--dass search.dass.supernet=space ...] [--out outputs/bench/search_quality.json]

Takes about (3 x max(budgets) + the sweep + 60 s) per seed on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

EXPERIMENT = "digits_dass_vs_random"
COMMAND_STRATEGIES = ("random", "tpe", "dass")
REFERENCE = [0.0, 1.0]  # accuracy max, density min
BOOTSTRAP = 2000


def _overrides(run_dir: Path, strategy: str, *, seed: int, timeout_s: float,
               dass: list[str]) -> list[str]:
    return [f"+experiment={EXPERIMENT}", f"hydra.run.dir={run_dir / strategy}",
            f"tracking.uri=sqlite:///{run_dir / 'mlflow.db'}", f"seed={seed}",
            f"search.timeout_s={timeout_s}", "search.compare=[]", f"search.strategy={strategy}",
            "export.enabled=false", *(dass if strategy == "dass" else [])]


def _setup(run_dir: Path, overrides: list[str]) -> Any:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from sparsearch.config import register_configs
    from sparsearch.search.setup import prepare_search

    register_configs()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = OmegaConf.to_object(compose("config", overrides=[
            o for o in overrides if not o.startswith("hydra.")]))
    run_dir.mkdir(parents=True, exist_ok=True)
    return prepare_search(cfg, run_dir)


def _test_hypervolume(members: list[tuple[float, float, float]]) -> float:
    """Test hypervolume of the val front of (val accuracy, density, test accuracy)."""
    from sparsearch.pareto import hypervolume

    front = [m for m in members
             if not any(o[0] >= m[0] and o[1] <= m[1] and (o[0] > m[0] or o[1] < m[1])
                        for o in members)]
    return hypervolume([[t, d] for _, d, t in front], REFERENCE, ["max", "min"])


def _command_trials(run_dir: Path, strategy: str, setup: Any) -> list[dict[str, Any]]:
    """Each complete trial: seconds since the parent run started, val acc, density, test acc."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from sparsearch.evaluate import accuracy_on_test
    from sparsearch.search.study import trial_key
    from sparsearch.search.trial import load_trial_model

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    parent = next(r for r in client.search_runs(
        [exp.experiment_id], filter_string="tags.`sparsearch.role` = 'search'")
        if r.data.params.get("strategy") == strategy)
    t0 = parent.info.start_time / 1000.0
    study = optuna.load_study(study_name=EXPERIMENT,
                              storage=f"sqlite:///{run_dir / strategy / 'optuna.db'}")
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state != TrialState.COMPLETE:
            continue
        model = load_trial_model(setup.ctx, run_dir / strategy, trial_key(t))
        out.append({"s": t.datetime_complete.timestamp() - t0, "accuracy": t.values[0],
                    "density": t.values[1], "test_accuracy": accuracy_on_test(model,
                                                                             setup.ctx.data)})
    return sorted(out, key=lambda m: m["s"])


def _sweep_trials(setup: Any, dass_trials: list[dict[str, Any]],
                  budget_s: float) -> list[dict[str, Any]]:
    """The ablation: DASS's derived densities, uniform and ERK, no supernet."""
    from sparsearch.evaluate import accuracy_on_test, evaluate
    from sparsearch.search.dass.plan import fixed_values
    from sparsearch.spec import SubnetSpec

    fixed = fixed_values(setup.space, dict(setup.cfg.search.dass.fixed))
    base = setup.space.to_spec({**fixed, "pattern": "unstructured", "sparsity": 0.5})
    started, out = time.time(), []
    for trial in dass_trials:
        for allocation in ("uniform", "erk"):
            if time.time() - started >= budget_s:
                return out
            spec: SubnetSpec = replace(base, allocation=allocation,
                                       sparsity=round(1.0 - trial["density"], 4))
            result, model = evaluate(spec, setup.ctx)
            if result.status == "complete" and model is not None:
                out.append({"s": time.time() - started, "accuracy": result.metrics["accuracy"],
                            "density": result.metrics["density"],
                            "test_accuracy": accuracy_on_test(model, setup.ctx.data)})
    return out


def run_seed(work: Path, *, seed: int, budgets: list[float], dass: list[str]) -> dict[str, Any]:
    run_dir = work / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    first = _overrides(run_dir, COMMAND_STRATEGIES[0], seed=seed, timeout_s=max(budgets),
                       dass=dass)
    from sparsearch.search.report import dense_baseline

    dense = dense_baseline(_setup(run_dir / COMMAND_STRATEGIES[0], first))
    trials: dict[str, list[dict[str, Any]]] = {}
    setups = {}
    # Alternate the order by seed, so slow drifts in machine load hit every strategy.
    order = list(COMMAND_STRATEGIES)
    random.Random(seed).shuffle(order)
    for strategy in order:
        overrides = _overrides(run_dir, strategy, seed=seed, timeout_s=max(budgets), dass=dass)
        setups[strategy] = _setup(run_dir / strategy, overrides)
        (run_dir / strategy / "dense.json").write_text(json.dumps(dense, indent=1))
        with (run_dir / f"{strategy}.log").open("w") as log:
            rc = subprocess.run([sys.executable, "-m", "sparsearch", *overrides], stdout=log,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"}).returncode
        # Exit 3: DASS completed no subnet (an empty front, hypervolume 0), not a crash.
        if rc not in (0, 3):
            tail = (run_dir / f"{strategy}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"seed {seed} {strategy} exited {rc}:\n{tail}")
        trials[strategy] = (_command_trials(run_dir, strategy, setups[strategy])
                            if rc == 0 else [])
    trials["sweep"] = _sweep_trials(setups["dass"], trials["dass"], max(budgets))
    return {"seed": seed, "order": order, "trials": trials,
            "test_hypervolume": {
                s: {str(int(b)): _test_hypervolume([(m["accuracy"], m["density"],
                                                     m["test_accuracy"])
                                                    for m in ms if m["s"] <= b])
                    for b in budgets} for s, ms in trials.items()}}


def paired_bootstrap(diffs: list[float], *, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of paired differences, seeds resampled with replacement."""
    rng = random.Random(seed)
    means = sorted(statistics.mean(rng.choices(diffs, k=len(diffs)))
                   for _ in range(BOOTSTRAP))
    return means[int(0.025 * BOOTSTRAP)], means[int(0.975 * BOOTSTRAP) - 1]


def summarise(results: list[dict[str, Any]], budgets: list[float]) -> dict[str, Any]:
    strategies = list(results[0]["test_hypervolume"])
    summary: dict[str, Any] = {}
    for b in budgets:
        key, row = str(int(b)), {}
        for s in strategies:
            hvs = [r["test_hypervolume"][s][key] for r in results]
            diffs = [r["test_hypervolume"][s][key] - r["test_hypervolume"]["random"][key]
                     for r in results]
            row[s] = {"test_hypervolume_mean": statistics.mean(hvs), "per_seed": hvs,
                      "minus_random_mean": statistics.mean(diffs),
                      "minus_random_ci95": paired_bootstrap(diffs)}
        summary[key] = row
    return summary


def print_table(summary: dict[str, Any], *, seeds: int) -> None:
    print(f"\ndigits_mlp, {seeds} seed(s): test hypervolume (reference accuracy 0, density 1)")
    print(f"{'budget s':>9} {'strategy':>9} {'test HV':>9} {'minus random [95% CI]':>32}")
    for key, row in summary.items():
        for s, v in row.items():
            lo, hi = v["minus_random_ci95"]
            print(f"{key:>9} {s:>9} {v['test_hypervolume_mean']:>9.4f} "
                  f"{v['minus_random_mean']:>+9.4f} [{lo:+.4f}, {hi:+.4f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 180.0, 600.0])
    parser.add_argument("--dass", nargs="*", default=[],
                        help="overrides for the dass strategy (search.dass.KEY=VALUE)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/search_quality.json"))
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/bench/search_quality"))
    args = parser.parse_args()
    budgets = sorted(args.budgets)
    results = []
    for seed in args.seeds:
        print(f"seed {seed}: {', '.join(COMMAND_STRATEGIES)} and the sweep, "
              f"{max(budgets):.0f} s each ...", flush=True)
        results.append(run_seed(args.work_dir.resolve(), seed=seed, budgets=budgets,
                                dass=args.dass))
        summary = summarise(results, budgets)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"budgets": budgets, "seeds": args.seeds,
                                        "dass": args.dass, "summary": summary,
                                        "results": results}, indent=1))
    print_table(summary, seeds=len(results))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
