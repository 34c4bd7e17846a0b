"""Search strategies judged on *test* hypervolume, with paired bootstrap intervals.

Issue 10's benchmark. Per task (``--task digits``: the MLP on scikit-learn's digits;
``mnist1d``: the 1-D CNN on MNIST-1D) and seed it judges random, tpe, random_asha (random
search with MO-ASHA early stopping), dass and dass_tpe, each one run of the real command in
its own process, run dir and MLflow database, sharing ``benchmarks/multi_fidelity.py``'s
folders and settings (``--work-dir``): runs that folder already holds for the seed (from
``multi_fidelity.py``) are reused, the others (by default always dass and dass_tpe) are run
here, two at a time (one torch thread each on two cores, so both see the same load);
with an odd number to run, dass_tpe runs beside the sweep. The
ablation ``sweep`` asks whether the supernet adds anything: in process and without a
supernet, it trains every subnet DASS trained in the same seed (in DASS's order) again as
unstructured uniform and ERK specs at that subnet's density, with that subnet's own training
values (recipe, knobs, lr): DASS less the supernet's choice of pattern and allocation.

A strategy's front at budget t is the val-Pareto front of its trials completed by t
(seconds since its parent run started; the sweep's own clock); its *test* hypervolume
scores that front with each member's test accuracy (reference: accuracy 0, density 1, the
same for all). Per budget the table gives each strategy's mean test hypervolume and the
paired bootstrap 95% interval of its difference to random over seeds (seeds resampled
together). The goal of issue 10, scaled to the largest budget B: dass or dass_tpe at least
random's at every budget, and reaching random's hypervolume at B by B/3 on 4 of 5 seeds.

    python benchmarks/search_quality.py [--task digits] [--seeds 0 1 2 3 4]
        [--budgets 60 120 180] [--run dass dass_tpe] [--dass search.dass.KEY=VALUE ...]
        [--no-sweep]
        [--out outputs/bench/search_quality_<task>.json]

Takes about (len(--run) / 2 x max(budgets) + the sweep + a minute) per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import multi_fidelity as mf  # noqa: E402

METHODS = ["random", "tpe", "random_asha", "dass", "dass_tpe"]
REFERENCE = [0.0, 1.0]  # accuracy max, density min
BOOTSTRAP = 2000
# DASS as in the digits_dass_vs_random preset, over the whole space (one choice of
# (pattern, allocation, sparsity) per layer set), derived subnets trained from scratch with
# the supernet's choices (inherit=none: the ablation of the last round found it ahead of
# inheriting masks and weights, -0.008 [-0.014, -0.003] for weights on digits at 60 s).
DASS = ["search.dass.supernet=space", "search.dass.levels=6",
        "search.dass.lambdas=[32.0,16.0,8.0,4.0,2.0,1.0,0.0]", "search.dass.cost=density",
        "search.dass.warmup_epochs=2", "search.dass.search_epochs=3",
        "search.dass.finetune_epochs=1", "search.dass.batch_size=256",
        "search.dass.alpha_lr=0.1", "search.dass.derive=argmax", "search.dass.inherit=none"]
# Ablations of DASS's settings, run like dass with these overrides in place of its own.
DASS_VARIANTS = {"dass_weights": ["search.dass.inherit=weights"],
                 # the ablation of the training-value probe (search.dass.probe)
                 "dass_noprobe": ["search.dass.probe=false"],
                 # dass_tpe's subnets on the supernet's grid, not at their target density
                 "dass_tpe_grid": ["search.dass.exact_target=false"]}


def dass_overrides(method: str, dass: list[str]) -> list[str]:
    """The overrides of a DASS method: ``dass`` with a variant's own values in their place."""
    variant = DASS_VARIANTS.get(method, [])
    keys = {o.partition("=")[0] for o in variant}
    return [o for o in dass if o.partition("=")[0] not in keys] + variant


def _test_hypervolume(members: list[dict[str, float]]) -> float:
    """Test hypervolume of the val front of members (accuracy, density, test_accuracy)."""
    from sparsearch.pareto import hypervolume, pareto_front

    front = [members[i] for i in pareto_front([[m["accuracy"], m["density"]] for m in members],
                                              ["max", "min"])]
    return hypervolume([[m["test_accuracy"], m["density"]] for m in front], REFERENCE,
                       ["max", "min"])


def _sweep_trials(run_dir: Path, budget_s: float) -> list[dict[str, Any]]:
    """The ablation: every subnet DASS trained, in DASS's order, trained again without the
    supernet's choice of pattern and allocation: unstructured at its global target sparsity
    (1 - N/M for N:M, so the same density), with uniform and with ERK allocation, and with
    its own training values (recipe, knobs, lr; so the probe's and the refinement's
    trainings too). A spec already trained is not trained again (same seed, same result)."""
    from optuna.trial import TrialState

    from sparsearch.evaluate import accuracy_on_test, evaluate
    from sparsearch.search.dass.plan import fixed_values
    from sparsearch.search.setup import prepare_search
    from sparsearch.search.study import load_run_study, trial_key
    from sparsearch.search.trial import trial_dir
    from sparsearch.spec import SubnetSpec

    setup = prepare_search(mf.method_config(run_dir, "dass"), run_dir / "dass")
    study = load_run_study(run_dir / "dass", mf.NAME)
    done = sorted((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
                  key=lambda t: t.datetime_complete)
    # The space's own layer rules (a dense first layer, ...), as random search draws them.
    layers = setup.space.to_spec({**fixed_values(setup.space, dict(setup.cfg.search.dass.fixed)),
                                  "pattern": "unstructured", "sparsity": 0.5}).layers
    started, out, seen = time.time(), [], set()
    for t in done:
        trained = SubnetSpec.from_dict(json.loads(
            (trial_dir(run_dir / "dass", trial_key(t)) / "spec.json").read_text()))
        if trained.recipe == "inherited":
            raise SystemExit("the sweep ablation retrains from scratch: run DASS with "
                             "search.dass.inherit=none")
        if trained.pattern == "dense":
            continue
        # The subnet's own global target, not 1 - its measured density: layers the space
        # keeps dense count in the density, so that would train a denser subnet.
        sparsity = trained.target_sparsity
        for allocation in ("uniform", "erk"):
            if time.time() - started >= budget_s:
                return out
            spec = replace(trained, pattern="unstructured", nm=None, block=None,
                           allocation=allocation, sparsity=round(sparsity, 4),
                           layers=layers,
                           options={k: v for k, v in trained.options.items()
                                    if k.startswith(trained.recipe + ".")})
            if spec.digest() in seen:
                continue
            seen.add(spec.digest())
            result, model = evaluate(spec, setup.ctx)
            if result.status == "complete" and model is not None:
                out.append({"s": time.time() - started, "accuracy": result.metrics["accuracy"],
                            "density": result.metrics["density"],
                            "test_accuracy": accuracy_on_test(model, setup.ctx.data)})
    return out


def run_seed(work: Path, *, task: str, seed: int, budgets: list[float], methods: list[str],
             run: list[str], epochs: int, min_epochs: int, dass: list[str],
             sweep: bool = True) -> dict[str, Any]:
    run_dir = work / task / f"seed{seed}"
    recorded = (json.loads((run_dir / "overrides.json").read_text())
                if (run_dir / "overrides.json").exists() else {})
    todo = [m for m in methods if m in run or not (run_dir / m / "pareto.json").exists()]
    for m in methods:
        if m not in todo and f"train.epochs={epochs}" not in recorded.get(m, []):
            raise SystemExit(f"{run_dir / m} was run with other settings than --epochs "
                             f"{epochs}; run it again with --run {m}")
    kwargs = {"task": task, "seed": seed, "timeout_s": max(budgets), "epochs": epochs,
              "min_epochs": min_epochs}
    for m in todo:
        mf.prepare_seed(run_dir, [m], **kwargs,
                        extra=dass_overrides(m, dass) if m.startswith("dass") else [])
    # With an odd number to run, dass_tpe runs last, beside the sweep (in this process; it
    # needs dass's densities), so every wave keeps both cores busy with two single-threaded
    # searches; else the sweep runs alone after the pairs.
    beside_sweep = ("dass_tpe" if sweep and "dass_tpe" in todo and "dass" in methods
                    and len(todo) % 2 else None)
    load, codes = [os.getloadavg()], {}
    for wave in mf.waves_of([m for m in todo if m != beside_sweep]):
        # Exit 3: DASS completed no subnet (an empty front, hypervolume 0), not a crash.
        codes.update(mf.run_wave(run_dir, wave, ok=(0, 3)))
        load.append(os.getloadavg())
    trials = {m: (mf.measure(run_dir, m, budgets, rung=min_epochs, rung_pairs=False)["trials"]
                  if codes.get(m, 0) == 0 else []) for m in methods if m != beside_sweep}
    partner = mf.start_method(run_dir, beside_sweep) if beside_sweep else None
    if sweep:
        trials["sweep"] = _sweep_trials(run_dir, max(budgets))
    if partner is not None and beside_sweep is not None:
        code = partner.wait()
        if code not in (0, 3):
            tail = (run_dir / f"{beside_sweep}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{beside_sweep} failed:\n{tail}")
        trials[beside_sweep] = (mf.measure(run_dir, beside_sweep, budgets, rung=min_epochs,
                                           rung_pairs=False)["trials"] if code == 0 else [])
    load.append(os.getloadavg())
    return {"seed": seed, "ran": todo, "load": load, "trials": trials,
            "test_hypervolume": {s: {str(int(b)): _test_hypervolume([m for m in ms
                                                                     if m["s"] <= b])
                                     for b in budgets} for s, ms in trials.items()}}


def paired_bootstrap(diffs: list[float], *, seed: int = 0) -> tuple[float, float]:
    """95% interval of the mean of paired differences, seeds resampled with replacement."""
    rng = random.Random(seed)
    means = sorted(statistics.mean(rng.choices(diffs, k=len(diffs)))
                   for _ in range(BOOTSTRAP))
    return means[int(0.025 * BOOTSTRAP)], means[int(0.975 * BOOTSTRAP) - 1]


def summarise(results: list[dict[str, Any]], budgets: list[float], *,
              target_budget: float | None = None) -> dict[str, Any]:
    strategies = list(results[0]["test_hypervolume"])
    summary: dict[str, Any] = {"budgets": {}}
    for b in budgets:
        key, row = str(int(b)), {}
        for s in strategies:
            hvs = [r["test_hypervolume"][s][key] for r in results]
            diffs = [r["test_hypervolume"][s][key] - r["test_hypervolume"]["random"][key]
                     for r in results]
            row[s] = {"test_hypervolume_mean": statistics.mean(hvs), "per_seed": hvs,
                      "minus_random_mean": statistics.mean(diffs),
                      "minus_random_ci95": paired_bootstrap(diffs)}
        summary["budgets"][key] = row
    top = target_budget or max(budgets)
    early = top / 3
    goal = {}
    for s in [s for s in strategies if s != "random"]:
        # The first time its test hypervolume reaches random's at the target budget.
        reached = []
        for r in results:
            target = _test_hypervolume([m for m in r["trials"]["random"] if m["s"] <= top])
            times = sorted(m["s"] for m in r["trials"][s])
            hit = next((t for t in times if _test_hypervolume(
                [m for m in r["trials"][s] if m["s"] <= t]) >= target), None)
            reached.append(hit)
        goal[s] = {"reached_random_final_s": reached,
                   "seeds_within_a_third": sum(1 for t in reached
                                               if t is not None and t <= early),
                   "at_least_random_every_budget": all(
                       summary["budgets"][str(int(b))][s]["minus_random_mean"] >= 0
                       for b in budgets)}
    summary["goal"] = goal
    summary["target_budget"] = top
    loads = [x[0] for r in results for x in r["load"]]
    summary["load_1min"] = {"min": min(loads), "median": statistics.median(loads),
                            "max": max(loads)}
    return summary


def print_table(summary: dict[str, Any], *, task: str, seeds: int,
                budgets: list[float]) -> None:
    print(f"\n{task}, {seeds} seed(s): test hypervolume of the val front "
          f"(reference accuracy 0, density 1)")
    print(f"{'budget s':>9} {'strategy':>11} {'test HV':>9} {'minus random [95% CI]':>32}")
    for key, row in summary["budgets"].items():
        for s, v in row.items():
            lo, hi = v["minus_random_ci95"]
            print(f"{key:>9} {s:>11} {v['test_hypervolume_mean']:>9.4f} "
                  f"{v['minus_random_mean']:>+9.4f} [{lo:+.4f}, {hi:+.4f}]")
    top = summary["target_budget"]
    print(f"reaching random's {top:.0f} s test hypervolume by "
          f"{top / 3:.0f} s (seeds), and at least random's mean at every budget:")
    for s, g in summary["goal"].items():
        reached = ", ".join("-" if t is None else f"{t:.0f}" for t in g["reached_random_final_s"])
        print(f"  {s:>11}: {g['seeds_within_a_third']} of {seeds} [{reached} s]; "
              f"every budget: {g['at_least_random_every_budget']}")
    load = summary["load_1min"]
    print(f"1-min load average: min {load['min']:.2f}, median {load['median']:.2f}, "
          f"max {load['max']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(mf.TASKS), default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=float, nargs="+", default=[60.0, 120.0, 180.0])
    parser.add_argument("--methods", nargs="+", default=METHODS,
                        help="the strategies judged (random first: the baseline)")
    parser.add_argument("--run", nargs="*", default=["dass", "dass_tpe"],
                        help="methods to run even when the work dir holds them")
    parser.add_argument("--dass", nargs="*", default=DASS,
                        help="overrides for dass and dass_tpe (search.dass.KEY=VALUE)")
    parser.add_argument("--no-sweep", action="store_true",
                        help="leave out the sweep ablation (it runs alone, up to the largest "
                             "budget per seed)")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--min-epochs", type=int, default=1)
    parser.add_argument("--target-budget", type=float,
                        help="the goal's budget: random's test hypervolume there is the target "
                             "(default the largest budget; random's runs must last that long)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/bench/multi_fidelity"))
    args = parser.parse_args()
    budgets = sorted(args.budgets)
    out = args.out or Path(f"outputs/bench/search_quality_{args.task}.json")
    results = []
    for seed in args.seeds:
        print(f"seed {seed}: {', '.join(args.methods)} and the sweep ...", flush=True)
        results.append(run_seed(args.work_dir.resolve(), task=args.task, seed=seed,
                                budgets=budgets, methods=args.methods, run=args.run, epochs=args.epochs,
                                min_epochs=args.min_epochs, dass=args.dass,
                                sweep=not args.no_sweep))
        summary = summarise(results, budgets, target_budget=args.target_budget)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"task": args.task, "budgets": budgets, "seeds": args.seeds,
                                   "dass": args.dass, "summary": summary, "results": results},
                                  indent=1))
    print_table(summary, task=args.task, seeds=len(results), budgets=budgets)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
