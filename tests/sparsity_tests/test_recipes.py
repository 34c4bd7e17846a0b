"""Every recipe trains a digits MLP through the recipe contract and ends on its pattern.

The ``digits`` fixture (tests/conftest.py) is scikit-learn's digits split.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sparsearch.data import DataSplits, iterate_batches
from sparsearch.models import create_model
from sparsearch.sparsity import nm_mask, prunable_layers
from sparsearch.sparsity.masking import current_masks
from sparsearch.sparsity.plan import LayerSparsity, SparsityPlan
from sparsearch.sparsity.recipes import RecipeContext, create_recipe, list_recipes
from sparsearch.sparsity.recipes._dynamic_mask import (
    attach_dynamic_masks,
    live_masks,
    split_phases,
)
from sparsearch.sparsity.recipes.mdgf import mask_decay
from sparsearch.sparsity.recipes.sdgf import nm_frames
from sparsearch.spec import SubnetSpec
from sparsearch.train import TrainSettings, accuracy_and_loss, make_optimizer, train_epoch

DYNAMIC = ["sr_ste", "mdgf", "sdgf", "gradual", "scores"]


def make_ctx(data: DataSplits, spec: SubnetSpec, *, epochs: int = 3, seed: int = 0,
             kind: str = "mlp", log: list | None = None) -> RecipeContext:
    torch.manual_seed(seed)
    options = {"hidden": (64, 64)} if kind == "mlp" else {"channels": (8, 16, 16)}
    model = create_model(kind, in_shape=data.in_shape, num_classes=data.num_classes, **options)
    settings = TrainSettings(epochs=epochs, lr=1e-2, batch_size=128)
    generator = torch.Generator().manual_seed(seed)
    records = log if log is not None else []
    return RecipeContext(
        model=model, spec=spec, plan=SparsityPlan(spec, model), settings=settings,
        train_batches=lambda: iterate_batches(data.train, settings.batch_size,
                                              generator=generator),
        log_metric=lambda key, value, step: records.append((key, value, step)),
    )


def _assert_nm(model: nn.Module, n: int, m: int) -> None:
    for name, layer in prunable_layers(model).items():
        w = layer.weight.detach()
        full = (w.shape[1] // m) * m
        per_group = (w[:, :full] != 0).reshape(w.shape[0], -1, m).sum(-1)
        assert int(per_group.max()) <= n, name


@pytest.mark.parametrize("recipe", list_recipes())
def test_recipe_ends_on_nm_pattern_and_learns(digits: DataSplits, recipe: str) -> None:
    spec = SubnetSpec(pattern="nm", nm="2:4", recipe=recipe)
    ctx = make_ctx(digits, spec)
    create_recipe(recipe).run(ctx)
    masks = current_masks(ctx.model)
    assert set(masks) == set(prunable_layers(ctx.model))
    for name, mask in masks.items():
        assert float(mask.float().mean()) == 0.5, name
    _assert_nm(ctx.model, 2, 4)
    accuracy, _ = accuracy_and_loss(ctx.model, iterate_batches(digits.val, 512))
    assert accuracy > 0.6


@pytest.mark.parametrize("recipe", list_recipes())
def test_recipe_ends_at_exact_unstructured_density(digits: DataSplits, recipe: str) -> None:
    spec = SubnetSpec(pattern="unstructured", sparsity=0.75, recipe=recipe)
    ctx = make_ctx(digits, spec, epochs=2)
    create_recipe(recipe).run(ctx)
    masks = current_masks(ctx.model)
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert abs(kept - 0.25 * total) <= 1
    for name, layer in prunable_layers(ctx.model).items():
        assert not layer.weight.detach()[~masks[name]].any(), name


@pytest.mark.parametrize("recipe", list_recipes())
def test_recipe_on_a_dense_spec_trains_every_weight(digits: DataSplits, recipe: str) -> None:
    ctx = make_ctx(digits, SubnetSpec(pattern="dense", recipe=recipe), epochs=2)
    init = {n: layer.weight.detach().clone() for n, layer in prunable_layers(ctx.model).items()}
    create_recipe(recipe).run(ctx)
    assert current_masks(ctx.model) == {}
    for name, layer in prunable_layers(ctx.model).items():
        assert not torch.equal(layer.weight.detach(), init[name]), name


@pytest.mark.parametrize("recipe", ["sr_ste", "mdgf", "sdgf", "random_init", "scores"])
def test_block_pattern_on_a_cnn(digits: DataSplits, recipe: str) -> None:
    spec = SubnetSpec(pattern="block", block="4x4", sparsity=0.5, recipe=recipe)
    ctx = make_ctx(digits, spec, epochs=2, kind="cnn")
    create_recipe(recipe).run(ctx)
    for name, mask in current_masks(ctx.model).items():
        rows = mask.reshape(mask.shape[0], -1)
        r, c = rows.shape
        padded = F.pad(rows.float(), (0, -c % 4, 0, -r % 4), value=-1.0)
        tiles = padded.reshape(math.ceil(r / 4), 4, -1, 4).permute(0, 2, 1, 3).flatten(2)
        real = tiles >= 0
        all_kept = ((tiles == 1) | ~real).all(-1)
        all_pruned = ((tiles == 0) | ~real).all(-1)
        assert (all_kept | all_pruned).all(), f"{name}: a tile is partly pruned"
        assert all_pruned.any() and all_kept.any(), name


@pytest.mark.parametrize("recipe", list_recipes())
def test_masks_survive_a_training_step(digits: DataSplits, recipe: str) -> None:
    spec = SubnetSpec(pattern="nm", nm="1:4", recipe=recipe)
    ctx = make_ctx(digits, spec, epochs=2)
    create_recipe(recipe).run(ctx)
    before = current_masks(ctx.model)
    optimizer = make_optimizer(ctx.model.parameters(), ctx.settings)
    train_epoch(ctx.model, ctx.train_batches(), optimizer)
    after = current_masks(ctx.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)
    _assert_nm(ctx.model, 1, 4)


@pytest.mark.parametrize("recipe", DYNAMIC)
def test_dynamic_recipes_log_the_mask_flip_rate_per_epoch(digits: DataSplits,
                                                          recipe: str) -> None:
    log: list = []
    ctx = make_ctx(digits, SubnetSpec(pattern="nm", nm="2:4", recipe=recipe), log=log)
    create_recipe(recipe).run(ctx)
    flips = [(value, step) for key, value, step in log if key == "mask_flip_rate"]
    assert [step for _, step in flips] == [0, 1, 2]
    assert all(0.0 <= value <= 1.0 for value, _ in flips)
    if recipe != "gradual":
        # Masks recomputed every step from moving weights do flip.
        assert flips[0][0] > 0.0


def test_sr_ste_adds_lambda_w_times_pruned_weight_to_the_update() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(8, 3)
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    w0 = layer.weight.detach().clone()
    keep = nm_mask(w0, 2, 4)
    # The STE gradient: the dense gradient of the loss at the masked weights.
    masked = (w0 * keep).requires_grad_()
    F.cross_entropy(F.linear(x, masked, layer.bias), y).backward()
    ste_grad = masked.grad

    lambda_w, lr = 0.5, 0.1
    model = nn.Sequential(layer)
    plan = LayerSparsity("0", "nm", 0.5, nm=(2, 4))
    attach_dynamic_masks(model, {"0": plan}, decay=lambda_w)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    w1 = model[0].parametrizations.weight.original.detach()
    # SR-STE: W_{t+1} = W_t - lr * (g(W~_t) + lambda_w * (1 - E_t) * W_t)
    expected = w0 - lr * (ste_grad + lambda_w * (~keep) * w0)
    assert torch.allclose(w1, expected, atol=1e-6)
    assert torch.all((w1 - w0)[~keep] != (-lr * ste_grad)[~keep])


def test_mdgf_scales_pruned_weights_by_alpha() -> None:
    assert mask_decay(0.0, decay="exponential", k=10.0) == 1.0
    assert mask_decay(1.0, decay="exponential", k=10.0) == pytest.approx(math.exp(-10))
    assert mask_decay(0.5, decay="linear", k=1.0) == 0.5
    assert mask_decay(1.0, decay="linear", k=2.0) == 0.0
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    w = model[0].weight.detach().clone()
    handles = attach_dynamic_masks(model, {"0": LayerSparsity("0", "nm", 0.75, nm=(1, 4))})
    handles["0"].alpha = 0.25
    keep = nm_mask(w, 1, 4)
    assert torch.allclose(model[0].weight, torch.where(keep, w, 0.25 * w))


def test_sdgf_frames_and_their_masks() -> None:
    assert nm_frames(1, 8, schedule="stepwise") == [(7, 8), (4, 8), (2, 8), (1, 8)]
    assert nm_frames(1, 16, schedule="stepwise") == [(15, 16), (8, 16), (4, 16), (2, 16),
                                                     (1, 16)]
    assert nm_frames(1, 8, schedule="geometric") == [(8, 64), (4, 32), (2, 16), (1, 8)]
    recipe = create_recipe("sdgf")
    model = nn.Sequential(nn.Linear(16, 4))
    plans = {"0": LayerSparsity("0", "nm", 0.875, nm=(1, 8))}
    handles = attach_dynamic_masks(model, plans)
    for progress, kept in [(0.0, 7), (0.3, 4), (0.6, 2), (0.99, 1)]:
        recipe.set_progress(handles, plans, progress)
        model[0].weight  # noqa: B018  (a forward recomputes the mask)
        assert int(live_masks(model)["0"].reshape(4, 2, 8).sum(-1).max()) == kept


def test_random_init_is_random_but_respects_the_pattern(digits: DataSplits) -> None:
    spec = SubnetSpec(pattern="nm", nm="2:8", recipe="random_init")
    ctx = make_ctx(digits, spec, epochs=1)
    init = {n: layer.weight.detach().clone() for n, layer in prunable_layers(ctx.model).items()}
    create_recipe("random_init").run(ctx)
    masks = current_masks(ctx.model)
    for name, mask in masks.items():
        assert torch.equal(mask.reshape(mask.shape[0], -1, 8).sum(-1),
                           torch.full((mask.shape[0], mask.shape[1] // 8), 2)), name
        agreement = (mask & nm_mask(init[name], 2, 8)).sum() / mask.sum()
        assert agreement < 0.5, f"{name} looks like the magnitude mask"
    again = make_ctx(digits, spec, epochs=1)
    create_recipe("random_init").run(again)
    assert all(torch.equal(masks[n], m) for n, m in current_masks(again.model).items())


def test_scores_start_at_the_magnitude_mask_and_leave_frozen_weights(digits: DataSplits
                                                                     ) -> None:
    spec = SubnetSpec(pattern="unstructured", sparsity=0.8, recipe="scores")
    ctx = make_ctx(digits, spec, epochs=2)
    init = {n: layer.weight.detach().clone() for n, layer in prunable_layers(ctx.model).items()}
    create_recipe("scores", pretrain=0.0, finetune=0.0).run(ctx)
    changed = 0
    for name, mask in current_masks(ctx.model).items():
        layer = prunable_layers(ctx.model)[name]
        # Frozen weights: the subnet is the initial weights under the learned mask.
        assert torch.equal(layer.weight.detach(), init[name] * mask), name
        magnitude = torch.zeros_like(mask).flatten()
        magnitude[init[name].abs().flatten().argsort(descending=True)[:int(mask.sum())]] = True
        changed += int((magnitude.view_as(mask) != mask).sum())
    assert changed > 0, "scores never moved the mask away from the magnitude init"


@pytest.mark.parametrize("recipe,knobs,match", [
    ("sr_ste", {"lambda_w": -1.0}, "sr_ste.lambda_w"),
    ("mdgf", {"decay": "cosine"}, "mdgf.decay must be one of"),
    ("sdgf", {"schedule": "random"}, "sdgf.schedule must be one of"),
    ("mdgf", {"dense": 0.5, "fine_tune": 0.5}, "must be < 1"),
    ("scores", {"pretrain": 1.5}, "scores.pretrain"),
])
def test_bad_knobs_raise_one_clear_value_error(digits: DataSplits, recipe: str, knobs: dict,
                                               match: str) -> None:
    ctx = make_ctx(digits, SubnetSpec(pattern="nm", nm="2:4", recipe=recipe), epochs=1)
    with pytest.raises(ValueError, match=match):
        create_recipe(recipe, **knobs).run(ctx)


def test_split_phases_keeps_a_sparse_phase() -> None:
    assert split_phases(10, dense=0.1, fine_tune=0.2, recipe="r") == (1, 7, 2)
    assert split_phases(1, dense=0.4, fine_tune=0.4, recipe="r") == (0, 1, 0)
    assert split_phases(2, dense=0.0, fine_tune=0.5, recipe="r") == (0, 1, 1)
