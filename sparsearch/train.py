"""The training and evaluation loop that every recipe builds on.

Recipes decide *when* masks change; this module only runs epochs: forward, loss, backward,
optional hooks (SR-STE's gradient term, per-step mask updates), optimiser step. A loss
that is not finite stops training with ``DivergedError`` so the trial is recorded failed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "DivergedError",
    "TrainSettings",
    "accuracy_and_loss",
    "make_optimizer",
    "train_epoch",
]

Batch = tuple[torch.Tensor, torch.Tensor]


class DivergedError(RuntimeError):
    """Training produced a non-finite loss."""


@dataclass(frozen=True)
class TrainSettings:
    """How one subnet is trained (from the ``train`` config, overridden by the spec).

    Attributes:
        epochs: total epochs of the trial, all recipe phases together.
        lr: learning rate.
        weight_decay: L2 weight decay.
        optimizer: adam | sgd (sgd uses momentum 0.9).
        batch_size: training batch size.
    """

    epochs: int = 20
    lr: float = 1e-2
    weight_decay: float = 0.0
    optimizer: str = "adam"
    batch_size: int = 64


def make_optimizer(params: Iterable[nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    """Builds the optimiser named in ``settings``."""
    params = [p for p in params if p.requires_grad]
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=0.9,
                               weight_decay=settings.weight_decay)
    raise ValueError(f"train.optimizer must be one of ['adam', 'sgd'], got {settings.optimizer!r}")


def train_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    after_backward: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> float:
    """Runs one epoch and returns the mean training loss.

    Args:
        model: the model, in place.
        batches: (inputs, targets) pairs on the model's device.
        optimizer: the optimiser over the trainable parameters.
        after_backward: called after ``backward``, before the step (gradient edits).
        after_step: called after each optimiser step (per-step mask updates).

    Raises:
        DivergedError: if a batch loss is NaN or infinite.
    """
    model.train()
    total, count = 0.0, 0
    for inputs, targets in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(inputs), targets)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise DivergedError(f"loss became {value} (try a lower lr)")
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        total += value * len(targets)
        count += len(targets)
    return total / max(count, 1)


@torch.no_grad()
def accuracy_and_loss(model: nn.Module, batches: Iterable[Batch]) -> tuple[float, float]:
    """Top-1 accuracy in [0, 1] and mean cross-entropy over ``batches``."""
    model.eval()
    correct, loss_sum, count = 0, 0.0, 0
    for inputs, targets in batches:
        logits = model(inputs)
        loss_sum += float(nn.functional.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(dim=1) == targets).sum())
        count += len(targets)
    return correct / max(count, 1), loss_sum / max(count, 1)
