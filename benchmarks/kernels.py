"""Per-layer kernel benchmark: every CPU kernel against dense on one Linear layer.

For 1024^2 and 4096^2 fp32 weights at batch 1, 32 and 256, with unstructured 90/95%,
block 16x16 and 32x32 at 90/95%, and N:M 2:4, 1:4, 1:8 masks (sparsearch's own mask
functions), it times dense ``F.linear(x, W)`` and every kernel that serves the weight's
detected format (``sparsearch.kernels``) with ``torch.utils.benchmark.Timer(...,
num_threads=2).blocked_autorange`` after a warm-up call. Dense is timed before and after
the kernels and the mean used, so every ratio comes from the same run; the physical limit
1/density is printed beside them. Every kernel's output is checked against dense.

    python benchmarks/kernels.py [--threads 2] [--min-run-time-s 0.3] [--sizes 1024 4096]
                                 [--out outputs/bench/kernels.json]

Prints a table and writes JSON. Takes about 5 minutes on 2 idle CPU cores. The machine's
load average at start and end is recorded: other processes on the cores bend the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from sparsearch import kernels
from sparsearch.export import detect_format
from sparsearch.sparsity import block_mask, nm_mask, unstructured_mask

PATTERNS = {
    "unstructured 90%": lambda w: unstructured_mask(w, 0.90),
    "unstructured 95%": lambda w: unstructured_mask(w, 0.95),
    "block16 90%": lambda w: block_mask(w, 0.90, block=(16, 16)),
    "block16 95%": lambda w: block_mask(w, 0.95, block=(16, 16)),
    "block32 90%": lambda w: block_mask(w, 0.90, block=(32, 32)),
    "block32 95%": lambda w: block_mask(w, 0.95, block=(32, 32)),
    "2:4": lambda w: nm_mask(w, 2, 4),
    "1:4": lambda w: nm_mask(w, 1, 4),
    "1:8": lambda w: nm_mask(w, 1, 8),
}
KERNELS = ("csr", "bsr", "gather_sum", "nm_cpu")
BATCHES = (1, 32, 256)


def median_ms(fn, *, threads: int, min_run_time_s: float) -> float:
    fn()  # warm-up: first calls allocate and initialise
    timer = Timer("fn()", globals={"fn": fn}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time_s).median * 1e3


def bench_row(size: int, pattern: str, batch: int, *, threads: int,
              min_run_time_s: float) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(size, size, generator=generator)
    w = w * PATTERNS[pattern](w)
    x = torch.randn(batch, size, generator=generator)
    _, stored = detect_format(w)
    density = stored.density
    ref = F.linear(x, w)
    usable, _ = kernels.kernels_for(stored, device="cpu")
    cpu = torch.device("cpu")
    with torch.no_grad():
        dense_before = median_ms(lambda: F.linear(x, w), threads=threads,
                                 min_run_time_s=min_run_time_s)
        times: dict[str, float] = {}
        errors: dict[str, float] = {}
        for kernel in usable:
            if kernel.name == "dense":
                continue
            ops = kernel.prepare(stored, device=cpu, dtype=torch.float32)
            y = kernel.linear(ops, x)
            errors[kernel.name] = float((y - ref).abs().max() / ref.abs().max())
            times[kernel.name] = median_ms(lambda k=kernel, o=ops: k.linear(o, x),
                                           threads=threads, min_run_time_s=min_run_time_s)
            del ops
        dense_after = median_ms(lambda: F.linear(x, w), threads=threads,
                                min_run_time_s=min_run_time_s)
    dense_ms = (dense_before + dense_after) / 2
    speedups = {k: dense_ms / t for k, t in times.items()}
    best = max(speedups, key=speedups.__getitem__) if speedups else "dense"
    return {"size": size, "batch": batch, "pattern": pattern, "format": stored.format,
            "density": density, "limit": 1 / density, "dense_ms": dense_ms,
            "dense_ms_before_after": [dense_before, dense_after], "times_ms": times,
            "speedups": speedups, "best": best, "max_rel_error": errors}


def render(rows: list[dict[str, Any]]) -> str:
    header = ["shape", "batch", "pattern", "format", "density", "limit", "dense ms",
              *KERNELS, "best"]
    table = [header]
    for r in rows:
        cells = [f"{r['speedups'][k]:.2f}x" if k in r["speedups"] else "-" for k in KERNELS]
        best = r["speedups"].get(r["best"], 1.0)
        table.append([f"{r['size']}x{r['size']}", str(r["batch"]), r["pattern"], r["format"],
                      f"{r['density']:.3f}", f"{r['limit']:.1f}x", f"{r['dense_ms']:.3f}",
                      *cells, f"{r['best']} {best:.2f}x"])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i > 2 else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time-s", type=float, default=0.3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/kernels.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    started = time.time()
    rows = []
    for size in args.sizes:
        for batch in args.batches:
            for pattern in PATTERNS:
                rows.append(bench_row(size, pattern, batch, threads=args.threads,
                                      min_run_time_s=args.min_run_time_s))
                print(f"  {size} b{batch} {pattern}: best {rows[-1]['best']} "
                      f"{rows[-1]['speedups'].get(rows[-1]['best'], 1.0):.2f}x", flush=True)
    print(render(rows))
    result = {"machine": {"cpu": platform.processor() or platform.machine(),
                          "threads": args.threads, "torch": torch.__version__,
                          "load_avg_start": load_start, "load_avg_end": os.getloadavg()},
              "seconds": time.time() - started, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} ({result['seconds']:.0f} s; load average "
          f"{load_start[0]:.1f} -> {result['machine']['load_avg_end'][0]:.1f})")


if __name__ == "__main__":
    main()
