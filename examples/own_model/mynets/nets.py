"""A small network of the user's: a Conv1d over the rows of an 8x8 image, then two Linears."""

from __future__ import annotations

import torch
from torch import nn


class RowNet(nn.Module):
    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Conv1d(8, width, 3, padding=1)
        self.body = nn.Linear(width * 8, width)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # [B, 1, 8, 8] -> [B, 8, 8]: the 8 rows are the channels of an 8-step signal
        h = torch.relu(self.stem(x.flatten(1, 2))).flatten(1)
        return self.out(torch.relu(self.body(h)))


def build(*, width: int = 32, num_classes: int = 10) -> RowNet:
    return RowNet(width, num_classes)
