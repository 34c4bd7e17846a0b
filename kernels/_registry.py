"""The kernel registry: every way sparsearch can multiply by a layer's weight.

A kernel states the weight formats and devices it serves. It is stateless: ``prepare``
turns a stored weight into runtime operands once (at load), ``linear`` runs
``x [rows, in] -> [rows, out]`` with them. Layers keep the operands, so one kernel object
serves every layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from sparsearch.catalogue import Catalogue

from ._formats import SparseWeight

__all__ = [
    "KERNELS",
    "Kernel",
    "KernelUnavailable",
    "get_kernel",
    "kernels_for",
    "list_kernels",
    "register_kernel",
]

# Runtime operands of one layer: tensors (moved with the layer) and plain ints.
Operands = dict[str, Any]


class KernelUnavailable(RuntimeError):
    """Raised by ``Kernel.prepare`` when the kernel cannot run this weight here."""


class Kernel(ABC):
    """One sparse (or dense) matrix-multiply implementation.

    Attributes:
        name: registry name, recorded in export manifests.
        formats: the weight formats it runs.
        devices: the device types it runs on (``"cpu"``, ``"cuda"``).
    """

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]
    devices: ClassVar[tuple[str, ...]]

    def unavailable_reason(self, weight: SparseWeight, *, device: torch.device,
                           dtype: torch.dtype) -> str | None:
        """Why the kernel cannot run ``weight`` on ``device`` in ``dtype``; None if it can."""
        if weight.format not in self.formats:
            return f"serves formats {list(self.formats)}, not {weight.format!r}"
        if device.type not in self.devices:
            return f"runs on {list(self.devices)}, not {device.type}"
        return None

    @abstractmethod
    def prepare(self, weight: SparseWeight, *, device: torch.device,
                dtype: torch.dtype) -> Operands:
        """Builds the runtime operands for ``weight`` on ``device``.

        Raises:
            KernelUnavailable: when this weight cannot run here after all.
        """

    @abstractmethod
    def linear(self, operands: Operands, x: torch.Tensor,
               bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x [rows, in] -> x @ W.T + bias [rows, out]`` (the result may be a strided view)."""


# One instance per kernel: kernels are stateless, layers keep the operands.
KERNELS: Catalogue[Kernel] = Catalogue("kernel")


def register_kernel(name: str) -> Callable[[type[Kernel]], type[Kernel]]:
    """Class decorator: registers one instance of the kernel under ``name``."""

    def wrap(cls: type[Kernel]) -> type[Kernel]:
        cls.name = name
        KERNELS.register(name, cls())
        return cls

    return wrap


def list_kernels(*, format: str | None = None, device: str | None = None) -> list[str]:
    """Registered kernel names, optionally only those serving ``format`` on ``device``."""
    return [name for name in KERNELS.names()
            if (format is None or format in KERNELS.get(name).formats)
            and (device is None or device in KERNELS.get(name).devices)]


def get_kernel(name: str) -> Kernel:
    """The kernel registered as ``name``; ``UnknownName`` (one line) when there is none."""
    return KERNELS.get(name)


def kernels_for(weight: SparseWeight, *, device: torch.device | str,
                dtype: torch.dtype = torch.float32) -> tuple[list[Kernel], dict[str, str]]:
    """The kernels that can run ``weight`` here, and why each other kernel cannot.

    Returns:
        ``(kernels, skipped)``: applicable kernels (``dense`` first), and a reason per
        registered kernel that does not apply.
    """
    device = torch.device(device)
    usable: list[Kernel] = []
    skipped: dict[str, str] = {}
    for name in sorted(KERNELS, key=lambda n: (n != "dense", n)):
        kernel = KERNELS.get(name)
        reason = kernel.unavailable_reason(weight, device=device, dtype=dtype)
        if reason is None:
            usable.append(kernel)
        else:
            skipped[name] = reason
    return usable, skipped
