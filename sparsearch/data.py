"""Datasets as in-memory tensors with a fixed, seeded train/val/test split.

scikit-learn's digits set ships inside scikit-learn, so the default needs no download.
The val split drives the search; the test split is only read for the Pareto subnets.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DataSplits", "iterate_batches", "load_digits_splits"]


@dataclass(frozen=True)
class DataSplits:
    """Train, val and test tensors of one dataset.

    Attributes:
        train, val, test: (inputs, targets) pairs; inputs are float32, targets int64.
        in_shape: shape of one input sample, without the batch dimension.
        num_classes: number of classes.
        name: the dataset's name.
    """

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    in_shape: tuple[int, ...]
    num_classes: int
    name: str

    def to(self, device: torch.device | str) -> DataSplits:
        def move(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return pair[0].to(device), pair[1].to(device)

        return DataSplits(move(self.train), move(self.val), move(self.test), self.in_shape,
                          self.num_classes, self.name)


def split_arrays(
    inputs: np.ndarray, targets: np.ndarray, *, val_fraction: float, test_fraction: float,
    seed: int, name: str,
) -> DataSplits:
    """Splits arrays into stratified train/val/test tensors, the same for the same seed."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(targets))
    rest, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                      stratify=targets)
    train_idx, val_idx = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction),
                                          random_state=seed, stratify=targets[rest])

    def pair(sel: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(inputs[sel], dtype=torch.float32),
                torch.as_tensor(targets[sel], dtype=torch.int64))

    return DataSplits(pair(train_idx), pair(val_idx), pair(test_idx),
                      tuple(inputs.shape[1:]), int(targets.max()) + 1, name)


def load_digits_splits(*, val_fraction: float = 0.2, test_fraction: float = 0.2,
                       seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), scaled to [0, 1], as (1, 8, 8)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return split_arrays(images, digits.target, val_fraction=val_fraction,
                        test_fraction=test_fraction, seed=seed, name="digits")


def iterate_batches(
    pair: tuple[torch.Tensor, torch.Tensor], batch_size: int, *,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yields mini-batches; shuffled when a generator is given."""
    inputs, targets = pair
    n = len(targets)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(inputs.device)
    for start in range(0, n, batch_size):
        sel = order[start:start + batch_size]
        yield inputs[sel], targets[sel]
