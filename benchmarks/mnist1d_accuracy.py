"""MNIST-1D accuracies: the paper's MLP and 1-D CNN, dense and at 90% sparsity, 3 seeds.

MNIST-1D (Greydanus, arXiv 2011.14439) is generated offline with the paper's arguments
(``sparsearch.data.load_mnist1d_splits``: 4000 train / 1000 test as published; our val
split is 20% of the 4000, so we train on 3200). Models as in the paper: MLP 40-100-100-10
(``model=mlp model.hidden=[100,100]``) and the 3-layer Conv1d net with 25 channels
(``model=cnn1d``). Training through the product path (``sparsearch.evaluate``): Adam,
lr 1e-2, batch 100, ``--epochs`` epochs (the paper: 6000 steps of 100 on 4000 samples,
i.e. 150 epochs). The sparse point is unstructured 90% by the ``gradual`` recipe with
``global`` allocation. The paper reports about 68% (MLP) and 94% (CNN) test accuracy.

    python benchmarks/mnist1d_accuracy.py [--seeds 3] [--epochs 150] [--out outputs/bench/mnist1d_accuracy.json]

Prints a table (min / median / max of test accuracy over seeds) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from sparsearch.data import load_mnist1d_splits
from sparsearch.evaluate import EvalContext, accuracy_on_test, evaluate
from sparsearch.spec import SubnetSpec

MODELS = {"mlp": {"kind": "mlp", "hidden": [100, 100], "dropout": 0.0},
          "cnn1d": {"kind": "cnn1d", "channels": [25, 25, 25]}}
PAPER = {"mlp": 0.68, "cnn1d": 0.94}
POINTS = {"dense": SubnetSpec(pattern="dense"),
          "90% unstructured (gradual, global)": SubnetSpec(
              pattern="unstructured", sparsity=0.9, allocation="global", recipe="gradual")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/mnist1d_accuracy.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_mnist1d_splits()
    load_before = os.getloadavg()
    rows = []
    started = time.perf_counter()
    for model_name, model in MODELS.items():
        for point, spec in POINTS.items():
            accs, vals, train_s = [], [], []
            for seed in range(args.seeds):
                ctx = EvalContext(data=data, model=model, seed=seed,
                                  train={"epochs": args.epochs, "lr": 1e-2, "weight_decay": 0.0,
                                         "optimizer": "adam", "batch_size": 100})
                result, trained = evaluate(spec, ctx)
                if trained is None:
                    raise SystemExit(f"{model_name} {point} seed {seed} failed: {result.reason}")
                accs.append(accuracy_on_test(trained, data))
                vals.append(result.metrics["accuracy"])
                train_s.append(result.metrics["train_s"])
            rows.append({"model": model_name, "point": point, "paper_test_acc": PAPER[model_name],
                         "test_acc": accs, "val_acc": vals, "train_s": train_s,
                         "density": result.metrics["density"]})
            print(f"{model_name:<6} {point:<36} test acc min {min(accs):.3f} "
                  f"median {statistics.median(accs):.3f} max {max(accs):.3f} "
                  f"(paper ~{PAPER[model_name]:.2f}), density {result.metrics['density']:.3f}, "
                  f"train s median {statistics.median(train_s):.1f}", flush=True)
    report = {"epochs": args.epochs, "seeds": args.seeds, "train_samples": len(data.train[1]),
              "rows": rows, "wall_s": time.perf_counter() - started,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"load average before {load_before}, after {report['loadavg_after']}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
