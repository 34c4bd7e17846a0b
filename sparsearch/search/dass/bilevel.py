"""DASS's bi-level optimisation of a supernet, first or second order.

Mousavi et al., "DASS" (arXiv 2207.06968), on top of DARTS (Liu et al., arXiv 1806.09055):

    min_alpha  L_val(W*(alpha) * M(S*(alpha)), alpha) + lambda * E_alpha[cost]
    s.t.       W*, S* = argmin_{W,S} L_train(W * M(S), alpha)

The train split is cut in two (``split_for_alpha``, DARTS's half and half): each step
takes one batch of the first part for the lower level (the phase's parameters) and one
batch of the held-out part for alpha (L_val above is the loss on that part, never on the
val split, which only scores derived subnets), on the *masked* supernet: DASS's
sparsity-aware objective (``architect.py`` sets the unrolled model to the current prune
rate). The cost term E[cost] is the expected density or FLOPs under softmax(alpha),
normalised to the dense network. Phases (DASS ``train_search.py``): warm-up is dense and
trains W only (alpha gets no gradient while the masks are off, so it takes no steps); mask
learning trains the scores S with W frozen; fine-tune trains W with the masks fixed. Alpha
is stepped in mask learning too (DASS's default trainer leaves it frozen there), so a
short schedule gives alpha more steps on the masked supernet.

Second order (DARTS eq. 7-8): ``grad_alpha L_val(w', alpha) - xi * (grad_alpha L_train(w+)
- grad_alpha L_train(w-)) / (2 eps)`` with ``w' = w - xi grad_w L_train``,
``w+- = w +- eps grad_w' L_val`` and ``eps = 0.01 / ||grad_w' L_val||``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from sparsearch.data import iterate_batches
from sparsearch.ops.supernet import Supernet
from sparsearch.train import DivergedError, TrainSettings, make_optimizer

__all__ = ["AlphaSettings", "BilevelTrainer", "DeadlineReached", "split_for_alpha",
           "supernet_accuracy"]

Batch = tuple[torch.Tensor, torch.Tensor]
GRAD_CLIP = 5.0  # DARTS's weight-gradient clip


class DeadlineReached(RuntimeError):
    """The search's wall-clock budget ran out during supernet training."""


@dataclass(frozen=True)
class AlphaSettings:
    """How alpha is trained: Adam lr (betas 0.5/0.999, wd 1e-3 as DARTS), cost weight."""

    lr: float
    lam: float
    cost: str
    second_order: bool = False


def split_for_alpha(train: Batch, *, fraction: float, seed: int) -> tuple[Batch, Batch]:
    """Cuts the train split into (weights part, alpha part), ``fraction`` of it for alpha.

    A seeded permutation, so the warm-up and every lambda of a search hold out the same
    samples.
    """
    inputs, targets = train
    n = len(targets)
    held = min(max(round(n * fraction), 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(inputs.device)
    rest, alpha = order[held:], order[:held]
    return (inputs[rest], targets[rest]), (inputs[alpha], targets[alpha])


class BilevelTrainer:
    """Alternates lower-level steps on one part of the train split with alpha steps on the
    other; it is given no other data.

    Args:
        supernet: the supernet, on its device.
        weights_data: the part W and S train on (on the supernet's device).
        alpha_data: the held-out part alpha trains on (``split_for_alpha``).
        settings: optimiser, lr and batch size of the lower level.
        alpha: alpha's settings and the cost weight lambda.
        generator: seeds the batch order.
        deadline: ``time.time()`` after which training raises DeadlineReached.
    """

    def __init__(self, supernet: Supernet, *, weights_data: Batch, alpha_data: Batch,
                 settings: TrainSettings, alpha: AlphaSettings, generator: torch.Generator,
                 deadline: float | None = None) -> None:
        self.net = supernet
        self.weights_data = weights_data
        self.alpha_data = alpha_data
        self.settings = settings
        self.alpha = alpha
        self.generator = generator
        self.deadline = deadline
        self.alpha_opt = torch.optim.Adam(supernet.arch_parameters(), lr=alpha.lr,
                                          betas=(0.5, 0.999), weight_decay=1e-3)
        self._alpha_batches: Iterator[Batch] = iter(())
        self.steps = 0
        self.alpha_steps = 0

    def _alpha_batch(self) -> Batch:
        batch = next(self._alpha_batches, None)
        if batch is None:
            self._alpha_batches = iterate_batches(self.alpha_data, self.settings.batch_size,
                                                  generator=self.generator)
            batch = next(self._alpha_batches)
        return batch

    def _loss(self, batch: Batch) -> torch.Tensor:
        loss = F.cross_entropy(self.net(batch[0]), batch[1])
        if not math.isfinite(float(loss.detach())):
            raise DivergedError(f"supernet loss became {float(loss.detach())}")
        return loss

    def _alpha_objective(self, batch: Batch, lam: float) -> torch.Tensor:
        loss = self._loss(batch)
        if lam:
            # The cost term: lambda * E_alpha[cost], dense = 1.
            loss = loss + lam * self.net.expected_cost(self.alpha.cost)
        return loss

    def _first_order(self, val: Batch, lam: float) -> list[torch.Tensor]:
        return list(torch.autograd.grad(self._alpha_objective(val, lam),
                                        self.net.arch_parameters(), allow_unused=True))

    def _second_order(self, train: Batch, val: Batch, lam: float,
                      inner: list[nn.Parameter], xi: float) -> list[torch.Tensor]:
        arch = self.net.arch_parameters()
        saved = [p.detach().clone() for p in inner]
        grads = torch.autograd.grad(self._loss(train), inner, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(inner, grads):
                if g is not None:
                    p.sub_(xi * g)  # w' = w - xi * grad_w L_train(w, alpha)
        out = torch.autograd.grad(self._alpha_objective(val, lam), [*arch, *inner],
                                  allow_unused=True)
        d_alpha, d_inner = list(out[:len(arch)]), out[len(arch):]
        norm = math.sqrt(sum(float((g * g).sum()) for g in d_inner if g is not None))
        eps = 0.01 / max(norm, 1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, w, g in zip(inner, saved, d_inner):
                    p.copy_(w if g is None else w + sign * eps * g)  # w+- = w +- eps * dw'
            hessian.append(torch.autograd.grad(self._loss(train), arch, allow_unused=True))
        with torch.no_grad():
            for p, w in zip(inner, saved):
                p.copy_(w)
        for i, (gp, gm) in enumerate(zip(*hessian)):
            if gp is not None and gm is not None:
                d_alpha[i] = (d_alpha[i] if d_alpha[i] is not None else 0) - xi * (gp - gm) / (
                    2 * eps)
        return d_alpha

    def _alpha_step(self, train: Batch, lam: float, inner: list[nn.Parameter]) -> None:
        val = self._alpha_batch()
        if self.alpha.second_order and inner:
            grads = self._second_order(train, val, lam, inner, self.settings.lr)
        else:
            grads = self._first_order(val, lam)
        for p, g in zip(self.net.arch_parameters(), grads):
            p.grad = None if g is None else g.detach()
        self.alpha_opt.step()
        self.alpha_steps += 1

    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.weights_data[1]) / self.settings.batch_size)

    def run_phase(self, phase: str, epochs: float, *, lr: float | None = None) -> None:
        """Trains one DASS phase (warmup | search | finetune) for ``epochs`` epochs.

        A fraction of an epoch is allowed (rounded to whole steps, at least one): a budget
        fitted to ``search.timeout_s`` may leave less than one epoch for a phase. ``lr``
        overrides the lower level's learning rate (DARTS-PT tunes at a tenth of it).

        Raises:
            DeadlineReached: the deadline passed.
            DivergedError: a loss became NaN or infinite.
        """
        if epochs <= 0:
            return
        self.net.set_phase(phase)
        inner = (self.net.score_parameters() if phase == "search"
                 else self.net.weight_parameters())
        optimizer = make_optimizer(
            inner, self.settings if lr is None else replace(self.settings, lr=lr))
        # Warm-up is dense: alpha only weighs masks, which are off, so it has no gradient.
        step_alpha = phase != "warmup"
        left = max(round(epochs * self.batches_per_epoch()), 1)
        while left > 0:
            for batch in iterate_batches(self.weights_data, self.settings.batch_size,
                                         generator=self.generator):
                if self.deadline is not None and time.time() >= self.deadline:
                    raise DeadlineReached(f"deadline reached in the {phase} phase")
                self.net.train()
                if step_alpha:
                    self._alpha_step(batch, self.alpha.lam, inner)
                grads = torch.autograd.grad(self._loss(batch), inner, allow_unused=True)
                for p, g in zip(inner, grads):
                    p.grad = None if g is None else g.detach()
                nn.utils.clip_grad_norm_(inner, GRAD_CLIP)
                optimizer.step()
                self.steps += 1
                left -= 1
                if left == 0:
                    break


@torch.no_grad()
def supernet_accuracy(supernet: nn.Module, pair: Batch, *, batch_size: int = 1024,
                      batch_stats: bool = False) -> float:
    """Top-1 accuracy of the supernet (with its current overrides) on a split.

    ``batch_stats`` normalises with each batch's statistics, as DARTS-PT evaluates its
    supernet (BN in train mode): running statistics gathered while every candidate was
    mixed describe no single candidate, so ACC\\o would measure the stale statistics.
    Dropout stays off and the running statistics are left as they were.
    """
    supernet.eval()
    norms = [m for m in supernet.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers()} for m in norms] if batch_stats else []
    for m in norms:
        m.train(batch_stats)
    try:
        correct = 0
        for inputs, targets in iterate_batches(pair, batch_size):
            correct += int((supernet(inputs).argmax(dim=1) == targets).sum())
    finally:
        for m, buffers in zip(norms, saved):
            for k, v in m.named_buffers():
                v.copy_(buffers[k])
        supernet.eval()
    return correct / max(len(pair[1]), 1)
