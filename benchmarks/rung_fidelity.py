"""Does a rung's accuracy pick the trials that end best? Current masks against final masks.

ASHA (``search.scheduler=asha``) ranks a trial at a rung on the val accuracy of that epoch
beside the subnet's *final* density. A recipe that trains dense first (one_shot, gradual)
has a dense network's accuracy there (``search.rung_masks=current``, the default);
``search.rung_masks=final`` measures the subnet pruned to its final masks at that point
instead. This trains ``--trials`` random specs of the task's space (Optuna's RandomSampler,
seeded) for all their epochs with a report that never stops them, recording both
measurements per epoch, and gives for each rung and measurement: the Spearman rank
correlation with the final val accuracy, how many of the final val front (accuracy vs
density) the rung's MO-ASHA cut (best third in ``sparsearch.schedulers`` order) keeps, and
the recipe shares of that cut.

``--pool FILE ...`` replays such runs instead: one worker's ASHA (each measurement) and
random search at equal *epoch* budgets over shuffles of the pool, scored by the test
hypervolume of the val front. ``--trial-cost`` charges what a trial costs besides its epochs
(model build, MLflow run, Optuna: about 0.11 s per trial against 0.15 s per epoch on
MNIST-1D, from a profile of a local ASHA search), which a real run pays once per trial,
stopped or not.

    python benchmarks/rung_fidelity.py [--task mnist1d] [--trials 80] [--seed 0]
        [--epochs 9] [--rungs 1 3] [--out outputs/bench/rung_fidelity_<task>.json]
    python benchmarks/rung_fidelity.py --pool outputs/bench/rung_fidelity_mnist1d.json
        [--budgets 10 25 50] [--orders 20]

Takes about four minutes for 250 MNIST-1D trials on one core; a replay of 250 trials at 3
budgets and 20 orders about 90 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multi_fidelity as mf  # noqa: E402

MEASURES = {"current masks": "val_accuracy", "final masks": "val_accuracy_at_target"}


def compose(task: str, seed: int, epochs: int) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from sparsearch.config import register_configs

    register_configs()
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose("config", overrides=[
            *mf.TASKS[task], f"seed={seed}", f"train.epochs={epochs}", "train.threads=1"]))


def train_trials(task: str, *, trials: int, seed: int, epochs: int) -> list[dict[str, Any]]:
    """Each trial's recipe, density, per-epoch series of both measurements, final accuracy."""
    import optuna

    from sparsearch.evaluate import accuracy_on_test, evaluate
    from sparsearch.search.setup import prepare_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        setup = prepare_search(compose(task, seed, epochs), Path(tmp))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(trials):
        spec = setup.space.sample(study.ask())
        series: dict[str, dict[int, float]] = {}

        def log(key: str, value: float, step: int, series: Any = series) -> None:
            series.setdefault(key, {})[step] = value

        # rung_masks=final logs both measurements (val_accuracy_at_target beside
        # val_accuracy); a report that never stops leaves training as without a scheduler.
        result, model = evaluate(spec, replace(setup.ctx, rung_masks="final"),
                                 report=lambda epoch, metrics: False, log_metric=log)
        if result.status != "complete" or model is None:
            continue
        out.append({"recipe": spec.recipe, "density": result.metrics["density"],
                    "final": result.metrics["accuracy"], "train_s": result.metrics["train_s"],
                    "test": accuracy_on_test(model, setup.ctx.data),
                    **{m: series[m] for m in MEASURES.values()}})
    return out


def judge(trials: list[dict[str, Any]], rungs: list[int]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    from sparsearch.pareto import pareto_front
    from sparsearch.schedulers import mo_order

    finals = [[t["final"], t["density"]] for t in trials]
    front = set(pareto_front(finals, ["max", "min"]))
    everyone = Counter(t["recipe"] for t in trials)
    out: dict[str, Any] = {"trials": len(trials), "final_front": len(front),
                           "recipes": {r: n / len(trials) for r, n in everyone.items()},
                           "rungs": {}}
    for rung in rungs:
        row = {}
        for label, metric in MEASURES.items():
            at = [t[metric][rung] for t in trials]
            order = mo_order([[a, t["density"]] for a, t in zip(at, trials)], ["max", "min"],
                             keys=list(range(len(trials))))
            kept = order[:math.ceil(len(trials) / 3)]
            shares = Counter(trials[i]["recipe"] for i in kept)
            row[label] = {
                "spearman": float(spearmanr(at, [t["final"] for t in trials]).statistic),
                "front_kept": len(front & set(kept)),
                "recipes_kept": {r: n / len(kept) for r, n in shares.items()}}
        out["rungs"][str(rung)] = row
    return out


def _at(series: dict[Any, float], epoch: int) -> float:
    return series[str(epoch)] if str(epoch) in series else series[epoch]


def replay_asha(trials: list[dict[str, Any]], order: list[int], metric: str, budget: float, *,
                rungs: list[int], max_epochs: int, eta: int, trial_cost: float) -> list[int]:
    """The trials one worker completes within ``budget`` epochs under ASHA, in ``order``.

    The local runner's ASHA with the pool's recorded series: each trial runs to its next
    rung, is ranked there against the trials that reached it before (``survives``), and
    stops or goes on; the next trial starts when it ends, ``trial_cost`` epochs later.
    """
    from sparsearch.schedulers import survives

    records: dict[int, dict[int, tuple[float, float]]] = {r: {} for r in rungs}
    spent, done = 0.0, []
    for i in order:
        epoch = 0
        spent += trial_cost
        for rung in [*rungs, max_epochs]:
            if spent + rung - epoch > budget:
                return done
            spent, epoch = spent + rung - epoch, rung
            if rung == max_epochs:
                done.append(i)
                break
            records[rung][i] = (_at(trials[i][metric], rung), trials[i]["density"])
            if not survives(records[rung], i, directions=["max", "min"], eta=eta):
                break
    return done


def replay(trials: list[dict[str, Any]], *, budgets: list[int], epochs: int, min_epochs: int,
           eta: int, orders: int, trial_cost: float = 0.0) -> dict[str, Any]:
    """Test hypervolume of the val front of random and of ASHA (each rung measure) at equal
    epoch budgets (``budgets`` in full trials' worth), over ``orders`` shuffles of the pool;
    every trial started costs ``trial_cost`` epochs more (its fixed cost)."""
    import random

    from sparsearch.pareto import hypervolume, pareto_front
    from sparsearch.schedulers import rung_epochs

    def test_hv(done: list[int]) -> float:
        front = [done[j] for j in pareto_front(
            [[trials[i]["final"], trials[i]["density"]] for i in done], ["max", "min"])]
        return hypervolume([[trials[i]["test"], trials[i]["density"]] for i in front],
                           [0.0, 1.0], ["max", "min"])

    rungs = rung_epochs(first=min_epochs, max_epochs=epochs, eta=eta)
    methods = ["random", *(f"asha, {label}" for label in MEASURES)]
    out: dict[str, Any] = {"rungs": rungs, "trial_cost": trial_cost, "budgets": {}}
    for budget in budgets:
        hvs: dict[str, list[float]] = {m: [] for m in methods}
        for k in range(orders):
            order = random.Random(k).sample(range(len(trials)), len(trials))
            hvs["random"].append(test_hv(order[:int(budget * epochs / (epochs + trial_cost))]))
            for label, metric in MEASURES.items():
                hvs[f"asha, {label}"].append(test_hv(replay_asha(
                    trials, order, metric, budget * epochs, rungs=rungs, max_epochs=epochs,
                    eta=eta, trial_cost=trial_cost)))
        out["budgets"][str(budget)] = {m: {"mean": statistics.mean(v), "per_order": v}
                                       for m, v in hvs.items()}
    return out


def print_replay(name: str, result: dict[str, Any]) -> None:
    print(f"{name}: one worker, rungs {result['rungs']}, {result['trial_cost']} epochs' fixed "
          f"cost per trial; test hypervolume of the val front at "
          "equal epoch budgets (in full trials' worth), mean over shuffles of the pool, and "
          "ASHA minus random [2.5%, 97.5%] over the shuffles")
    for budget, row in result["budgets"].items():
        base = row["random"]["per_order"]
        cells = [f"random {row['random']['mean']:.4f}"]
        for m, r in row.items():
            if m == "random":
                continue
            diffs = sorted(a - b for a, b in zip(r["per_order"], base))
            lo, hi = diffs[int(0.025 * len(diffs))], diffs[int(0.975 * len(diffs)) - 1]
            cells.append(f"{m} {r['mean']:.4f} ({statistics.mean(diffs):+.4f} "
                         f"[{lo:+.4f}, {hi:+.4f}])")
        print(f"{budget:>5} | " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(mf.TASKS), default="mnist1d")
    parser.add_argument("--trials", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--rungs", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--pool", type=Path, nargs="*", default=[],
                        help="replay these runs' JSON instead of training a new pool")
    parser.add_argument("--budgets", type=int, nargs="+", default=[10, 25, 50],
                        help="replay budgets, in full trials' worth of epochs")
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--trial-cost", type=float, default=0.0,
                        help="replay: each trial's fixed cost in epochs (model build, MLflow "
                             "run, Optuna; about 0.75 on MNIST-1D, from a profile)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.pool:
        for path in args.pool:
            pool = json.loads(path.read_text())
            result = replay(pool["per_trial"], budgets=args.budgets, epochs=pool["epochs"],
                            min_epochs=args.rungs[0], eta=3, orders=args.orders,
                            trial_cost=args.trial_cost)
            print_replay(f"{path.name} ({len(pool['per_trial'])} trials)", result)
            pool.setdefault("replays", []).append(result)
            path.write_text(json.dumps(pool, indent=1))
        return
    load = os.getloadavg()
    started = time.time()
    trials = train_trials(args.task, trials=args.trials, seed=args.seed, epochs=args.epochs)
    summary = {"task": args.task, "seed": args.seed, "epochs": args.epochs,
               "load_1min_start_end": [load[0], os.getloadavg()[0]],
               "seconds": time.time() - started, **judge(trials, args.rungs), "per_trial": trials}
    print(f"{args.task}: {summary['trials']} random trials of {args.epochs} epochs, "
          f"{summary['final_front']} on the final val front; all trials' recipes: "
          + ", ".join(f"{r} {s:.0%}" for r, s in sorted(summary["recipes"].items())))
    print(f"{'rung':>4} | {'measured with':<13} | spearman | front kept by best third | "
          "recipes in the best third")
    for rung, row in summary["rungs"].items():
        for label, r in row.items():
            shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r["recipes_kept"].items()))
            print(f"{rung:>4} | {label:<13} | {r['spearman']:8.3f} | "
                  f"{r['front_kept']:>3} of {summary['final_front']:<3}{'':14} | {shares}")
    print(f"load 1-min {load[0]:.2f} -> {os.getloadavg()[0]:.2f}, {summary['seconds']:.0f} s")
    out = args.out or Path(f"outputs/bench/rung_fidelity_{args.task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
