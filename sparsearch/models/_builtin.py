"""Small built-in nets for the digits set (8x8 grey images, 10 classes) and similar data."""

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
