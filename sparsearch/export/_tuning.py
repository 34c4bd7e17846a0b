"""Kernel dispatch by measurement: per layer and batch-size class, the fastest kernel.

Every applicable kernel runs the layer on a random input of the layer's real per-sample
shape, is checked against dense (max error relative to the output's scale), and is timed
against dense in the same process with ``torch.utils.benchmark.Timer``. A sparse kernel
replaces dense only when it is at least ``min_speedup`` times faster, so timing noise
cannot make an exported model slower than dense. Kernels several times slower than dense
in one call are not timed further; the others are timed ``rounds`` times and the minimum
kept, the estimate least disturbed by other processes.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sparsearch.export._layers import build_layer
from sparsearch.kernels import KernelUnavailable, SparseWeight, get_kernel, kernels_for

__all__ = ["LayerTiming", "machine_fingerprint", "time_ms", "tune_layer"]

DEFAULT_BATCH_SIZES = (1, 32, 256)
# Error allowed against dense, relative to the largest |output| (fp32 and half).
_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-9}
_HALF_TOLERANCE = 1e-2
# Kernels slower than this many times dense in a single call are not timed further.
_SCREEN_FACTOR = 3.0
# Slowdown a dense class may take from routing before the whole layer stays dense.
_ROUTING_TOLERANCE = 0.03


@dataclass
class LayerTiming:
    """The dispatch of one layer at one batch-size class.

    Attributes:
        batch_size: the class.
        kernel: the chosen kernel.
        speedup: dense time / chosen time (1.0 when dense is kept).
        times_ms: median milliseconds per kernel, dense included.
        rejected: kernels that could not run here or gave wrong numbers, with why.
    """

    batch_size: int
    kernel: str
    speedup: float
    times_ms: dict[str, float]
    rejected: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "speedup": round(self.speedup, 4),
                "times_ms": {k: round(v, 6) for k, v in self.times_ms.items()},
                "rejected": self.rejected}

    @classmethod
    def from_dict(cls, batch_size: int, data: dict[str, Any]) -> LayerTiming:
        return cls(batch_size, data["kernel"], float(data["speedup"]),
                   dict(data.get("times_ms", {})), dict(data.get("rejected", {})))


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
        min_run_time_s: timing budget per measurement.
        rounds: measurements per contending kernel; the minimum is kept.
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
        times = {"dense": time_ms(dense, x, min_run_time_s=min_run_time_s)}
        finalists = ["dense"]
        for name, module in runnable.items():
            if name == "dense":
                continue
            # A kernel several times slower than dense in one call cannot win: note that
            # call and spare the full measurement (large batches of slow kernels add up).
            quick = _single_call_ms(module, x)
            if quick > _SCREEN_FACTOR * times["dense"]:
                times[name] = quick
            else:
                times[name] = time_ms(module, x, min_run_time_s=min_run_time_s)
                finalists.append(name)
        for _ in range(max(1, rounds) - 1):
            for name in finalists:
                t = time_ms(runnable[name], x, min_run_time_s=min_run_time_s)
                times[name] = min(t, times[name])
        best = min(times, key=times.__getitem__)
        if best != "dense" and times["dense"] / times[best] < min_speedup:
            best = "dense"
        results.append(LayerTiming(batch, best, times["dense"] / times[best], times,
                                   {**serving_skipped, **class_rejected}))
    _keep_dense_classes_whole(results, dense, inputs, min_run_time_s=min_run_time_s,
                              build=lambda kernels: build_layer(geometry, weight,
                                                                kernels=kernels, **common))
    return results


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
        x = inputs[r.batch_size]
        plain_ms = time_ms(dense, x, min_run_time_s=min_run_time_s)
        routed_ms = time_ms(routed, x, min_run_time_s=min_run_time_s)
        if routed_ms > plain_ms * (1 + _ROUTING_TOLERANCE):
            reason = (f"kept dense: routing would cost batch {r.batch_size} "
                      f"{routed_ms / plain_ms - 1:.0%} over plain dense")
            for other in results:
                if other.kernel != "dense":
                    other.rejected[other.kernel] = reason
                    other.kernel, other.speedup = "dense", 1.0
            return
