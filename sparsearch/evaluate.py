"""evaluate(spec): build the model, train it with the spec's recipe, measure it.

This is the one place where a SubnetSpec becomes numbers. Random search, TPE, NSGA-II and
the subnets DASS derives all meet here, under any runner, so their results compare.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sparsearch.data import DataSplits, iterate_batches
from sparsearch.spec import SubnetSpec

if TYPE_CHECKING:
    from sparsearch.train import TrainSettings

__all__ = ["EvalContext", "TrialResult", "TrialStopped", "build_model", "evaluate",
           "accuracy_on_test", "pruned_result"]

# report(epoch, metrics) -> True to stop the trial there (a scheduler's decision).
Report = Callable[[int, dict[str, float]], bool]
# What a report's accuracy and loss are measured on (search.rung_masks).
RUNG_MASKS = {
    "current": "the masks the recipe has applied at that epoch",
    "final": "the subnet pruned to its final masks at that point (a copy; see _at_target)",
}


@dataclass(frozen=True)
class TrialResult:
    """What one trial produced.

    Attributes:
        status: complete | failed | pruned.
        metrics: accuracy and loss (val split), density, nnz, params, flops, train_s,
            epochs, ...;
            a pruned trial's are those of the epoch it stopped at, with
            ``stopped_at_epoch`` and ``max_epochs``.
        reason: why a trial failed or was stopped (None when complete).
    """

    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "metrics": dict(self.metrics), "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        return cls(status=data["status"], metrics=dict(data.get("metrics", {})),
                   reason=data.get("reason"))


@dataclass(frozen=True)
class EvalContext:
    """Everything besides the spec that a trial needs; plain data, picklable for Ray.

    Attributes:
        data: the dataset splits (CPU tensors).
        model: ``{"kind": ..., **options}`` for ``sparsearch.models.create_model``, plus
            ``checkpoint`` (a path) when the model starts from trained dense weights.
        train: default training settings (``epochs``, ``lr``, ...); the spec overrides.
        seed: seed of initialisation and data order.
        device: cpu | cuda | auto.
        threads: torch threads for this trial (None: leave torch's default).
        latency_batch: measure ``latency_ms`` at this batch size with the kernels the
            exporter would choose (None: not measured; it costs a kernel search per trial).
        rung_masks: what a report's accuracy is measured on (``RUNG_MASKS``).
    """

    data: DataSplits
    model: dict[str, Any]
    train: dict[str, Any]
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    latency_batch: int | None = None
    rung_masks: str = "current"


class TrialStopped(Exception):
    """A scheduler stopped the trial at an epoch report (not a failure)."""

    def __init__(self, epoch: int, metrics: dict[str, float]) -> None:
        super().__init__(f"stopped at epoch {epoch}")
        self.epoch = epoch
        self.metrics = metrics


def pruned_result(epoch: int, reported: dict[str, float]) -> TrialResult:
    """The result of a trial stopped after ``epoch``, from what it reported there."""
    return TrialResult("pruned", {**reported, "stopped_at_epoch": float(epoch)},
                       f"stopped at epoch {epoch}")


def _final_shape_metrics(model: nn.Module, plan: Any, example: torch.Tensor) -> dict[str, float]:
    """density, nnz, params and flops the subnet will have, read before training.

    A scheduler ranks trials at a rung on these with the rung's accuracy; a recipe may
    still be dense at that epoch, but the spec fixes what the subnet will be.
    """
    import copy

    from sparsearch.metrics import subnet_metrics
    from sparsearch.sparsity.masking import apply_masks

    shaped = copy.deepcopy(model)
    apply_masks(shaped, plan.masks(shaped))
    return subnet_metrics(shaped, example)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(ctx: EvalContext, *, seed: int | None = None) -> nn.Module:
    """The context's model, freshly initialised from ``seed`` (default: the context's), or
    holding the context's dense checkpoint when it has one."""
    from sparsearch.models import create_model
    from sparsearch.models._custom import load_checkpoint

    torch.manual_seed(ctx.seed if seed is None else seed)
    options = {k: v for k, v in ctx.model.items() if k not in ("kind", "checkpoint")}
    checkpoint = ctx.model.get("checkpoint")
    if ctx.model["kind"] == "timm" and checkpoint:
        # timm loads its own pretrained files (adapting the head to num_classes); the build
        # record leaves the file out, since an export holds the weights and a fresh process
        # rebuilding it need not have the file.
        model = create_model("timm", in_shape=ctx.data.in_shape,
                             num_classes=ctx.data.num_classes, checkpoint=checkpoint, **options)
        # Any: nn.Module types its attributes as Tensor | Module; this one is plain data.
        build: Any = model.sparsearch_build
        build["options"].pop("checkpoint")
        return model
    model = create_model(ctx.model["kind"], in_shape=ctx.data.in_shape,
                         num_classes=ctx.data.num_classes, **options)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    return model


def _settings(spec: SubnetSpec, ctx: EvalContext) -> TrainSettings:
    from sparsearch.train import TrainSettings

    base = dict(ctx.train)
    for key in ("lr", "epochs", "batch_size", "weight_decay"):
        if key in spec.hparams:
            base[key] = spec.hparams[key]
    return TrainSettings(epochs=int(base["epochs"]), lr=float(base["lr"]),
                         weight_decay=float(base["weight_decay"]),
                         optimizer=str(base["optimizer"]), batch_size=int(base["batch_size"]))


def evaluate(
    spec: SubnetSpec,
    ctx: EvalContext,
    *,
    log_metric: Callable[[str, float, int], None] | None = None,
    report: Report | None = None,
) -> tuple[TrialResult, nn.Module | None]:
    """Builds, trains and measures one subnet on the val split.

    After every epoch the val split is measured (``val_accuracy`` and ``val_loss`` go to
    ``log_metric`` with the epoch, counted from 1) and passed to ``report`` with the
    subnet's final density, nnz, params and flops, ``train_s`` so far and ``max_epochs``;
    ``report`` may stop the trial there. With ``ctx.rung_masks="final"`` the accuracy and
    loss it gets are those of the subnet pruned to its final masks at that point
    (``val_accuracy_at_target`` in the history; the same as ``val_accuracy`` once the masks
    are final).

    Returns:
        The TrialResult and the trained model (masks applied), or None when it failed or
        was stopped (a stopped subnet is not exported). A diverging loss or an unsupported
        combination is a failed trial with its reason, not an exception: the search goes on.
    """
    from sparsearch.metrics import subnet_metrics
    from sparsearch.sparsity.plan import SparsityPlan
    from sparsearch.sparsity.recipes import RecipeContext, create_recipe
    from sparsearch.train import DivergedError, accuracy_and_loss

    if ctx.threads:
        torch.set_num_threads(int(ctx.threads))
    device = _device(ctx.device)
    data = ctx.data.to(device)
    settings = _settings(spec, ctx)
    generator = torch.Generator().manual_seed(ctx.seed)
    log = log_metric or (lambda key, value, step: None)
    started = time.perf_counter()
    try:
        model = build_model(ctx).to(device)
        knobs = {k.split(".", 1)[1]: v for k, v in spec.options.items()
                 if k.startswith(f"{spec.recipe}.")}
        recipe = create_recipe(spec.recipe, **knobs)
        plan = SparsityPlan(spec, model)
        shape = _final_shape_metrics(model, plan, data.val[0][:1]) if report else {}
        epoch = 0

        def end_epoch() -> None:
            nonlocal epoch
            epoch += 1
            accuracy, loss = accuracy_and_loss(model, iterate_batches(data.val, 1024))
            log("val_accuracy", accuracy, epoch)
            log("val_loss", loss, epoch)
            if report is not None and ctx.rung_masks == "final":
                accuracy, loss = _at_target(model, plan, data.val) or (accuracy, loss)
                log("val_accuracy_at_target", accuracy, epoch)
            measured = {"accuracy": accuracy, "loss": loss, **shape,
                        "train_s": time.perf_counter() - started,
                        "max_epochs": float(settings.epochs)}
            if report is not None and report(epoch, measured):
                raise TrialStopped(epoch, measured)

        recipe_ctx = RecipeContext(
            model=model, spec=spec, plan=plan, settings=settings,
            train_batches=lambda: iterate_batches(data.train, settings.batch_size,
                                                  generator=generator),
            log_metric=log, end_epoch=end_epoch,
            pretrained=bool(ctx.model.get("checkpoint")),
        )
        recipe.run(recipe_ctx)
        accuracy, loss = accuracy_and_loss(model, iterate_batches(data.val, 1024))
    except TrialStopped as stop:
        return pruned_result(stop.epoch, stop.metrics), None
    except DivergedError as err:
        return TrialResult("failed", {"train_s": time.perf_counter() - started},
                           f"diverged: {err}"), None
    except (ValueError, NotImplementedError) as err:
        return TrialResult("failed", {"train_s": time.perf_counter() - started},
                           f"{type(err).__name__}: {err}"), None
    train_s = time.perf_counter() - started
    if not math.isfinite(loss):
        return TrialResult("failed", {"train_s": train_s}, f"diverged: val loss {loss}"), None
    metrics = {"accuracy": accuracy, "loss": loss, "train_s": train_s,
               "epochs": float(settings.epochs), **subnet_metrics(model, data.val[0][:1])}
    if ctx.latency_batch is not None:
        from sparsearch.export import measure_latency_ms

        metrics["latency_ms"] = measure_latency_ms(model, data.val[0][:ctx.latency_batch])
    return TrialResult("complete", metrics), model


def _at_target(model: nn.Module, plan: Any, val: Any) -> tuple[float, float] | None:
    """Val accuracy and loss of ``model`` pruned now to its final masks, or None when the
    masks applied already keep as many weights per layer as the final ones.

    A recipe that trains dense first (one_shot, gradual) or ramps its sparsity is otherwise
    ranked at a rung on a dense network's accuracy beside its final density. The copy is
    pruned by the plan (magnitude, the spec's pattern); the trained model is not touched.
    """
    import copy

    from sparsearch.sparsity.masking import apply_masks, current_masks
    from sparsearch.train import accuracy_and_loss

    final = plan.masks(model)
    now = current_masks(model)
    if all(name in now and int(now[name].sum()) == int(mask.sum())
           for name, mask in final.items()):
        return None
    probe = copy.deepcopy(model)
    apply_masks(probe, final)
    return accuracy_and_loss(probe, iterate_batches(val, 1024))


def accuracy_on_test(model: nn.Module, data: DataSplits) -> float:
    """Top-1 accuracy on the test split (read for Pareto subnets only)."""
    from sparsearch.train import accuracy_and_loss

    device = next(model.parameters()).device
    return accuracy_and_loss(model, iterate_batches(data.to(device).test, 1024))[0]
