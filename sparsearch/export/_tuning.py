"""Kernel dispatch by measurement: per layer and batch-size class, the fastest kernel.

Every applicable kernel runs the layer on a random input of the layer's real per-sample
shape, is checked against dense (max error relative to the output's scale), and is timed
against dense in the same process with ``torch.utils.benchmark.Timer``. A sparse kernel
replaces dense only when it is at least ``min_speedup`` times faster, so timing noise
cannot make an exported model slower than dense. Kernels several times slower than dense
in one call are not timed further. The others are timed interleaved with dense (one short
block each, in turn, ``3 * rounds`` times), so a burst of load from other processes hits
dense and the kernels alike, and the median of each kernel's blocks is kept with its
spread. When the load average says the machine was busier than its cores while timing,
the class is timed again and the quieter measurement kept.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sparsearch.export._layers import build_layer
from sparsearch.kernels import KernelUnavailable, SparseWeight, get_kernel, kernels_for

__all__ = ["LayerTiming", "machine_fingerprint", "time_interleaved", "time_ms", "tune_layer"]

DEFAULT_BATCH_SIZES = (1, 32, 256)
# Error allowed against dense, relative to the largest |output| (fp32 and half).
_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-9}
_HALF_TOLERANCE = 1e-2
# Kernels slower than this many times dense in a single call are not timed further.
_SCREEN_FACTOR = 3.0
# Slowdown a dense class may take from routing before the whole layer stays dense.
_ROUTING_TOLERANCE = 0.03
# Interleaved timing blocks per kernel and round (their median is the kernel's time).
_BLOCKS_PER_ROUND = 3
# Extra measurements of a class timed while the machine was busy (load average > cores).
_BUSY_RETRIES = 1


@dataclass
class LayerTiming:
    """The dispatch of one layer at one batch-size class.

    Attributes:
        batch_size: the class.
        kernel: the chosen kernel.
        speedup: dense time / chosen time (1.0 when dense is kept).
        times_ms: median milliseconds per kernel, dense included.
        rejected: kernels that could not run here or gave wrong numbers, with why.
        spread_ms: the fastest and slowest timing block per kernel (interleaved ones only).
        load_avg: the 1-minute load average when the class was timed.
        shared_with: the layer whose measurement this one reuses (same shape, format and
            density), or None when measured itself.
    """

    batch_size: int
    kernel: str
    speedup: float
    times_ms: dict[str, float]
    rejected: dict[str, str] = field(default_factory=dict)
    spread_ms: dict[str, tuple[float, float]] = field(default_factory=dict)
    load_avg: float | None = None
    shared_with: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kernel": self.kernel, "speedup": round(self.speedup, 4),
            "times_ms": {k: round(v, 6) for k, v in self.times_ms.items()},
            "spread_ms": {k: [round(lo, 6), round(hi, 6)] for k, (lo, hi) in
                          self.spread_ms.items()},
            "rejected": self.rejected}
        if self.load_avg is not None:
            data["load_avg"] = round(self.load_avg, 2)
        if self.shared_with is not None:
            data["shared_with"] = self.shared_with
        return data

    @classmethod
    def from_dict(cls, batch_size: int, data: dict[str, Any]) -> LayerTiming:
        spread = {k: (float(lo), float(hi)) for k, (lo, hi) in data.get("spread_ms", {}).items()}
        return cls(batch_size, data["kernel"], float(data["speedup"]),
                   dict(data.get("times_ms", {})), dict(data.get("rejected", {})), spread,
                   data.get("load_avg"), data.get("shared_with"))


def machine_fingerprint(device: torch.device | str) -> dict[str, Any]:
    """What a recorded dispatch depends on: the processor and the thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return {"device": device.type, "name": name, "threads": torch.get_num_threads()}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_ms(module: nn.Module, x: torch.Tensor, *, min_run_time_s: float,
            threads: int | None = None) -> float:
    """Median milliseconds of ``module(x)`` under no_grad.

    Uses ``torch.utils.benchmark.Timer`` (thread setting, CUDA synchronisation) with a
    warm-up call first, then five blocks sized to fill ``min_run_time_s`` together (three
    single calls when one call alone is that long). The warm-up matters:
    ``blocked_autorange`` sizes its blocks from a first, cold call, and for a small layer
    that one call is the whole measurement.
    """
    from torch.utils.benchmark import Timer  # imports cpp_extension: slow, so only here

    timer = Timer("module(x)", globals={"module": module, "x": x},
                  num_threads=threads or torch.get_num_threads())
    with torch.no_grad():
        timer.timeit(1)
        once_s = max(timer.timeit(1).median, 1e-7)
        number = int(min_run_time_s / 5 / once_s)
        if number < 2:
            samples = [once_s, timer.timeit(1).median, timer.timeit(1).median]
        else:
            samples = [timer.timeit(number).median for _ in range(5)]
    return sorted(samples)[len(samples) // 2] * 1e3


def time_interleaved(modules: dict[str, Callable[[torch.Tensor], Any]], x: torch.Tensor, *,
                     min_run_time_s: float, rounds: int,
                     threads: int | None = None) -> dict[str, list[float]]:
    """Milliseconds per call of each module, timed in turn: ``3 * rounds`` blocks each.

    Each module's block is sized from a warm call to about ``min_run_time_s / 3``, so all
    of them, dense included, sample the same stretch of the machine's load.

    Returns:
        The blocks' per-call milliseconds, per module name.
    """
    from torch.utils.benchmark import Timer  # imports cpp_extension: slow, so only here

    threads = threads or torch.get_num_threads()
    timers = {name: Timer("module(x)", globals={"module": module, "x": x}, num_threads=threads)
              for name, module in modules.items()}
    numbers: dict[str, int] = {}
    samples: dict[str, list[float]] = {name: [] for name in modules}
    with torch.no_grad():
        for name, timer in timers.items():
            timer.timeit(1)
            once_s = max(timer.timeit(1).median, 1e-7)
            numbers[name] = max(1, int(min_run_time_s / _BLOCKS_PER_ROUND / once_s))
        for _ in range(_BLOCKS_PER_ROUND * max(1, rounds)):
            for name, timer in timers.items():
                samples[name].append(timer.timeit(numbers[name]).median * 1e3)
    return samples


def machine_busy(device: torch.device) -> float | None:
    """The 1-minute load average when it exceeds the cores (CPU timing only), else None."""
    if device.type != "cpu" or not hasattr(os, "getloadavg"):
        return None
    load = os.getloadavg()[0]
    return load if load > (os.cpu_count() or 1) else None


def _single_call_ms(module: nn.Module, x: torch.Tensor) -> float:
    """One timed call (after the caller's warm-up), to screen out hopeless kernels."""
    from torch.utils.benchmark import Timer

    timer = Timer("module(x)", globals={"module": module, "x": x},
                  num_threads=torch.get_num_threads())
    with torch.no_grad():
        return timer.timeit(1).median * 1e3


def _relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    """Max |y - ref| over max |ref|: the error at the scale of the layer's output."""
    if ref.numel() == 0:
        return 0.0
    scale = max(float(ref.abs().max()), 1e-30)
    return float((y.float() - ref.float()).abs().max()) / scale


def tune_layer(geometry: dict[str, Any], weight: SparseWeight, *, layout: str,
               bias: torch.Tensor | None, sample_shape: Sequence[int],
               batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
               min_run_time_s: float = 0.05, rounds: int = 2, min_speedup: float = 1.1,
               seed: int = 0) -> list[LayerTiming]:
    """Times every applicable kernel against dense for one layer; one result per class.

    Args:
        geometry: the layer's ``layer_geometry``.
        weight: its stored weight.
        layout: the GEMM layout of ``weight``.
        bias: its bias or None.
        sample_shape: the layer's input shape without the batch dimension.
        batch_sizes: the batch-size classes to time.
        device: where to time.
        dtype: the floating-point dtype to run in.
        min_run_time_s: timing budget per kernel and interleaved round.
        rounds: interleaved rounds (each ``3`` timing blocks per contending kernel).
        min_speedup: how much faster than dense a sparse kernel must be to be chosen.
        seed: seed of the random inputs.
    """
    device = torch.device(device)
    sizes = sorted(batch_sizes)
    tolerance = _TOLERANCE.get(dtype, _HALF_TOLERANCE)
    common = {"layout": layout, "batch_sizes": sizes, "bias": bias, "device": device,
              "dtype": dtype}
    dense = build_layer(geometry, weight, kernels=["dense"] * len(sizes), **common)
    candidates, skipped = kernels_for(weight, device=device, dtype=dtype)
    # Worth a line in the manifest: kernels for this format that cannot run here (a failed
    # C++ build, a shape rule), not every kernel of another format or device.
    serving_skipped = {name: reason for name, reason in skipped.items()
                       if weight.format in get_kernel(name).formats
                       and device.type in get_kernel(name).devices}
    rejected: dict[str, str] = {}
    modules: dict[str, nn.Module] = {"dense": dense}
    for kernel in candidates:
        if kernel.name == "dense":
            continue
        try:
            modules[kernel.name] = build_layer(geometry, weight,
                                               kernels=[kernel.name] * len(sizes), **common)
        except (KernelUnavailable, RuntimeError, ValueError) as err:
            rejected[kernel.name] = f"prepare failed: {err}"
    generator = torch.Generator().manual_seed(seed)
    results = []
    inputs = {}
    for batch in sizes:
        x = torch.randn(batch, *sample_shape, generator=generator).to(device=device, dtype=dtype)
        inputs[batch] = x
        class_rejected = dict(rejected)
        with torch.no_grad():
            ref = dense(x)
            runnable = {"dense": dense}
            for name, module in modules.items():
                if name == "dense":
                    continue
                try:
                    err = _relative_error(module(x), ref)
                except RuntimeError as exc:
                    class_rejected[name] = f"run failed: {exc}"
                    continue
                if err > tolerance:
                    class_rejected[name] = f"relative error {err:.2e} > {tolerance:.0e}"
                else:
                    runnable[name] = module
        times, spread, load = _time_class(runnable, x, device=device,
                                          min_run_time_s=min_run_time_s, rounds=rounds)
        best = min(times, key=times.__getitem__)
        if best != "dense" and times["dense"] / times[best] < min_speedup:
            best = "dense"
        results.append(LayerTiming(batch, best, times["dense"] / times[best], times,
                                   {**serving_skipped, **class_rejected}, spread, load))
    _keep_dense_classes_whole(results, dense, inputs, min_run_time_s=min_run_time_s,
                              build=lambda kernels: build_layer(geometry, weight,
                                                                kernels=kernels, **common))
    return results


def _time_class(runnable: dict[str, nn.Module], x: torch.Tensor, *, device: torch.device,
                min_run_time_s: float, rounds: int
                ) -> tuple[dict[str, float], dict[str, tuple[float, float]], float]:
    """Median times, spreads and the load average of one batch class's contenders.

    A kernel several times slower than dense in one call cannot win: that call is its
    time, and it is spared the interleaved blocks (large batches of slow kernels add up).
    """
    dense_once = _single_call_ms(runnable["dense"], x)
    screened = {name: _single_call_ms(module, x) for name, module in runnable.items()
                if name != "dense"}
    finalists = {"dense": runnable["dense"]}
    finalists.update({name: runnable[name] for name, quick in screened.items()
                      if quick <= _SCREEN_FACTOR * dense_once})
    best: tuple[dict[str, list[float]], float] | None = None
    for _ in range(1 + _BUSY_RETRIES):
        samples = time_interleaved(finalists, x, min_run_time_s=min_run_time_s, rounds=rounds)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if best is None or load < best[1]:
            best = (samples, load)
        if machine_busy(device) is None:
            break
    samples, load = best
    times = {name: screened[name] for name in screened if name not in finalists}
    times.update({name: statistics.median(blocks) for name, blocks in samples.items()})
    spread = {name: (min(blocks), max(blocks)) for name, blocks in samples.items()}
    return times, spread, load


def _keep_dense_classes_whole(results: list[LayerTiming], dense: nn.Module,
                              inputs: dict[int, torch.Tensor], *, min_run_time_s: float,
                              build: Callable[[list[str]], nn.Module]) -> None:
    """Keeps the layer plain when going sparse at some classes slows its dense classes.

    A layer that is sparse at some batch classes becomes a routing module, and its dense
    classes then pay the routing too. On small layers that can exceed the noise, and an
    export must not be slower than dense at any class, so such a layer stays dense.
    """
    chosen = [r.kernel for r in results]
    if "dense" not in chosen or all(k == "dense" for k in chosen):
        return
    routed = build(chosen)
    for r in results:
        if r.kernel != "dense":
            continue
        samples = time_interleaved({"plain": dense, "routed": routed}, inputs[r.batch_size],
                                   min_run_time_s=min_run_time_s, rounds=1)
        plain_ms, routed_ms = statistics.median(samples["plain"]), statistics.median(samples["routed"])
        if routed_ms > plain_ms * (1 + _ROUTING_TOLERANCE):
            reason = (f"kept dense: routing would cost batch {r.batch_size} "
                      f"{routed_ms / plain_ms - 1:.0%} over plain dense")
            for other in results:
                if other.kernel != "dense":
                    other.rejected[other.kernel] = reason
                    other.kernel, other.speedup = "dense", 1.0
            return
