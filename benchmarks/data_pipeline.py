"""Data pipeline: training samples/s and peak memory of in-memory and streamed image folders.

Writes a folder of generated PNG images (``--images``, 10 classes, ``--size`` pixels) and
trains the small CNN (``model=cnn``, channels 8/16/16) for ``--epochs`` epochs through the
product path (``sparsearch.data.load_imagefolder_splits`` then ``iterate_batches``) in four
configurations: in memory, and streamed from disk (``data.max_memory_mb`` below the set's
size) with 0, 1 and 2 DataLoader workers. Each configuration runs in a fresh process, so
its peak RSS (its own plus its workers') is its own. Samples/s counts training samples
per second of each epoch (min / median / max over epochs); load_s is the time to build the
splits (reading every image for the in-memory path).

    python benchmarks/data_pipeline.py [--images 3000] [--size 32] [--epochs 3]
        [--out outputs/bench/data_pipeline.json]

Prints a table and writes JSON (with os.getloadavg() before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {"in memory": {"max_memory_mb": None, "workers": 0},
           "streamed, 0 workers": {"max_memory_mb": 0.001, "workers": 0},
           "streamed, 1 worker": {"max_memory_mb": 0.001, "workers": 1},
           "streamed, 2 workers": {"max_memory_mb": 0.001, "workers": 2}}


def write_images(root: Path, *, count: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    if root.is_dir() and sum(1 for _ in root.rglob("*.png")) == count:
        return
    rng = np.random.RandomState(0)
    for i in range(count):
        label = i % 10
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        # a class-dependent mean colour plus noise: learnable, yet every file differs
        pixels = rng.randint(0, 128, size=(size, size, 3)) + label * 12
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:05d}.png")


def run_one(root: Path, config: str, epochs: int, size: int) -> dict:
    import torch

    from sparsearch.data import iterate_batches, load_imagefolder_splits
    from sparsearch.models import create_model
    from sparsearch.train import TrainSettings, make_optimizer, train_epoch

    torch.set_num_threads(1)
    # the imports' share of the peak, so the data's own share can be read off
    imports_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    splits = load_imagefolder_splits(root, val_fraction=0.1, test_fraction=0.1, seed=0,
                                     image_size=size, **CONFIGS[config])
    load_s = time.perf_counter() - started
    torch.manual_seed(0)
    model = create_model("cnn", in_shape=splits.in_shape, num_classes=10, channels=(8, 16, 16))
    optimizer = make_optimizer(model.parameters(), TrainSettings(lr=1e-2))
    generator = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(epochs):
        began = time.perf_counter()
        train_epoch(model, iterate_batches(splits.train, 64, generator=generator), optimizer)
        rates.append(len(splits.train[1]) / (time.perf_counter() - began))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"config": config, "load_s": load_s, "samples_per_s": rates,
            "train_samples": len(splits.train[1]),
            # ru_maxrss is in KiB on Linux; workers are children of this process
            "peak_rss_mb": own / 1024, "rss_after_imports_mb": imports_mb,
            "peak_rss_workers_mb": children / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--root", type=Path, default=Path("outputs/bench/imagefolder"))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/data_pipeline.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.root, args.one, args.epochs, args.size)))
        return
    write_images(args.root, count=args.images, size=args.size)
    load_before = os.getloadavg()
    rows = []
    for config in CONFIGS:
        result = subprocess.run([sys.executable, __file__, "--one", config, "--root",
                                 str(args.root), "--epochs", str(args.epochs), "--size",
                                 str(args.size)], capture_output=True, text=True, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(row)
        rates = row["samples_per_s"]
        print(f"{config:<22} load {row['load_s']:6.2f} s   samples/s min {min(rates):7.0f} "
              f"median {statistics.median(rates):7.0f} max {max(rates):7.0f}   peak RSS "
              f"{row['peak_rss_mb']:6.0f} MB ({row['rss_after_imports_mb']:.0f} after imports; "
              f"children {row['peak_rss_workers_mb']:4.0f} MB)",
              flush=True)
    base = statistics.median(rows[0]["samples_per_s"])
    for row in rows[1:]:
        print(f"{row['config']:<22} {statistics.median(row['samples_per_s']) / base:.2f}x the "
              f"in-memory samples/s")
    report = {"images": args.images, "size": args.size, "epochs": args.epochs, "rows": rows,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"load average before {load_before}, after {report['loadavg_after']}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
