"""DASS's units of work (``search/work.py``): the dense warm-up and one lambda's search.

Both run wherever the runner puts them (this process, a Ray worker) and share the warm-up
through ``<run dir>/dass/warmup.pt``, keyed by a fingerprint of everything that shapes it
(plan, seed, model, training, warm-up epochs, alpha split, batch size): a rerun, a resumed
search or another worker finds it there instead of training it again. The run dir is the search's shared
storage, as it is for trial weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sparsearch.search.dass.job import LambdaJob, LambdaOutcome, search_lambda, warm_up

if TYPE_CHECKING:
    from sparsearch.config import DassConfig
    from sparsearch.evaluate import EvalContext
    from sparsearch.search.dass.plan import SupernetPlan
    from sparsearch.search.work import Worker

__all__ = ["LambdaUnit", "WarmUpUnit", "warm_path"]


def warm_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "dass" / "warmup.pt"


def round_ctx(ctx: EvalContext, round_: int) -> EvalContext:
    """Round ``round_`` trains its supernets from the search's seed + ``round_``."""
    return replace(ctx, seed=ctx.seed + round_)


def warm_fingerprint(plan: SupernetPlan, ctx: EvalContext, dass: DassConfig) -> str:
    identity = json.dumps({"plan": plan.fingerprint(), "seed": ctx.seed,
                           "model": ctx.model, "train": ctx.train,
                           "hparams": plan.base.hparams, "warmup_epochs": dass.warmup_epochs,
                           # the warm-up trains on the rest of the train split at this batch
                           "alpha_fraction": dass.alpha_fraction,
                           "batch_size": dass.batch_size},
                          sort_keys=True, default=str)
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WarmUpUnit:
    """The dense warm-up of one round, from the cache when it holds this one.

    ``execute`` returns (fingerprint, whether it came from the cache), or None when the
    deadline passed during the warm-up.
    """

    round_: int
    plan: SupernetPlan
    dass: DassConfig
    deadline: float | None
    key: int = -1

    def execute(self, worker: Worker) -> tuple[str, bool] | None:
        from sparsearch.search.dass.bilevel import DeadlineReached

        ctx = round_ctx(worker.env.ctx, self.round_)
        fingerprint = warm_fingerprint(self.plan, ctx, self.dass)
        path = warm_path(worker.env.run_dir)
        if path.exists() and torch.load(path, weights_only=True).get(
                "fingerprint") == fingerprint:
            return fingerprint, True
        try:
            state = warm_up(self.plan, ctx, self.dass, deadline=self.deadline)
        except DeadlineReached:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed: a reader never sees half a file.
        tmp = path.with_suffix(".tmp")
        torch.save({"fingerprint": fingerprint, "state": state}, tmp)
        tmp.replace(path)
        return fingerprint, False


@dataclass(frozen=True)
class LambdaUnit:
    """One lambda's supernet search from the round's cached warm-up (``search_lambda``)."""

    lam: float
    key: int
    round_: int
    plan: SupernetPlan
    dass: DassConfig
    fingerprint: str
    deadline: float | None

    def execute(self, worker: Worker) -> LambdaOutcome:
        cached = torch.load(warm_path(worker.env.run_dir), weights_only=True)
        if cached.get("fingerprint") != self.fingerprint:
            raise RuntimeError(f"{warm_path(worker.env.run_dir)} is not this round's warm-up "
                               f"(another search writes into the same run dir?)")
        return search_lambda(LambdaJob(lam=self.lam, key=self.key, plan=self.plan,
                                       ctx=round_ctx(worker.env.ctx, self.round_),
                                       dass=self.dass, warm_state=cached["state"],
                                       deadline=self.deadline))
