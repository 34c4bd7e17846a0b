"""The 8 DARTS primitives, as a registry, with every convolution built by an injected factory.

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search" (ICLR 2019, arXiv
1806.09055), ``cnn/operations.py``; DASS (Mousavi et al., arXiv 2207.06968) keeps the same
8 primitives and makes every parametric op sparse by building its convolutions with
``SubnetConv``. Here the convolution factory ``conv`` is an argument: the cell supernet
passes one that builds ``MaskedConv2d`` layers sharing its mask choice, the derived network
passes ``nn.Conv2d`` (then trained and pruned by a recipe like any other model).

Register a primitive with ``@register_primitive(name)`` on a factory
``f(channels, stride, *, conv, affine) -> nn.Module``; ``list_primitives()`` lists them in
DARTS's order and ``create_primitive`` builds one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

from sparsearch.catalogue import Catalogue

__all__ = [
    "ConvFactory",
    "FactorizedReduce",
    "ReLUConvBN",
    "create_primitive",
    "list_primitives",
    "plain_conv",
    "register_primitive",
]


class ConvFactory(Protocol):
    """Builds a bias-free convolution: ``conv(c_in, c_out, k, *, stride, padding, ...)``."""

    def __call__(self, c_in: int, c_out: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1) -> nn.Module: ...


def plain_conv(c_in: int, c_out: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
               dilation: int = 1, groups: int = 1) -> nn.Module:
    """A dense, bias-free ``nn.Conv2d`` (the derived network's convolutions)."""
    return nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding,
                     dilation=dilation, groups=groups, bias=False)


class ReLUConvBN(nn.Sequential):
    """ReLU -> conv -> BN: DARTS's preprocessing of a cell's inputs."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, *, stride: int, padding: int,
                 conv: ConvFactory, affine: bool = True) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         conv(c_in, c_out, kernel_size, stride=stride, padding=padding),
                         nn.BatchNorm2d(c_out, affine=affine))


class _DilConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, *, stride: int, padding: int,
                 dilation: int, conv: ConvFactory, affine: bool) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            conv(c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                 groups=c_in),
            conv(c_in, c_out, 1),
            nn.BatchNorm2d(c_out, affine=affine))


class _SepConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, *, stride: int, padding: int,
                 conv: ConvFactory, affine: bool) -> None:
        super().__init__(
            _DilConv(c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=1,
                     conv=conv, affine=affine),
            _DilConv(c_in, c_out, kernel_size, stride=1, padding=padding, dilation=1,
                     conv=conv, affine=affine))


class _Zero(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset stride-2 1x1 convolutions (DARTS)."""

    def __init__(self, c_in: int, c_out: int, *, conv: ConvFactory, affine: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = conv(c_in, c_out // 2, 1, stride=2)
        self.conv_2 = conv(c_in, c_out - c_out // 2, 1, stride=2)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:] if x.shape[-1] > 1 else x
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


Factory = Callable[..., nn.Module]
PRIMITIVES: Catalogue[Factory] = Catalogue("primitive")


def register_primitive(name: str) -> Callable[[Factory], Factory]:
    """Registers ``f(channels, stride, *, conv, affine) -> nn.Module`` as a primitive."""
    return PRIMITIVES.decorator(name)


def list_primitives() -> list[str]:
    """The primitives in registration order (DARTS's ``PRIMITIVES`` first)."""
    return PRIMITIVES.in_order()


def create_primitive(name: str, channels: int, stride: int, *, conv: ConvFactory,
                     affine: bool = True) -> nn.Module:
    """Builds a primitive op mapping ``channels`` to ``channels`` at ``stride``."""
    return PRIMITIVES.get(name)(channels, stride, conv=conv, affine=affine)


@register_primitive("none")
def _none(c: int, stride: int, *, conv: ConvFactory, affine: bool) -> nn.Module:
    return _Zero(stride)


@register_primitive("max_pool_3x3")
def _max_pool(c: int, stride: int, *, conv: ConvFactory, affine: bool) -> nn.Module:
    return nn.MaxPool2d(3, stride=stride, padding=1)


@register_primitive("avg_pool_3x3")
def _avg_pool(c: int, stride: int, *, conv: ConvFactory, affine: bool) -> nn.Module:
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


@register_primitive("skip_connect")
def _skip(c: int, stride: int, *, conv: ConvFactory, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(c, c, conv=conv, affine=affine)


@register_primitive("sep_conv_3x3")
def _sep3(c: int, stride: int, *, conv: ConvFactory, affine: bool) -> nn.Module:
    return _SepConv(c, c, 3, stride=stride, padding=1, conv=conv, affine=affine)


@register_primitive("sep_conv_5x5")
def _sep5(c: int, stride: int, *, conv: ConvFactory, affine: bool) -> nn.Module:
    return _SepConv(c, c, 5, stride=stride, padding=2, conv=conv, affine=affine)


@register_primitive("dil_conv_3x3")
def _dil3(c: int, stride: int, *, conv: ConvFactory, affine: bool) -> nn.Module:
    return _DilConv(c, c, 3, stride=stride, padding=2, dilation=2, conv=conv, affine=affine)


@register_primitive("dil_conv_5x5")
def _dil5(c: int, stride: int, *, conv: ConvFactory, affine: bool) -> nn.Module:
    return _DilConv(c, c, 5, stride=stride, padding=4, dilation=2, conv=conv, affine=affine)
