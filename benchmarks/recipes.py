"""Recipe benchmark: test accuracy of every training recipe per sparsity pattern on digits.

Trains scikit-learn's digits MLP and small CNN (``sparsearch.models.create_model``) through
the product path (SubnetSpec -> SparsityPlan -> recipe, ``sparsearch.evaluate``) for
unstructured 50/75/90/95%, N:M 2:4, 1:4, 1:8, 1:16 and block 4x4 at 75%, with every
applicable recipe (the N:M-only recipes sr_ste, mdgf and sdgf run on N:M patterns) and
3 seeds. It reports mean +- std test accuracy, the gap to dense and the gap to random_init
(the same-density random mask, Farahani arXiv 2403.08265), and checks three claims from
the literature (papers.md): SR-STE >= one-shot at N:M (Zhou et al., arXiv 2102.04010),
gradual >= one-shot at 95% (Zhu & Gupta, arXiv 1710.01878) and ERK >= uniform at 90%
(RigL, arXiv 1911.11134).

    python benchmarks/recipes.py [--seeds 3] [--workers 2] [--out outputs/bench/recipes.json]

Prints a table and writes JSON. Takes about 10 minutes on 2 idle CPU cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from sparsearch.data import DataSplits, load_digits_splits
from sparsearch.evaluate import EvalContext, accuracy_on_test, evaluate
from sparsearch.spec import SubnetSpec

# (label, spec fields) of each pattern point.
PATTERNS: list[tuple[str, dict[str, Any]]] = [
    ("unstructured 50%", {"pattern": "unstructured", "sparsity": 0.50}),
    ("unstructured 75%", {"pattern": "unstructured", "sparsity": 0.75}),
    ("unstructured 90%", {"pattern": "unstructured", "sparsity": 0.90}),
    ("unstructured 95%", {"pattern": "unstructured", "sparsity": 0.95}),
    ("nm 2:4", {"pattern": "nm", "nm": "2:4"}),
    ("nm 1:4", {"pattern": "nm", "nm": "1:4"}),
    ("nm 1:8", {"pattern": "nm", "nm": "1:8"}),
    ("nm 1:16", {"pattern": "nm", "nm": "1:16"}),
    ("block 4x4 75%", {"pattern": "block", "block": "4x4", "sparsity": 0.75}),
]
GENERAL_RECIPES = ["one_shot", "gradual", "random_init", "scores"]
NM_RECIPES = ["sr_ste", "mdgf", "sdgf"]
# ERK against uniform (the default allocation) at one point.
ERK_POINT = ("unstructured 90% erk", {"pattern": "unstructured", "sparsity": 0.90,
                                      "allocation": "erk"})
ERK_RECIPES = ["one_shot", "gradual", "random_init"]
# Per model: kind, epochs, batch size, Adam learning rate (chosen so dense training
# converges on digits in seconds).
MODELS = {"mlp": {"epochs": 20, "batch_size": 128, "lr": 3e-3},
          "cnn": {"epochs": 12, "batch_size": 128, "lr": 3e-3}}


def grid() -> list[tuple[str, str, dict[str, Any]]]:
    """(point label, recipe, spec fields) of every sparse run, dense first."""
    runs = [("dense", "one_shot", {"pattern": "dense"})]
    for label, fields in PATTERNS:
        recipes = GENERAL_RECIPES + (NM_RECIPES if fields["pattern"] == "nm" else [])
        runs += [(label, recipe, fields) for recipe in recipes]
    runs += [(ERK_POINT[0], recipe, ERK_POINT[1]) for recipe in ERK_RECIPES]
    return runs


_DATA: DataSplits | None = None


def _init_worker(threads: int) -> None:
    global _DATA
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(threads)
    _DATA = load_digits_splits(seed=0)


def run_one(task: tuple[str, str, str, dict[str, Any], int]) -> dict[str, Any]:
    """Trains one subnet (in a worker) and returns its test accuracy, density and status."""
    kind, point, recipe, fields, seed = task
    assert _DATA is not None, "run_one runs in a worker started by _init_worker"
    settings = MODELS[kind]
    ctx = EvalContext(data=_DATA, model={"kind": kind},
                      train={"epochs": settings["epochs"], "lr": settings["lr"],
                             "weight_decay": 0.0, "optimizer": "adam",
                             "batch_size": settings["batch_size"]},
                      seed=seed, threads=torch.get_num_threads())
    spec = SubnetSpec(recipe=recipe, **fields)
    cpu_started = time.process_time()
    result, model = evaluate(spec, ctx)
    # CPU seconds, unlike train_s, do not grow when other processes share the cores.
    row = {"model": kind, "point": point, "recipe": recipe, "seed": seed,
           "status": result.status, "reason": result.reason,
           "train_s": result.metrics.get("train_s"),
           "cpu_s": time.process_time() - cpu_started}
    if model is not None:
        row.update(test_accuracy=accuracy_on_test(model, _DATA),
                   density=result.metrics["density"])
    return row


def summarise(runs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, float]]:
    """Mean and std of test accuracy per (model, point, recipe)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["model"], run["point"], run["recipe"]), []).append(run)
    out = {}
    for key, rows in groups.items():
        accs = [r["test_accuracy"] for r in rows if r["status"] == "complete"]
        out[key] = {"mean": statistics.mean(accs) if accs else float("nan"),
                    "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "n": len(accs),
                    "density": statistics.mean(r["density"] for r in rows
                                               if r["status"] == "complete") if accs else 1.0}
    return out


def table(summary: dict[tuple[str, str, str], dict[str, float]]) -> str:
    """Markdown table: accuracy, gap to dense and to random_init at the same point."""
    lines = ["| model | point | recipe | density | test acc (mean ± std) | vs dense | vs random_init |",
             "|---|---|---|---|---|---|---|"]
    for (model, point, recipe), s in summary.items():
        dense = summary[(model, "dense", "one_shot")]["mean"]
        rand = summary.get((model, point, "random_init"), {}).get("mean")
        vs_rand = "" if rand is None or recipe == "random_init" else f"{s['mean'] - rand:+.3f}"
        vs_dense = "" if point == "dense" else f"{s['mean'] - dense:+.3f}"
        lines.append(f"| {model} | {point} | {recipe} | {s['density']:.3f} | "
                     f"{s['mean']:.3f} ± {s['std']:.3f} | {vs_dense} | {vs_rand} |")
    return "\n".join(lines)


def claims(summary: dict[tuple[str, str, str], dict[str, float]],
           models: list[str]) -> dict[str, list[str]]:
    """Whether each literature claim holds here, per model and point (by mean accuracy)."""
    out: dict[str, list[str]] = {"sr_ste >= one_shot at N:M": [],
                                 "gradual >= one_shot at 95%": [],
                                 "erk >= uniform at 90%": []}

    def compare(key: str, model: str, a: tuple[str, str], b: tuple[str, str]) -> None:
        x, y = summary[(model, *a)]["mean"], summary[(model, *b)]["mean"]
        verdict = "holds" if x >= y else "fails"
        out[key].append(f"{model} {a[0]} {a[1]} {x:.3f} vs {b[0]} {b[1]} {y:.3f}: {verdict}")

    for model in models:
        for label, fields in PATTERNS:
            if fields["pattern"] == "nm":
                compare("sr_ste >= one_shot at N:M", model, (label, "sr_ste"),
                        (label, "one_shot"))
        compare("gradual >= one_shot at 95%", model, ("unstructured 95%", "gradual"),
                ("unstructured 95%", "one_shot"))
        for recipe in ERK_RECIPES:
            compare("erk >= uniform at 90%", model, (ERK_POINT[0], recipe),
                    ("unstructured 90%", recipe))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per point")
    parser.add_argument("--workers", type=int, default=2,
                        help="parallel training processes (one per core)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/recipes.json"))
    args = parser.parse_args(argv)
    for key in ("seeds", "workers", "threads"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be >= 1, got {getattr(args, key)}")

    tasks = [(kind, point, recipe, fields, seed)
             for kind in args.models for point, recipe, fields in grid()
             for seed in range(args.seeds)]
    started = time.perf_counter()
    # Small models train fastest with one thread per process and one process per core.
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(args.threads,)) as pool:
        runs = list(pool.map(run_one, tasks))
    for row in runs:
        if row["status"] != "complete":
            print(f"{row['model']} {row['point']} {row['recipe']} seed {row['seed']}: "
                  f"{row['status']} ({row['reason']})", file=sys.stderr)
    wall_s = time.perf_counter() - started
    summary = summarise(runs)
    verdicts = claims(summary, args.models)

    print(table(summary))
    for key, lines in verdicts.items():
        print(f"\n{key}:")
        for line in lines:
            print(f"  {line}")
    cpu_s = sum(row["cpu_s"] for row in runs)
    print(f"\n{len(runs)} runs in {wall_s:.0f} s wall, {cpu_s:.0f} CPU s "
          f"({args.workers} workers x {args.threads} threads)")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "settings": {"models": {k: MODELS[k] for k in args.models}, "seeds": args.seeds,
                     "workers": args.workers, "threads": args.threads, "optimizer": "adam",
                     "data": "digits"},
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "runs": runs,
        "summary": [{"model": m, "point": p, "recipe": r, **s}
                    for (m, p, r), s in summary.items()],
        "claims": verdicts,
    }, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
