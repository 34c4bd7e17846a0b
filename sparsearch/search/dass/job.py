"""The work of one lambda as a pure function: ``search_lambda(LambdaJob) -> LambdaOutcome``.

DASS (Mousavi et al., arXiv 2207.06968) trains one supernet per cost weight lambda; each
lambda is independent once the shared dense warm-up is done, so the sweep is a map of
``search_lambda`` over jobs. Jobs and outcomes are plain, picklable data (tensors, frozen
dataclasses, dicts) and ``search_lambda`` touches no file, study or MLflow run, so any
runner can execute it (``units.LambdaUnit``) wherever it likes, several at once, and the
strategy (``run.DassStrategy``) records the outcomes in the driver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsearch.config import DassConfig
from sparsearch.evaluate import EvalContext, build_model
from sparsearch.ops.cells import CellSupernet
from sparsearch.ops.macro import MacroSupernet
from sparsearch.ops.space import SpaceSupernet
from sparsearch.ops.supernet import Supernet
from sparsearch.search.dass.bilevel import (
    AlphaSettings,
    BilevelTrainer,
    DeadlineReached,
    split_for_alpha,
    supernet_accuracy,
)
from sparsearch.search.dass.derive import derive_argmax, derive_pt, genotype_of
from sparsearch.search.dass.plan import SupernetPlan
from sparsearch.sparsity.masking import prunable_layers
from sparsearch.spec import SubnetSpec
from sparsearch.train import TrainSettings

__all__ = ["LambdaJob", "LambdaOutcome", "build_supernet", "device_of", "make_trainer",
           "search_lambda", "warm_up"]


@dataclass(frozen=True)
class LambdaJob:
    """One lambda of the sweep.

    Attributes:
        lam: the cost weight lambda.
        key: the trial key its derived subnet will have.
        plan: what supernet to build and how to turn choices into a spec.
        ctx: data, model, training defaults, seed, device (as for a trial).
        dass: the DASS settings.
        warm_state: the supernet's state after the shared dense warm-up.
        deadline: ``time.time()`` at which the search's budget ends (None: no limit).
    """

    lam: float
    key: int
    plan: SupernetPlan
    ctx: EvalContext
    dass: DassConfig
    warm_state: dict[str, torch.Tensor]
    deadline: float | None = None


@dataclass(frozen=True)
class LambdaOutcome:
    """What one lambda produced.

    Attributes:
        lam, key: as in the job.
        status: derived | timeout (the deadline passed before a subnet was derived).
        spec: the derived subnet (None on timeout).
        model: the derived subnet's model options when they differ from the search's
            (the cell network of a genotype), else None.
        cost: the derived subnet's cost under the supernet's cost model (dense = 1).
        expected_cost: E[cost] under softmax(alpha) at the end of the search.
        snapshot: alpha and softmax(alpha) per decision, and the PT table (JSON-ready).
        search_s: seconds of supernet training and derivation.
        inherited: with ``search.dass.inherit``, the derived subnet's masks
            (``mask.<layer>``) and, for ``weights``, the supernet's weights
            (``state.<key>``, the backbone's state-dict keys); else None.
    """

    lam: float
    key: int
    status: str
    spec: SubnetSpec | None = None
    model: dict[str, Any] | None = None
    cost: float = float("nan")
    expected_cost: float = float("nan")
    snapshot: dict[str, Any] = field(default_factory=dict)
    search_s: float = 0.0
    inherited: dict[str, torch.Tensor] | None = None


def build_supernet(plan: SupernetPlan, ctx: EvalContext) -> Supernet:
    """The plan's supernet, seeded from the context (the same for every lambda)."""
    if plan.kind == "cell":
        torch.manual_seed(ctx.seed)
        return CellSupernet(in_shape=ctx.data.in_shape, num_classes=ctx.data.num_classes,
                            init_channels=plan.init_channels, cells=plan.cells,
                            sparsities=plan.sparsities)
    backbone = build_model(ctx)
    if plan.kind == "space":
        return SpaceSupernet(backbone, plan.targets, example=ctx.data.train[0][:1])
    return MacroSupernet(backbone, plan.choices, example=ctx.data.train[0][:1])


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _settings(spec: SubnetSpec, ctx: EvalContext, dass: DassConfig) -> TrainSettings:
    """The supernet trains with the derived subnets' settings (batch size: its own)."""
    train = {**ctx.train, **{k: v for k, v in spec.hparams.items()
                             if k in ("lr", "batch_size", "weight_decay")}}
    return TrainSettings(epochs=int(train["epochs"]), lr=float(train["lr"]),
                         weight_decay=float(train["weight_decay"]),
                         optimizer=str(train["optimizer"]),
                         batch_size=int(dass.batch_size or train["batch_size"]))


def make_trainer(net: Supernet, ctx: EvalContext, plan: SupernetPlan, dass: DassConfig, *,
                 lam: float, deadline: float | None, seed_offset: int) -> BilevelTrainer:
    """The bi-level trainer of ``net`` at cost weight ``lam`` (batch order: seed + offset)."""
    settings = _settings(plan.base, ctx, dass)
    generator = torch.Generator().manual_seed(ctx.seed + seed_offset)
    # Only the train split goes in: the val split scores derived subnets, the test split
    # the front, so neither may steer alpha or a PT decision.
    train = ctx.data.train
    device = device_of(ctx.device)
    weights_data, alpha_data = split_for_alpha((train[0].to(device), train[1].to(device)),
                                               fraction=dass.alpha_fraction, seed=ctx.seed)
    return BilevelTrainer(net, weights_data=weights_data, alpha_data=alpha_data,
                          settings=settings,
                          alpha=AlphaSettings(lr=dass.alpha_lr, lam=lam, cost=dass.cost,
                                              second_order=dass.second_order),
                          generator=generator, deadline=deadline)


def warm_up(plan: SupernetPlan, ctx: EvalContext, dass: DassConfig, *,
            deadline: float | None = None) -> dict[str, torch.Tensor]:
    """DASS phase 1, shared by every lambda: the dense supernet trained ``warmup_epochs``.

    Raises:
        DeadlineReached: the deadline passed.
    """
    if ctx.threads:
        torch.set_num_threads(int(ctx.threads))
    net = build_supernet(plan, ctx).to(device_of(ctx.device))
    trainer = make_trainer(net, ctx, plan, dass, lam=0.0, deadline=deadline, seed_offset=0)
    trainer.run_phase("warmup", dass.warmup_epochs)
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def search_lambda(job: LambdaJob) -> LambdaOutcome:
    """DASS phases 2 and 3 at one lambda, then the derivation (pure; see the module doc).

    Loads the warm-up state, re-initialises the scores from the warmed-up weights (HYDRA's
    scaled init), learns the masks and alpha (``search_epochs``), fine-tunes with the
    masks fixed (``finetune_epochs``) and derives one subnet by ``dass.derive``.

    Returns:
        The outcome; ``status == "timeout"`` when the deadline passed first.
    """
    started = time.perf_counter()
    ctx, dass, plan = job.ctx, job.dass, job.plan
    if ctx.threads:
        torch.set_num_threads(int(ctx.threads))
    device = device_of(ctx.device)
    net = build_supernet(plan, ctx).to(device)
    net.load_state_dict(job.warm_state)
    net.reset_scores()
    trainer = make_trainer(net, ctx, plan, dass, lam=job.lam, deadline=job.deadline,
                           seed_offset=1 + job.key)
    try:
        trainer.run_phase("search", dass.search_epochs)
        trainer.run_phase("finetune", dass.finetune_epochs)
        expected = float(net.expected_cost(dass.cost).detach())
        snapshot: dict[str, Any] = {"lambda": job.lam, "derive": dass.derive,
                                    "cost": dass.cost, "expected_cost": expected,
                                    "decisions": net.snapshot()}
        if dass.derive == "pt":
            held_out = trainer.alpha_data
            # DARTS-PT: BN on batch statistics when scoring, tuning at a tenth of the lr,
            # and sparsity decisions priced with this lambda.
            derivation = derive_pt(
                net, accuracy=lambda: supernet_accuracy(net, held_out, batch_stats=True),
                tune=lambda: trainer.run_phase("finetune", dass.pt_tune_epochs,
                                               lr=trainer.settings.lr / 10),
                seed=ctx.seed + job.key, lam=job.lam, cost=dass.cost)
            snapshot["pt_accuracy_without"] = derivation.pt
            snapshot["pt_cost_with"] = derivation.pt_cost
        else:
            derivation = derive_argmax(net)
    except DeadlineReached:
        return LambdaOutcome(lam=job.lam, key=job.key, status="timeout",
                             search_s=time.perf_counter() - started)
    model = None
    if isinstance(net, CellSupernet):
        genotype = genotype_of(net, derivation)
        spec, model = plan.cell_spec(genotype, derivation.choices["sparsity"])
        net.overrides.clear()
        for d, i in derivation.choices.items():
            net.set_override(d, net.one_hot(d, i))
        for kind in ("normal", "reduce"):
            for e in range(net.alpha_normal.shape[0]):
                if e not in derivation.edges[kind]:
                    net.set_override(f"{kind}:{e}", torch.zeros(len(net.primitives)))
        cost = float(net.expected_cost(dass.cost).detach())
        snapshot["genotype"] = genotype
    elif isinstance(net, SpaceSupernet):
        chosen = derivation.choices["target"]
        spec, cost = plan.targets[chosen], net.target_cost(chosen, dass.cost)
    else:
        assert isinstance(net, MacroSupernet)
        sizes = {n: m.weight.numel() for n, m in prunable_layers(net.backbone).items()}
        spec = plan.macro_spec(derivation.choices, sizes=sizes)
        cost = net.chosen_density(derivation.choices, dass.cost)
    snapshot["chosen"] = {d: net.labels(d)[i] for d, i in derivation.choices.items()}
    snapshot["derived_cost"] = cost
    inherited = (_inherited(net, derivation.choices, weights=dass.inherit == "weights")
                 if dass.inherit != "none" and isinstance(net, (MacroSupernet, SpaceSupernet))
                 else None)
    return LambdaOutcome(lam=job.lam, key=job.key, status="derived", spec=spec, model=model,
                         cost=cost, expected_cost=expected, snapshot=snapshot,
                         search_s=time.perf_counter() - started, inherited=inherited)


@torch.no_grad()
def _inherited(net: MacroSupernet | SpaceSupernet, choices: dict[str, int], *,
               weights: bool) -> dict[str, torch.Tensor]:
    """The derived subnet's masks, from the supernet's learned scores, and its weights."""
    out: dict[str, torch.Tensor] = {}
    for layer, sparse in net.sparse_layers().items():
        name = layer.removeprefix("backbone.")
        chosen = choices[name] if isinstance(net, MacroSupernet) else choices["target"]
        if net.choices[name].candidates[chosen].pattern != "dense":
            out[f"mask.{name}"] = sparse.binary_masks()[chosen].cpu().contiguous()
    if weights:
        for key, value in net.backbone.state_dict().items():
            if ".parametrizations." not in f".{key}":
                out[f"state.{key}"] = value.cpu().contiguous()
                continue
            # "fc1.parametrizations.weight.original" is W itself, unmasked (the recipe
            # applies the masks); the parametrization's scores are not the model's.
            owner, _, rest = f".{key}".partition(".parametrizations.")
            name, _, tail = rest.partition(".")
            if tail == "original":
                out[f"state.{owner[1:]}.{name}".replace("state..", "state.")] = \
                    value.cpu().contiguous()
    return out
