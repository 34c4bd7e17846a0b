"""End-to-end export benchmark: exported sparse models against their dense selves.

Two models, built with ``sparsearch.models.create_model``: a 4096-wide MLP (4096 -> 4096
-> 4096 -> 4096 -> 1000) and timm's ``vit_tiny_patch16_224`` at img_size 32 (no pretrained
weights). Each is pruned on every Linear/Conv2d at 95% block 32x32, 90% unstructured, 1:8
and 50% channel (sparsearch's own masks, baked in), exported with
``sparsearch.export.save`` (which measures the per-layer dispatch on this machine, checks
the whole model, and turns channel sparsity into smaller layers) and loaded back with
``load``. For each batch class it times the dense model and the loaded one with
``torch.utils.benchmark.Timer``, interleaved ``--repeats`` times (dense, export, dense,
export, ...), and reports the min/median/max of the per-repeat speedups; it checks the
outputs agree and compares the export's size on disk with the dense weights in
safetensors.

CPU: fp32, batch 1, 32, 256. CUDA (``--device cuda``): fp16 (2:4 runs on semi-structured
sparse tensor cores, N:M on our Triton kernel), batch 1, 64, 256, patterns 2:4, 1:8 and
block32 95%.

Goals on 2 CPU cores (issue 13): >= 10x at 95% block-32 batch 1 on the MLP, >= 2.5x at 90%
unstructured batch 32, >= 2x at 1:8 batch 1, >= 1.8x at 50% channel with a file about half
the size, and never below 0.95x.

    python benchmarks/export.py [--quick] [--device cpu|cuda] [--threads 2]
        [--min-run-time-s 0.3] [--repeats 5] [--models mlp vit] [--patterns ...]
        [--out outputs/bench/export.json]

Prints a table and writes JSON. Takes about 10 minutes on 2 idle CPU cores; ``--quick``
(the MLP only, block32 95% and channel 50%, 3 repeats) about 2. The load average at start
and end is printed and recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn
from torch.utils.benchmark import Timer

from sparsearch.export import load, read_manifest, save
from sparsearch.export._table import kernel_table
from sparsearch.models import create_model
from sparsearch.sparsity import (
    apply_masks,
    block_mask,
    channel_mask,
    nm_mask,
    prunable_layers,
    remove_masks,
    unstructured_mask,
)
from sparsearch.spec import SubnetSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# tune_s: the export's timing budget per kernel and class (ViT has 50 small layers).
MODELS = {
    "mlp": {"kind": "mlp", "in_shape": (4096,), "num_classes": 1000,
            "options": {"hidden": (4096, 4096, 4096)}, "tune_s": 0.05},
    "vit": {"kind": "timm", "in_shape": (3, 32, 32), "num_classes": 1000,
            "options": {"name": "vit_tiny_patch16_224", "img_size": 32}, "tune_s": 0.01},
}
PATTERNS = {
    "block32 95%": (lambda w: block_mask(w, 0.95, block=(32, 32)),
                    SubnetSpec(pattern="block", block="32x32", sparsity=0.95)),
    "unstructured 90%": (lambda w: unstructured_mask(w, 0.90),
                         SubnetSpec(pattern="unstructured", sparsity=0.90)),
    "1:8": (lambda w: nm_mask(w, 1, 8), SubnetSpec(pattern="nm", nm="1:8")),
    "channel 50%": (lambda w: channel_mask(w, 0.5),
                    SubnetSpec(pattern="channel", sparsity=0.5)),
    "2:4": (lambda w: nm_mask(w, 2, 4), SubnetSpec(pattern="nm", nm="2:4")),
}
CPU_PATTERNS = ["block32 95%", "unstructured 90%", "1:8", "channel 50%"]
CUDA_PATTERNS = ["2:4", "1:8", "block32 95%"]
QUICK_PATTERNS = ["block32 95%", "channel 50%"]
GOALS = {("mlp", "block32 95%", 1): 10.0, ("mlp", "unstructured 90%", 32): 2.5,
         ("mlp", "1:8", 1): 2.0, ("mlp", "channel 50%", 1): 1.8,
         ("mlp", "channel 50%", 32): 1.8, ("mlp", "channel 50%", 256): 1.8}
FLOOR = 0.95


def build(name: str, pattern: str) -> nn.Module:
    torch.manual_seed(0)
    cfg = MODELS[name]
    model = create_model(cfg["kind"], in_shape=cfg["in_shape"], num_classes=cfg["num_classes"],
                         **cfg["options"])
    mask_fn = PATTERNS[pattern][0]
    apply_masks(model, {n: mask_fn(layer.weight) for n, layer in prunable_layers(model).items()})
    remove_masks(model)  # the dense baseline: same zeros, plain layers
    return model.eval()


def interleaved_ms(models: dict[str, nn.Module], x: torch.Tensor, *, threads: int,
                   min_run_time_s: float, repeats: int) -> dict[str, list[float]]:
    """Median ms per call of each model, one ``blocked_autorange`` each in turn, repeated."""
    timers = {k: Timer("model(x)", globals={"model": m, "x": x}, num_threads=threads)
              for k, m in models.items()}
    runs: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for model in models.values():
            model(x)  # warm-up
        for _ in range(repeats):
            for name, timer in timers.items():
                runs[name].append(timer.blocked_autorange(min_run_time=min_run_time_s).median
                                  * 1e3)
    return runs


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


def run_case(name: str, pattern: str, work: Path, *, device: torch.device, dtype: torch.dtype,
             batches: list[int], threads: int, min_run_time_s: float,
             repeats: int) -> dict[str, Any]:
    """Exports one pruned model, loads it back, and times it against dense per batch."""
    model = build(name, pattern).to(device=device, dtype=dtype)
    in_shape = MODELS[name]["in_shape"]
    generator = torch.Generator().manual_seed(1)
    example = torch.randn(1, *in_shape, generator=generator).to(device=device, dtype=dtype)
    export_dir = work / f"{name}-{pattern.replace(' ', '_').replace(':', '-').replace('%', '')}"
    started = time.time()
    save(model, PATTERNS[pattern][1], export_dir, example_input=example, overwrite=True,
         min_run_time_s=MODELS[name]["tune_s"], rounds=2)
    export_s = time.time() - started
    manifest = read_manifest(export_dir)
    loaded = load(export_dir, device=device)
    dense_file = work / "dense.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(dense_file))
    sizes = {"export_bytes": dir_bytes(export_dir), "dense_bytes": dense_file.stat().st_size}
    results = {}
    for batch in batches:
        x = torch.randn(batch, *in_shape, generator=generator).to(device=device, dtype=dtype)
        with torch.no_grad():
            ref, y = model(x).float(), loaded(x).float()
        error = float((y - ref).abs().max() / ref.abs().max())
        runs = interleaved_ms({"dense": model, "export": loaded}, x, threads=threads,
                              min_run_time_s=min_run_time_s, repeats=repeats)
        ratios = sorted(d / e for d, e in zip(runs["dense"], runs["export"]))
        results[batch] = {"dense_ms": statistics.median(runs["dense"]),
                          "sparse_ms": statistics.median(runs["export"]),
                          "speedup": {"min": ratios[0], "median": statistics.median(ratios),
                                      "max": ratios[-1]},
                          "max_rel_error": error, "dense_runs_ms": runs["dense"],
                          "sparse_runs_ms": runs["export"]}
        s = results[batch]["speedup"]
        print(f"  {name} {pattern} batch {batch}: {s['min']:.2f}/{s['median']:.2f}/"
              f"{s['max']:.2f}x (dense {results[batch]['dense_ms']:.3f} ms, export "
              f"{results[batch]['sparse_ms']:.3f} ms)", flush=True)
    record = next(iter(manifest["dispatch"].values()))
    kernels = {str(b): dict(Counter(per[str(b)]["kernel"] for per in record["layers"].values()))
               for b in batches}
    shutil.rmtree(export_dir)
    dense_file.unlink()
    return {"model": name, "pattern": pattern, "dtype": str(dtype).removeprefix("torch."),
            "export_s": export_s, "sizes": sizes, "batches": results,
            "speedups": {str(b): r["speedup"] for b, r in results.items()},
            "kernels_per_class": kernels, "channels": manifest.get("channels", {}),
            "model_check": record.get("model_check", {}),
            "table": kernel_table(manifest) if name == "mlp" else None}


def render(cases: list[dict[str, Any]]) -> str:
    header = ["model", "pattern", "dtype", "batch", "dense ms", "export ms",
              "speedup min/med/max", "goal", "file MB", "dense MB", "size",
              "kernels chosen (layers)"]
    rows = [header]
    for c in cases:
        for batch, r in c["batches"].items():
            goal = GOALS.get((c["model"], c["pattern"], batch))
            s = r["speedup"]
            verdict = (f">= {goal:g}x {'met' if s['median'] >= goal else 'MISSED'}" if goal
                       else ("ok" if s["median"] >= FLOOR else f"< {FLOOR}x"))
            chosen = ", ".join(f"{k} {n}" for k, n in
                               sorted(c["kernels_per_class"][str(batch)].items()))
            rows.append([c["model"], c["pattern"], c["dtype"], str(batch),
                         f"{r['dense_ms']:.3f}", f"{r['sparse_ms']:.3f}",
                         f"{s['min']:.2f}/{s['median']:.2f}/{s['max']:.2f}x", verdict,
                         f"{c['sizes']['export_bytes'] / 1e6:.1f}",
                         f"{c['sizes']['dense_bytes'] / 1e6:.1f}",
                         f"{c['sizes']['export_bytes'] / c['sizes']['dense_bytes']:.2f}",
                         chosen])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true",
                        help="the MLP only, block32 95%% and channel 50%%, 3 repeats")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time-s", type=float, default=0.3)
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (3 with --quick)")
    parser.add_argument("--models", nargs="+", default=None, choices=list(MODELS))
    parser.add_argument("--patterns", nargs="+", default=None, choices=list(PATTERNS))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/export.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        dtype, batches, patterns = torch.float16, [1, 64, 256], CUDA_PATTERNS
    else:
        dtype, batches = torch.float32, [1, 32, 256]
        patterns = QUICK_PATTERNS if args.quick else CPU_PATTERNS
    models = args.models or (["mlp"] if args.quick else list(MODELS))
    repeats = args.repeats or (3 if args.quick else 5)
    work = args.out.parent / "export_work"
    work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    print(f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}",
          flush=True)
    started = time.time()
    cases = [run_case(name, pattern, work, device=device, dtype=dtype, batches=batches,
                      threads=args.threads, min_run_time_s=args.min_run_time_s,
                      repeats=repeats)
             for name in models for pattern in (args.patterns or patterns)]
    shutil.rmtree(work, ignore_errors=True)
    for case in cases:
        if case["table"]:
            print(f"\n{case['model']} {case['pattern']}: per-layer dispatch\n{case['table']}")
    print()
    print(render(cases))
    result = {"machine": {"device": device.type, "threads": args.threads,
                          "torch": torch.__version__,
                          "load_avg_start": load_start, "load_avg_end": os.getloadavg()},
              "seconds": time.time() - started, "cases": cases}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} ({result['seconds']:.0f} s; load average "
          f"{load_start[0]:.1f} -> {result['machine']['load_avg_end'][0]:.1f})")


if __name__ == "__main__":
    main()
