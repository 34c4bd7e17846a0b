"""Builds sparsearch's C++ CPU kernels on first use and caches them across processes.

Each source file in ``kernels/`` is compiled with ``torch.utils.cpp_extension.load`` into
``$SPARSEARCH_CACHE_DIR/extensions`` (default ``~/.cache/sparsearch``), keyed by the
source, torch, Python, the CPU's instruction set and the flags, so later processes load
it in milliseconds. A build that fails is reported once per process, with the compiler's
own complaint, and the kernels it would have served say they are unavailable: their
layers run on a plain-torch kernel instead.
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

__all__ = ["build_extension"]

log = logging.getLogger("sparsearch.kernels")
# torch.utils.cpp_extension (imported here to build the kernels, and by the benchmark Timer
# export tunes with) warns "No CUDA runtime is found" on every CPU-only import: noise for a
# CPU kernel, printed in the middle of a search's report. Real build errors still raise.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

_CFLAGS = ["-O3", "-march=native"]

_lock = threading.Lock()
# Per source name: None when loaded, else why it cannot be.
_built: dict[str, str | None] = {}


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


def build_extension(name: str, *, what: str, fallback: str) -> str | None:
    """Builds (or loads the cached) ``kernels/{name}.cpp`` once per process.

    Args:
        name: the source's stem; its ops register themselves under ``torch.ops``.
        what: what the source holds, for messages ("the N:M C++ kernel").
        fallback: what runs instead when the build fails, for the warning.

    Returns:
        None when the ops are loaded, else why not.
    """
    with _lock:
        if name in _built:
            return _built[name]
        source_path = Path(__file__).with_name(f"{name}.cpp")
        try:
            from torch.utils.cpp_extension import load

            source = source_path.read_bytes()
            key = hashlib.sha256(b"\0".join([
                source, torch.__version__.encode(), sys.version.encode(),
                _cpu_fingerprint().encode(), " ".join(_CFLAGS).encode(),
                os.environ.get("CXX", "").encode(),
            ])).hexdigest()[:16]
            build_dir = _cache_dir() / f"{name}_{key}"
            build_dir.mkdir(parents=True, exist_ok=True)
            if not any(build_dir.glob("*.so")):
                log.info("sparsearch.kernels: building %s once, into %s", what, build_dir)
            load(name=f"sparsearch_{name}_{key}", sources=[str(source_path)],
                 extra_cflags=_CFLAGS, build_directory=str(build_dir), is_python_module=False,
                 verbose=False)
            _built[name] = None
        except Exception as err:  # noqa: BLE001 (any build failure means: fall back)
            reason = f"{what} failed to build ({_first_error(err)})"
            log.warning("sparsearch.kernels: %s; %s instead", reason, fallback)
            _built[name] = reason
        return _built[name]
