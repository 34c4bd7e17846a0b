"""Our N:M CPU kernel (C++, ``nm_cpu.cpp``), built on first use and cached.

torch has no CPU kernel for N:M (1:4, 1:8, 2:8, 1:16, ...); CSR over an N:M weight pays for
general indices and loses at batch 1. This kernel keeps one uint8 position per weight and
picks inputs with in-register permutes (see the C++ file for the layout).

The extension is compiled with ``torch.utils.cpp_extension`` the first time a layer asks
for it (about 20 s on two cores) into ``$SPARSEARCH_CACHE_DIR`` (default
``~/.cache/sparsearch``), keyed by the source, torch, Python and CPU, so later processes
load it in milliseconds. If the build fails the kernel reports itself unavailable, with
one warning, and N:M layers run on the plain-torch ``gather_sum`` kernel instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import threading
from pathlib import Path

import torch
import torch.nn.functional as F

from ._formats import SparseWeight, nm_view
from ._registry import Kernel, KernelUnavailable, Operands, register_kernel

__all__ = ["NMCpuKernel", "build_nm_cpu", "pack_nm_rows"]

log = logging.getLogger("sparsearch.kernels")
# torch.utils.cpp_extension (imported here to build the kernel, and by the benchmark Timer
# export tunes with) warns "No CUDA runtime is found" on every CPU-only import: noise for a
# CPU kernel, printed in the middle of a search's report. Real build errors still raise.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

_SOURCE = Path(__file__).with_name("nm_cpu.cpp")
_CFLAGS = ["-O3", "-march=native"]
_ROWS = 8  # rows per vector in the C++ layout
_SUPPORTED_M = (4, 8, 16, 32)

_lock = threading.Lock()
_state: dict[str, str | bool] = {}


def _cpu_fingerprint() -> str:
    """Identifies the instruction set, since the build uses ``-march=native``."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"


def _cache_dir() -> Path:
    root = os.environ.get("SPARSEARCH_CACHE_DIR") or Path.home() / ".cache" / "sparsearch"
    return Path(root) / "extensions"


def _first_error(err: Exception) -> str:
    """The compiler's own complaint out of ninja's output (the last line is ninja's)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines[1:] if not line.startswith(("FAILED", "ninja:", "["))
              and ("error" in line.lower() or "not found" in line.lower())]
    return (useful or lines or [repr(err)])[0][:200]


def build_nm_cpu() -> str | None:
    """Builds (or loads the cached) extension once per process.

    Returns:
        None when ``torch.ops.sparsearch_kernels.nm_linear`` is ready, else why not.
    """
    with _lock:
        if "ready" in _state:
            return None if _state["ready"] else str(_state["reason"])
        try:
            from torch.utils.cpp_extension import load

            source = _SOURCE.read_bytes()
            key = hashlib.sha256(b"\0".join([
                source, torch.__version__.encode(), sys.version.encode(),
                _cpu_fingerprint().encode(), " ".join(_CFLAGS).encode(),
                os.environ.get("CXX", "").encode(),
            ])).hexdigest()[:16]
            build_dir = _cache_dir() / f"nm_cpu_{key}"
            build_dir.mkdir(parents=True, exist_ok=True)
            if not any(build_dir.glob("*.so")):
                log.info("sparsearch.kernels: building the N:M CPU kernel once, into %s",
                         build_dir)
            load(name=f"sparsearch_nm_cpu_{key}", sources=[str(_SOURCE)], extra_cflags=_CFLAGS,
                 build_directory=str(build_dir), is_python_module=False, verbose=False)
            _state["ready"] = True
            return None
        except Exception as err:  # noqa: BLE001 (any build failure means: fall back)
            reason = f"the N:M C++ kernel failed to build ({_first_error(err)})"
            log.warning("sparsearch.kernels: %s; N:M layers use the plain-torch "
                        "gather_sum kernel instead", reason)
            _state.update(ready=False, reason=reason)
            return reason


def pack_nm_rows(values: torch.Tensor, positions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``[out, groups, n]`` -> the C++ layout ``[blocks, groups, n, 8]`` (rows padded to 8)."""
    rows, groups, n = values.shape
    pad = -rows % _ROWS
    blocks = (rows + pad) // _ROWS

    def interleave(t: torch.Tensor) -> torch.Tensor:
        t = F.pad(t, (0, 0, 0, 0, 0, pad))
        return t.reshape(blocks, _ROWS, groups, n).permute(0, 2, 3, 1).contiguous()

    return interleave(values), interleave(positions.to(torch.uint8))


@register_kernel("nm_cpu")
class NMCpuKernel(Kernel):
    """N:M on CPU, fp32, M in 4, 8, 16, 32 (C++ extension)."""

    formats = ("nm", "semi24")
    devices = ("cpu",)

    def unavailable_reason(self, weight: SparseWeight, *, device: torch.device,
                           dtype: torch.dtype) -> str | None:
        reason = super().unavailable_reason(weight, device=device, dtype=dtype)
        if reason is not None:
            return reason
        if dtype != torch.float32:
            return f"fp32 only, not {dtype}"
        if weight.params.get("m") not in _SUPPORTED_M:
            return f"M must be one of {list(_SUPPORTED_M)}"
        return build_nm_cpu()

    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        reason = build_nm_cpu()  # a fresh process loading an export gets here first
        if reason is not None:
            raise KernelUnavailable(reason)
        values, positions, _, m = nm_view(weight)
        packed_values, packed_positions = pack_nm_rows(values.float(), positions)
        return {"values": packed_values, "indices": packed_positions,
                "out_features": weight.shape[0], "m": m}

    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.ops.sparsearch_kernels.nm_linear(
            x, operands["values"], operands["indices"], operands["out_features"], operands["m"])
        return y if bias is None else y.add_(bias)
