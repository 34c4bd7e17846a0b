"""Inference layers that run a chosen kernel per batch-size class.

``KernelLinear`` and ``KernelConv2d`` replace ``nn.Linear``/``nn.Conv2d`` in a loaded model.
Each holds one kernel per batch-size class (1, 32, 256 by default) and picks the class by
the input's batch size (``x.shape[0]``): the nearest class on a log scale, so batch 6
runs what was fastest at 32. Layers where dense won every class stay plain torch modules,
so they cost nothing extra.

Conv2d runs as a GEMM: 1x1 directly on the pixels, k x k on ``F.unfold`` columns (ordered
like the weight's GEMM layout, see ``_detect.gemm_view``). The dense route of a conv is
``F.conv2d`` itself.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from sparsearch.export._detect import weight_from_gemm_view
from sparsearch.kernels import Kernel, KernelUnavailable, Operands, SparseWeight, get_kernel

__all__ = ["KernelConv2d", "KernelLinear", "RouteUnavailable", "batch_class", "build_layer",
           "layer_geometry"]


def _class_bounds(batch_sizes: Sequence[int]) -> list[float]:
    """Geometric midpoints between consecutive classes."""
    sizes = sorted(batch_sizes)
    return [math.sqrt(a * b) for a, b in zip(sizes[:-1], sizes[1:])]


def batch_class(batch: int, batch_sizes: Sequence[int]) -> int:
    """The batch-size class (one of ``batch_sizes``) that serves a batch of ``batch``."""
    sizes = sorted(batch_sizes)
    return sizes[bisect.bisect_right(_class_bounds(sizes), batch)]


class _KernelRoutes(nn.Module):
    """One kernel and its operands per batch-size class; operands move with ``.to()``.

    A dense class has no kernel: it calls ``F.linear``/``F.conv2d`` on ``self.weight``
    directly, so a layer that is sparse only at large batches costs small batches no more
    than a bisect and an attribute lookup over the plain module.
    """

    def __init__(self, routes: Sequence[tuple[Kernel, Operands] | None],
                 batch_sizes: Sequence[int], bias: torch.Tensor | None,
                 dense_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.batch_sizes = sorted(batch_sizes)
        self._bounds = _class_bounds(self.batch_sizes)
        self._kernels = [None if route is None else route[0] for route in routes]
        self._operands = [None if route is None else route[1] for route in routes]
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        self.weight = (None if dense_weight is None
                       else nn.Parameter(dense_weight.detach(), requires_grad=False))

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        super()._apply(fn, recurse)
        moved: dict[int, Operands] = {}
        for i, operands in enumerate(self._operands):
            if operands is None:
                continue
            if id(operands) not in moved:
                moved[id(operands)] = {k: fn(v) if isinstance(v, torch.Tensor) else v
                                       for k, v in operands.items()}
            self._operands[i] = moved[id(operands)]
        return self

    def kernel_names(self) -> dict[int, str]:
        return {b: "dense" if k is None else k.name
                for b, k in zip(self.batch_sizes, self._kernels)}

    def extra_repr(self) -> str:
        routes = ", ".join(f"{b}: {name}" for b, name in self.kernel_names().items())
        return f"kernels={{{routes}}}"


class KernelLinear(_KernelRoutes):
    """``nn.Linear`` on a sparse kernel chosen per batch-size class (inference only)."""

    def __init__(self, in_features: int, out_features: int, *,
                 routes: Sequence[tuple[Kernel, Operands] | None], batch_sizes: Sequence[int],
                 bias: torch.Tensor | None, dense_weight: torch.Tensor | None) -> None:
        super().__init__(routes, batch_sizes, bias, dense_weight)
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = bisect.bisect_right(self._bounds, x.shape[0] if x.dim() > 1 else 1)
        kernel = self._kernels[i]
        if kernel is None:
            return F.linear(x, self.weight, self.bias)
        x2 = x if x.dim() == 2 else x.reshape(-1, self.in_features)
        # Contiguous, so callers may .view() the output as they would nn.Linear's.
        y = kernel.linear(self._operands[i], x2, self.bias).contiguous()
        return y if x.dim() == 2 else y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " + \
            super().extra_repr()


class KernelConv2d(_KernelRoutes):
    """``nn.Conv2d`` (groups=1, zero padding) as a GEMM on a kernel chosen per batch class."""

    def __init__(self, geometry: dict[str, Any], *, layout: str,
                 routes: Sequence[tuple[Kernel, Operands] | None], batch_sizes: Sequence[int],
                 bias: torch.Tensor | None, dense_weight: torch.Tensor | None) -> None:
        super().__init__(routes, batch_sizes, bias, dense_weight)
        self.in_channels = geometry["in_channels"]
        self.out_channels = geometry["out_channels"]
        self.kernel_size = tuple(geometry["kernel_size"])
        self.stride = tuple(geometry["stride"])
        self.padding = tuple(geometry["padding"])
        self.dilation = tuple(geometry["dilation"])
        self.layout = layout
        self._pointwise = self.kernel_size == (1, 1) and self.padding == (0, 0)

    def _columns(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        batch = x.shape[0]
        if self._pointwise:
            if self.stride != (1, 1):
                x = x[:, :, :: self.stride[0], :: self.stride[1]]
            height, width = x.shape[2:]
            return x.permute(0, 2, 3, 1).reshape(-1, self.in_channels), height, width
        kh, kw = self.kernel_size
        height = (x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) \
            // self.stride[0] + 1
        width = (x.shape[3] + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) \
            // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding,
                        stride=self.stride)
        if self.layout == "ohwi":
            cols = cols.view(batch, self.in_channels, kh * kw, -1).permute(0, 3, 2, 1)
        else:
            cols = cols.transpose(1, 2)
        return cols.reshape(batch * height * width, -1), height, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        i = bisect.bisect_right(self._bounds, x.shape[0])
        kernel = self._kernels[i]
        if kernel is None:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        else:
            cols, height, width = self._columns(x)
            y = kernel.linear(self._operands[i], cols, self.bias)
            y = y.reshape(x.shape[0], height, width, self.out_channels).permute(0, 3, 1, 2)
            y = y.contiguous()
        return y.squeeze(0) if unbatched else y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, " + super().extra_repr())


class RouteUnavailable(KernelUnavailable):
    """A layer's kernel cannot be prepared here; ``kernel`` names it."""

    def __init__(self, kernel: str, reason: str) -> None:
        super().__init__(f"{kernel}: {reason}")
        self.kernel = kernel
        self.reason = reason


def layer_geometry(module: nn.Module) -> dict[str, Any] | None:
    """What ``build_layer`` needs to rebuild ``module``; None if it cannot be swapped.

    Only plain ``nn.Linear`` and ``nn.Conv2d`` (groups 1, zero padding given as numbers)
    qualify: subclasses may do more in ``forward`` (timm's StdConv2d standardises its
    weight; MultiheadAttention reads ``out_proj.weight`` without calling it).
    """
    cls = type(module)
    if parametrize.is_parametrized(module):
        cls = cls.__bases__[0]  # parametrize swaps in a generated subclass
    if cls is nn.Linear:
        return {"type": "linear", "in_features": module.in_features,
                "out_features": module.out_features, "bias": module.bias is not None}
    if (cls is nn.Conv2d and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str)):
        return {"type": "conv2d", "in_channels": module.in_channels,
                "out_channels": module.out_channels, "kernel_size": list(module.kernel_size),
                "stride": list(module.stride), "padding": list(module.padding),
                "dilation": list(module.dilation), "bias": module.bias is not None}
    return None


def dense_module(geometry: dict[str, Any], weight: torch.Tensor,
                 bias: torch.Tensor | None) -> nn.Module:
    """A plain ``nn.Linear``/``nn.Conv2d`` holding ``weight`` (the module's own shape)."""
    if geometry["type"] == "linear":
        module: nn.Module = nn.Linear(geometry["in_features"], geometry["out_features"],
                                      bias=bias is not None, device="meta")
    else:
        module = nn.Conv2d(geometry["in_channels"], geometry["out_channels"],
                           tuple(geometry["kernel_size"]), stride=tuple(geometry["stride"]),
                           padding=tuple(geometry["padding"]),
                           dilation=tuple(geometry["dilation"]), bias=bias is not None,
                           device="meta")
    module.weight = nn.Parameter(weight.detach(), requires_grad=False)
    if bias is not None:
        module.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return module


def weight_shape(geometry: dict[str, Any]) -> tuple[int, ...]:
    if geometry["type"] == "linear":
        return geometry["out_features"], geometry["in_features"]
    return (geometry["out_channels"], geometry["in_channels"], *geometry["kernel_size"])


def build_layer(geometry: dict[str, Any], weight: SparseWeight, *, layout: str,
                kernels: Sequence[str], batch_sizes: Sequence[int], bias: torch.Tensor | None,
                device: torch.device | str, dtype: torch.dtype) -> nn.Module:
    """The inference module for one layer.

    Args:
        geometry: from ``layer_geometry``.
        weight: the stored weight (GEMM view in ``layout``).
        layout: ``"oi"`` or ``"ohwi"``.
        kernels: kernel name per batch-size class, aligned with sorted ``batch_sizes``.
        batch_sizes: the batch-size classes.
        bias: the layer's bias or None.
        device: where the layer runs.
        dtype: its floating-point dtype.

    Returns:
        A plain ``nn.Linear``/``nn.Conv2d`` when every class runs dense, else a
        ``KernelLinear``/``KernelConv2d``.

    Raises:
        RouteUnavailable: when a kernel cannot prepare this weight here.
    """
    device = torch.device(device)
    bias = None if bias is None else bias.to(device=device, dtype=dtype)
    shape = weight_shape(geometry)

    def dense_weight() -> torch.Tensor:
        return weight_from_gemm_view(weight.to_dense(), shape, layout).to(device=device,
                                                                          dtype=dtype)

    if all(name == "dense" for name in kernels):
        return dense_module(geometry, dense_weight(), bias)
    prepared: dict[str, Operands] = {}
    for name in dict.fromkeys(kernels):
        if name == "dense":
            continue
        try:
            prepared[name] = get_kernel(name).prepare(weight, device=device, dtype=dtype)
        except KernelUnavailable as err:
            raise RouteUnavailable(name, str(err)) from err
    routes = [None if name == "dense" else (get_kernel(name), prepared[name]) for name in kernels]
    kept = dense_weight() if "dense" in kernels else None
    if geometry["type"] == "linear":
        return KernelLinear(geometry["in_features"], geometry["out_features"], routes=routes,
                            batch_sizes=batch_sizes, bias=bias, dense_weight=kept)
    return KernelConv2d(geometry, layout=layout, routes=routes, batch_sizes=batch_sizes,
                        bias=bias, dense_weight=kept)
