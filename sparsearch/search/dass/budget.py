"""DASS's phases planned against ``search.timeout_s`` before they spend it.

Tried as a new user would, a cell supernet on CIFAR-10-shaped data spent its whole budget
in the dense warm-up and ended with an empty front. So before the warm-up, DASS times a
few steps of each phase (DASS's warm-up, mask learning, fine-tune; Mousavi et al., arXiv
2207.06968) on a throwaway supernet and estimates what the warm-up and the first lambda
cost, DARTS-PT's evaluations and tuning included. They must fit in ``BUDGET_SHARE`` of the
budget, so that the first derived subnet can train and more lambdas can follow. When they
do not, DASS says so (seconds per epoch, budget needed); with ``search.dass.fit_budget``
it scales the phases' epochs down to fit (fractions of an epoch allowed).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from sparsearch.config import DassConfig
from sparsearch.evaluate import EvalContext
from sparsearch.ops.cells import STEPS, CellSupernet
from sparsearch.ops.supernet import Supernet
from sparsearch.search.dass.bilevel import BilevelTrainer, supernet_accuracy
from sparsearch.search.dass.job import build_supernet, device_of, make_trainer
from sparsearch.search.dass.plan import SupernetPlan

__all__ = ["BUDGET_SHARE", "PhaseTimes", "fit_epochs", "measure_phases", "plan_budget"]

log = logging.getLogger("sparsearch")

# The warm-up and the first lambda may take this share of search.timeout_s; the rest trains
# the first derived subnet and searches further lambdas.
BUDGET_SHARE = 0.5
# Timed steps per phase; one untimed step first pays the first call's set-up.
TIMED_STEPS = 2


@dataclass(frozen=True)
class PhaseTimes:
    """Measured seconds per epoch of each phase, and DARTS-PT's work per lambda.

    Attributes:
        warmup, search, finetune: seconds per epoch of each phase.
        evaluate_s: seconds of one held-out accuracy evaluation (a PT candidate).
        pt_evaluations: evaluations DARTS-PT makes per lambda (0 for argmax).
        pt_tunes: fine-tunes DARTS-PT makes per lambda, ``pt_tune_epochs`` each.
    """

    warmup: float
    search: float
    finetune: float
    evaluate_s: float = 0.0
    pt_evaluations: int = 0
    pt_tunes: int = 0

    def scalable_s(self, dass: DassConfig) -> float:
        """Seconds of the warm-up and one lambda that scale with the epochs."""
        return (dass.warmup_epochs * self.warmup + dass.search_epochs * self.search
                + (dass.finetune_epochs + self.pt_tunes * dass.pt_tune_epochs) * self.finetune)

    def needed_s(self, dass: DassConfig) -> float:
        """Seconds of the warm-up and the first lambda (derivation included)."""
        return self.scalable_s(dass) + self.pt_evaluations * self.evaluate_s

    def describe(self, dass: DassConfig) -> str:
        text = (f"warm-up {dass.warmup_epochs:g} epoch(s) x {self.warmup:.1f} s, mask "
                f"learning {dass.search_epochs:g} x {self.search:.1f} s, fine-tune "
                f"{dass.finetune_epochs:g} x {self.finetune:.1f} s")
        if self.pt_evaluations:
            text += (f", PT {self.pt_evaluations} evaluations x {self.evaluate_s:.2f} s and "
                     f"{self.pt_tunes} x {dass.pt_tune_epochs:g} tuning epoch(s)")
        return text


def _pt_work(net: Supernet) -> tuple[int, int]:
    """(evaluations, tunes) of DARTS-PT on ``net``: one evaluation per candidate of each
    decision and a tune after it (after each normal/reduce pair in a cell network); cells
    then drop edges one at a time down to 2 per node, evaluating each active edge before
    each drop."""
    evaluations = sum(len(net.labels(d)) for d in net.decisions())
    tunes = len(net.decisions())
    if isinstance(net, CellSupernet):
        tunes = (tunes - 1) // 2 + 1  # a tune per normal/reduce pair, one after sparsity
        for node in range(STEPS):
            drops = range(2 + node, 2, -1)  # active edges before each drop
            evaluations += 2 * sum(drops)  # normal and reduce cells
            tunes += 2 * len(drops)
    return evaluations, tunes


def _per_epoch(trainer: BilevelTrainer, phase: str) -> float:
    one_step = 1 / trainer.batches_per_epoch()
    trainer.run_phase(phase, one_step)
    started = time.perf_counter()
    trainer.run_phase(phase, TIMED_STEPS * one_step)
    return (time.perf_counter() - started) / TIMED_STEPS * trainer.batches_per_epoch()


def measure_phases(plan: SupernetPlan, ctx: EvalContext, dass: DassConfig) -> PhaseTimes:
    """Times a few steps of each phase on a throwaway supernet (the search's is untouched)."""
    net = build_supernet(plan, ctx).to(device_of(ctx.device))
    trainer = make_trainer(net, ctx, plan, dass, lam=1.0, deadline=None, seed_offset=0)
    times = PhaseTimes(warmup=_per_epoch(trainer, "warmup"),
                       search=_per_epoch(trainer, "search"),
                       finetune=_per_epoch(trainer, "finetune"))
    if dass.derive != "pt":
        return times
    started = time.perf_counter()
    supernet_accuracy(net, trainer.alpha_data)
    evaluations, tunes = _pt_work(net)
    return replace(times, evaluate_s=time.perf_counter() - started,
                   pt_evaluations=evaluations, pt_tunes=tunes)


def fit_epochs(dass: DassConfig, times: PhaseTimes, *, budget_s: float) -> DassConfig:
    """``dass`` with its phase epochs scaled by one factor so that the warm-up and the
    first lambda take ``BUDGET_SHARE * budget_s`` (unchanged when they already fit)."""
    target = BUDGET_SHARE * budget_s
    if times.needed_s(dass) <= target:
        return dass
    scalable = times.scalable_s(dass)
    # PT's evaluations do not shrink with the epochs; what is left goes to the phases. A
    # budget too small for even that still gets one step per phase (run_phase rounds up),
    # so alpha moves and a subnet is derived.
    left = target - times.pt_evaluations * times.evaluate_s
    factor = max(left / max(scalable, 1e-9), 1e-9)
    return replace(dass, **{key: getattr(dass, key) * factor
                            for key in ("warmup_epochs", "search_epochs", "finetune_epochs",
                                        "pt_tune_epochs")})


def plan_budget(plan: SupernetPlan, ctx: EvalContext, dass: DassConfig, *,
                timeout_s: float | None) -> DassConfig:
    """Measures the phases and checks them against the budget; the settings to search with.

    Without a timeout nothing is measured. When the warm-up and the first lambda need more
    than ``BUDGET_SHARE`` of ``timeout_s``, a warning says what they need; with
    ``dass.fit_budget`` the epochs are scaled to fit instead.
    """
    if timeout_s is None:
        return dass
    started = time.perf_counter()
    times = measure_phases(plan, ctx, dass)
    budget_s = timeout_s - (time.perf_counter() - started)
    needed = times.needed_s(dass)
    log.info("dass: the warm-up and the first lambda need about %.0f s (%s)", needed,
             times.describe(dass))
    if needed <= BUDGET_SHARE * budget_s:
        return dass
    if not dass.fit_budget:
        log.warning("dass: the warm-up and the first lambda need about %.0f s (%s), more than "
                    "%d%% of search.timeout_s=%g; a budget of about %.0f s fits them, or set "
                    "search.dass.fit_budget=true to scale the epochs down", needed,
                    times.describe(dass), round(100 * BUDGET_SHARE), timeout_s,
                    needed / BUDGET_SHARE + (timeout_s - budget_s))
        return dass
    fitted = fit_epochs(dass, times, budget_s=budget_s)
    log.warning("dass: scaled the phase epochs to fit search.timeout_s=%g: %s (about %.0f s)",
                timeout_s, times.describe(fitted), times.needed_s(fitted))
    return fitted
