"""End-to-end export benchmark: exported sparse models against their dense selves.

Two models, built with ``sparsearch.models.create_model``: a 4096-wide MLP (4096 -> 4096
-> 4096 -> 4096 -> 1000) and timm's ``vit_tiny_patch16_224`` at img_size 32 (no pretrained
weights). Each is pruned on every Linear/Conv2d at 95% block 32x32, 90% unstructured and
1:8 (sparsearch's own masks, baked in), exported with ``sparsearch.export.save`` (which
measures the per-layer dispatch on this machine) and loaded back with ``load``. For batch
1, 32 and 256 it times the dense model and the loaded one with
``torch.utils.benchmark.Timer(..., num_threads=2).blocked_autorange``, interleaved twice
(dense, sparse, dense, sparse; the minimum of each kept), checks the outputs agree, and
compares the export's size on disk with the dense weights in safetensors.

Goals on 2 CPU cores: >= 8x at 95% block-32 batch 1 on the MLP, >= 2.5x at 90%
unstructured batch 32, >= 2x at 1:8 batch 1, and never below 0.95x.

    python benchmarks/export.py [--threads 2] [--min-run-time-s 0.5] [--models mlp vit]
                                [--out outputs/bench/export.json]

Prints a table and writes JSON. Takes about 8 minutes on 2 idle CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn
from torch.utils.benchmark import Timer

from sparsearch.export import kernel_table, load, read_manifest, save
from sparsearch.models import create_model
from sparsearch.sparsity import (
    apply_masks,
    block_mask,
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
}
BATCHES = (1, 32, 256)
GOALS = {("mlp", "block32 95%", 1): 8.0, ("mlp", "unstructured 90%", 32): 2.5,
         ("mlp", "1:8", 1): 2.0}
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


def median_ms(model: nn.Module, x: torch.Tensor, *, threads: int, min_run_time_s: float) -> float:
    with torch.no_grad():
        model(x)  # warm-up
        timer = Timer("model(x)", globals={"model": model, "x": x}, num_threads=threads)
        return timer.blocked_autorange(min_run_time=min_run_time_s).median * 1e3


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir())


def run_case(name: str, pattern: str, work: Path, *, threads: int,
             min_run_time_s: float) -> dict[str, Any]:
    model = build(name, pattern)
    in_shape = MODELS[name]["in_shape"]
    generator = torch.Generator().manual_seed(1)
    example = torch.randn(1, *in_shape, generator=generator)
    export_dir = work / f"{name}-{pattern.replace(' ', '_').replace(':', '-').replace('%', '')}"
    started = time.time()
    save(model, PATTERNS[pattern][1], export_dir, example_input=example, overwrite=True,
         min_run_time_s=MODELS[name]["tune_s"], rounds=2)
    export_s = time.time() - started
    manifest = read_manifest(export_dir)
    loaded = load(export_dir)
    dense_file = work / "dense.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(dense_file))
    sizes = {"export_bytes": dir_bytes(export_dir), "dense_bytes": dense_file.stat().st_size}
    batches = {}
    for batch in BATCHES:
        x = torch.randn(batch, *in_shape, generator=generator)
        with torch.no_grad():
            ref, y = model(x), loaded(x)
        error = float((y - ref).abs().max() / ref.abs().max())
        dense, sparse = [], []
        for _ in range(2):
            dense.append(median_ms(model, x, threads=threads, min_run_time_s=min_run_time_s))
            sparse.append(median_ms(loaded, x, threads=threads, min_run_time_s=min_run_time_s))
        batches[batch] = {"dense_ms": min(dense), "sparse_ms": min(sparse),
                          "speedup": min(dense) / min(sparse), "max_rel_error": error,
                          "dense_runs_ms": dense, "sparse_runs_ms": sparse}
        print(f"  {name} {pattern} batch {batch}: {batches[batch]['speedup']:.2f}x "
              f"(dense {min(dense):.3f} ms, sparse {min(sparse):.3f} ms)", flush=True)
    record = next(iter(manifest["dispatch"].values()))
    kernels = {str(b): dict(Counter(per[str(b)]["kernel"] for per in record["layers"].values()))
               for b in BATCHES}
    shutil.rmtree(export_dir)
    dense_file.unlink()
    return {"model": name, "pattern": pattern, "export_s": export_s, "sizes": sizes,
            "batches": batches, "kernels_per_class": kernels,
            "table": kernel_table(manifest) if name == "mlp" else None}


def render(cases: list[dict[str, Any]]) -> str:
    header = ["model", "pattern", "batch", "dense ms", "sparse ms", "speedup", "goal",
              "file MB", "dense MB", "size", "kernels chosen (layers)"]
    rows = [header]
    for c in cases:
        for batch, r in c["batches"].items():
            goal = GOALS.get((c["model"], c["pattern"], batch))
            verdict = (f">= {goal:g}x {'met' if r['speedup'] >= goal else 'MISSED'}" if goal
                       else ("ok" if r["speedup"] >= FLOOR else f"< {FLOOR}x"))
            chosen = ", ".join(f"{k} {n}" for k, n in
                               sorted(c["kernels_per_class"][str(batch)].items()))
            rows.append([c["model"], c["pattern"], str(batch), f"{r['dense_ms']:.3f}",
                         f"{r['sparse_ms']:.3f}", f"{r['speedup']:.2f}x", verdict,
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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time-s", type=float, default=0.5)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--patterns", nargs="+", default=list(PATTERNS),
                        choices=list(PATTERNS))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/export.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.out.parent / "export_work"
    work.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    started = time.time()
    cases = [run_case(name, pattern, work, threads=args.threads,
                      min_run_time_s=args.min_run_time_s)
             for name in args.models for pattern in args.patterns]
    shutil.rmtree(work, ignore_errors=True)
    for case in cases:
        if case["table"]:
            print(f"\n{case['model']} {case['pattern']}: per-layer dispatch\n{case['table']}")
    print()
    print(render(cases))
    result = {"machine": {"threads": args.threads, "torch": torch.__version__,
                          "load_avg_start": load_start, "load_avg_end": os.getloadavg()},
              "seconds": time.time() - started, "cases": cases}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} ({result['seconds']:.0f} s; load average "
          f"{load_start[0]:.1f} -> {result['machine']['load_avg_end'][0]:.1f})")


if __name__ == "__main__":
    main()
