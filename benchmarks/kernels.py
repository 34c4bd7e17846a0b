"""Per-layer kernel benchmark: every kernel against dense on one Linear layer, beside the
memory-bandwidth bound.

CPU (default): 1024^2 and 4096^2 fp32 weights at batch 1, 32 and 256, with unstructured
90/95%, block 16x16 and 32x32 at 90/95%, and N:M 2:4, 1:4, 1:8 masks (sparsearch's own
mask functions). CUDA (``--device cuda``): 4096^2 fp16 and bf16 at batch 1, 64 and 256
with 2:4, 1:4, 1:8 and 2:8 (dense cuBLAS, 2:4 semi-structured, our Triton N:M kernel).

First the machine's memory bandwidth is measured with a large copy (``dst.copy_(src)``,
256 MiB each way, read + write bytes over the fastest of 7 copies). Then each row times dense
``F.linear(x, W)`` and every kernel that serves the weight's detected format
(``sparsearch.kernels``), interleaved (dense, kernel 1, kernel 2, ..., repeated), with
``torch.utils.benchmark.Timer``, so every ratio comes from the same stretch of the
machine's load; min/median/max over the repeats are kept. Beside each kernel's time is the
bound: the time to read its operands (values and indices) once at the measured bandwidth;
``xbound`` is kernel time / bound (1.0 = at the memory bound; at batch 1 a sparse GEMV
cannot beat it). Every kernel's output is checked against dense.

    python benchmarks/kernels.py [--quick] [--device cpu|cuda] [--threads 2]
        [--min-run-time-s 0.1] [--repeats 5] [--sizes 1024 4096] [--batches 1 32 256]
        [--out outputs/bench/kernels.json]

Prints a table and writes JSON. ``--quick`` (4096^2; block32 95%, unstructured 90%, 1:8;
batch 1 and 32) takes about 1 minute on 2 idle CPU cores, the full run about 8. The load
average at start and end is printed and recorded: other processes on the cores bend the
numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from sparsearch import kernels
from sparsearch.export._detect import detect_format
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
    "2:8": lambda w: nm_mask(w, 2, 8),
}
CPU_PATTERNS = [p for p in PATTERNS if p != "2:8"]
CUDA_PATTERNS = ["2:4", "1:4", "1:8", "2:8"]
QUICK_PATTERNS = ["block32 95%", "unstructured 90%", "1:8"]
# Every sparse kernel on CPU; on CUDA only those made for it (the CPU ones that also run
# there are not what a GPU deployment would pick).
CPU_KERNELS = [k for k in kernels.list_kernels(device="cpu") if k != "dense"]
CUDA_KERNELS = [k for k in kernels.list_kernels(device="cuda")
                if k not in kernels.list_kernels(device="cpu")]


def bandwidth_gbs(device: torch.device, *, repeats: int = 7) -> float:
    """Memory bandwidth of a large copy (bytes read + written per second), in GB/s.

    The fastest of the copies: a bound is what the machine can do, and other processes
    only ever slow a copy down.
    """
    src = torch.ones(64 * 2**20, device=device)  # 256 MiB of fp32
    dst = torch.empty_like(src)
    timer = Timer("dst.copy_(src)", globals={"dst": dst, "src": src})
    timer.timeit(1)
    seconds = min(timer.timeit(1).median for _ in range(repeats))
    return 2 * src.numel() * src.element_size() / seconds / 1e9


def operand_bytes(operands: dict[str, Any]) -> int:
    return sum(v.numel() * v.element_size() for v in operands.values()
               if isinstance(v, torch.Tensor) and not v.is_sparse and v.layout == torch.strided
               ) + sum(_sparse_bytes(v) for v in operands.values()
                       if isinstance(v, torch.Tensor) and v.layout != torch.strided)


def _sparse_bytes(t: torch.Tensor) -> int:
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        parts = (t.crow_indices(), t.col_indices(), t.values())
    elif t.layout == torch.sparse_coo:
        parts = (t._indices(), t._values())
    else:
        return 0
    return sum(p.numel() * p.element_size() for p in parts)


def time_interleaved(fns: dict[str, Any], *, threads: int, min_run_time_s: float,
                     repeats: int) -> dict[str, list[float]]:
    """Per-call ms of each function, one block each in turn, ``repeats`` times."""
    timers = {k: Timer("fn()", globals={"fn": fn}, num_threads=threads) for k, fn in fns.items()}
    numbers = {}
    for name, timer in timers.items():
        timer.timeit(1)  # warm-up: first calls allocate and initialise
        once = max(timer.timeit(1).median, 1e-7)
        numbers[name] = max(1, int(min_run_time_s / once))
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, timer in timers.items():
            samples[name].append(timer.timeit(numbers[name]).median * 1e3)
    return samples


def bench_row(size: int, pattern: str, batch: int, *, device: torch.device,
              dtype: torch.dtype, threads: int, min_run_time_s: float, repeats: int,
              bandwidth: float) -> dict[str, Any]:
    """One weight and batch: every kernel timed interleaved with dense (``bandwidth`` in B/s)."""
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(size, size, generator=generator)
    w = w * PATTERNS[pattern](w)
    x = torch.randn(batch, size, generator=generator).to(device=device, dtype=dtype)
    _, stored = detect_format(w)
    wd = w.to(device=device, dtype=dtype)
    ref = F.linear(x.float(), w.to(device))
    usable, _ = kernels.kernels_for(stored, device=device, dtype=dtype)
    wanted = CUDA_KERNELS if device.type == "cuda" else CPU_KERNELS
    fns: dict[str, Any] = {"dense": lambda: F.linear(x, wd)}
    bounds_ms = {"dense": wd.numel() * wd.element_size() / bandwidth * 1e3}
    errors: dict[str, float] = {}
    with torch.no_grad():
        for kernel in usable:
            if kernel.name not in wanted:
                continue
            ops = kernel.prepare(stored, device=device, dtype=dtype)
            y = kernel.linear(ops, x).float()
            errors[kernel.name] = float((y - ref).abs().max() / ref.abs().max())
            fns[kernel.name] = lambda k=kernel, o=ops: k.linear(o, x)
            bounds_ms[kernel.name] = operand_bytes(ops) / bandwidth * 1e3
        samples = time_interleaved(fns, threads=threads, min_run_time_s=min_run_time_s,
                                   repeats=repeats)
    times = {k: {"min": min(v), "median": statistics.median(v), "max": max(v)}
             for k, v in samples.items()}
    dense_ms = times["dense"]["median"]
    speedups = {k: dense_ms / t["median"] for k, t in times.items() if k != "dense"}
    best = max(speedups, key=speedups.__getitem__) if speedups else "dense"
    return {"size": size, "batch": batch, "pattern": pattern, "format": stored.format,
            "dtype": str(dtype).removeprefix("torch."), "density": stored.density,
            "limit": 1 / stored.density, "dense_ms": dense_ms, "times_ms": times,
            "bound_ms": bounds_ms, "speedups": speedups, "best": best,
            "max_rel_error": errors}


def render(rows: list[dict[str, Any]]) -> str:
    header = ["shape", "dtype", "batch", "pattern", "density", "kernel", "ms min/med/max",
              "vs dense", "bound ms", "xbound"]
    table = [header]
    for r in rows:
        first = True
        for name, t in sorted(r["times_ms"].items(), key=lambda kv: kv[1]["median"]):
            lead = ([f"{r['size']}x{r['size']}", r["dtype"], str(r["batch"]), r["pattern"],
                     f"{r['density']:.3f}"] if first else [""] * 5)
            first = False
            bound = r["bound_ms"][name]
            ratio = "1.00x" if name == "dense" else f"{r['speedups'][name]:.2f}x"
            mark = " *" if name == r["best"] else ""
            table.append([*lead, name + mark,
                          f"{t['min']:.3f}/{t['median']:.3f}/{t['max']:.3f}", ratio,
                          f"{bound:.3f}", f"{t['median'] / bound:.1f}"])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i > 5 else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths))) for row in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true",
                        help="4096^2 only, the issue's three patterns, batch 1 and 32 (CPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time-s", type=float, default=0.1,
                        help="timing block per kernel and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench/kernels.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        dtypes, patterns = [torch.float16, torch.bfloat16], CUDA_PATTERNS
        sizes, batches = args.sizes or [4096], args.batches or [1, 64, 256]
    elif args.quick:
        dtypes, patterns = [torch.float32], QUICK_PATTERNS
        sizes, batches = args.sizes or [4096], args.batches or [1, 32]
    else:
        dtypes, patterns = [torch.float32], CPU_PATTERNS
        sizes, batches = args.sizes or [1024, 4096], args.batches or [1, 32, 256]
    load_start = os.getloadavg()
    print(f"load average {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}", flush=True)
    started = time.time()
    bandwidth = bandwidth_gbs(device)
    print(f"memory bandwidth (copy, read + write): {bandwidth:.1f} GB/s", flush=True)
    rows = []
    for dtype in dtypes:
        for size in sizes:
            for batch in batches:
                for pattern in patterns:
                    rows.append(bench_row(size, pattern, batch, device=device, dtype=dtype,
                                          threads=args.threads,
                                          min_run_time_s=args.min_run_time_s,
                                          repeats=args.repeats, bandwidth=bandwidth * 1e9))
                    r = rows[-1]
                    print(f"  {size} {r['dtype']} b{batch} {pattern}: best {r['best']} "
                          f"{r['speedups'].get(r['best'], 1.0):.2f}x", flush=True)
    print(render(rows))
    load_end = os.getloadavg()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        platform.processor() or platform.machine())
    result = {"machine": {"device": device.type, "name": name, "threads": args.threads,
                          "torch": torch.__version__, "bandwidth_gbs": bandwidth,
                          "load_avg_start": load_start, "load_avg_end": load_end},
              "seconds": time.time() - started, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} ({result['seconds']:.0f} s; load average "
          f"{load_start[0]:.2f} -> {load_end[0]:.2f})")


if __name__ == "__main__":
    main()
