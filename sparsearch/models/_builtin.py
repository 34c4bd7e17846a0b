"""Small built-in nets for the digits set (8x8 grey images, 10 classes), MNIST-1D and similar.

``cnn1d`` is the 1-D CNN of the MNIST-1D paper (Greydanus, arXiv 2011.14439,
``ConvBase`` in github.com/greydanus/mnist1d ``models.py``): three Conv1d layers of 25
channels (kernel 5, 3, 3; stride 2; padding 1), ReLU, then one Linear on the flattened
features (25 x 5 = 125 for the 40-step signals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sparsearch.models._registry import register_model


class MLP(nn.Module):
    """Flatten -> (Linear -> ReLU) x len(hidden) -> Linear head.

    Layers are named ``fc1``, ``fc2``, ... and ``head`` so that space files can select them.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        widths = [in_features, *hidden]
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            self.add_module(f"fc{i}", nn.Linear(w_in, w_out))
        self.n_hidden = len(hidden)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(1, self.n_hidden + 1):
            x = self.dropout(torch.relu(getattr(self, f"fc{i}")(x)))
        return self.head(x)


class SmallCNN(nn.Module):
    """conv1 -> conv2 -> pool -> conv3 -> global pool -> head, for small images."""

    def __init__(self, in_chans: int, channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.conv1 = nn.Conv2d(in_chans, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.head = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.conv3(x))
        return self.head(x.mean(dim=(2, 3)))


class Conv1dNet(nn.Module):
    """conv1 -> conv2 -> conv3 (stride 2 each) -> flatten -> head, for 1-D signals."""

    def __init__(self, in_shape: tuple[int, int], channels: Sequence[int], num_classes: int,
                 kernel_sizes: Sequence[int] = (5, 3, 3)) -> None:
        super().__init__()
        in_chans, length = in_shape
        widths = [in_chans, *channels]
        for i, (c_in, c_out, k) in enumerate(zip(widths[:-1], widths[1:], kernel_sizes),
                                             start=1):
            self.add_module(f"conv{i}", nn.Conv1d(c_in, c_out, k, stride=2, padding=1))
            length = (length + 2 - k) // 2 + 1
        if length < 1:
            raise ValueError(f"model.kind=cnn1d: input shape {tuple(in_shape)} is too short "
                             f"for its three stride-2 convolutions")
        self.n_conv = len(channels)
        self.head = nn.Linear(widths[-1] * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.n_conv + 1):
            x = torch.relu(getattr(self, f"conv{i}")(x))
        return self.head(x.flatten(1))


@register_model("mlp")
def mlp(*, in_shape: tuple[int, ...], num_classes: int, hidden: Sequence[int] = (256, 256),
        dropout: float = 0.0, **_: object) -> nn.Module:
    return MLP(math.prod(in_shape), list(hidden), num_classes, dropout)


@register_model("cnn")
def cnn(*, in_shape: tuple[int, ...], num_classes: int,
        channels: Sequence[int] = (32, 64, 64), **_: object) -> nn.Module:
    if len(in_shape) != 3:
        raise ValueError(f"model.kind=cnn needs image data (C, H, W), got input shape {in_shape}")
    return SmallCNN(in_shape[0], list(channels), num_classes)


@register_model("cnn1d")
def cnn1d(*, in_shape: tuple[int, ...], num_classes: int,
          channels: Sequence[int] = (25, 25, 25), **_: object) -> nn.Module:
    if len(in_shape) != 2:
        raise ValueError(f"model.kind=cnn1d needs 1-D signals (C, L), got input shape "
                         f"{tuple(in_shape)}")
    if len(channels) != 3:
        raise ValueError(f"model.channels must list 3 widths for cnn1d, got {list(channels)}")
    return Conv1dNet((in_shape[0], in_shape[1]), list(channels), num_classes)
