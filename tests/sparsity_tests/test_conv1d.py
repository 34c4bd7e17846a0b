"""Conv1d is pruned like Conv2d: every pattern, ERK allocation, FLOPs, every recipe, DASS ops,
and an exported Conv1d model reloads with the same outputs.

The data is MNIST-1D, generated offline by the ``mnist1d`` package (a small ``num_samples``).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sparsearch.data import DataSplits, iterate_batches, load_mnist1d_splits
from sparsearch.export import load, save
from sparsearch.metrics import dense_flops, sparse_flops
from sparsearch.models import create_model
from sparsearch.ops import MaskedConv1d
from sparsearch.sparsity import (
    allocate,
    apply_masks,
    erk_densities,
    layer_mask,
    list_patterns,
    prunable_layers,
)
from sparsearch.sparsity.masking import current_masks
from sparsearch.sparsity.plan import SparsityPlan
from sparsearch.sparsity.recipes import RecipeContext, create_recipe, list_recipes
from sparsearch.spec import SubnetSpec
from sparsearch.train import TrainSettings, accuracy_and_loss

PATTERN_ARGS = {"dense": {}, "unstructured": {"sparsity": 0.75}, "nm": {"nm": (2, 4)},
                "block": {"sparsity": 0.5, "block": (4, 4)}, "channel": {"sparsity": 0.5}}


@pytest.fixture(scope="module")
def mnist1d() -> DataSplits:
    return load_mnist1d_splits(num_samples=600)


def cnn1d(data: DataSplits, *, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("cnn1d", in_shape=data.in_shape, num_classes=data.num_classes,
                        channels=(8, 16, 16))


def test_every_pattern_has_its_tests_here() -> None:
    assert set(PATTERN_ARGS) == set(list_patterns())


def test_nm_groups_run_along_input_channels_at_each_tap() -> None:
    weight = torch.randn(6, 8, 3, generator=torch.Generator().manual_seed(0))
    mask = layer_mask(weight, pattern="nm", nm=(2, 4))
    # [out, in, k] -> [out, k, in]: every 4 consecutive input channels at one tap keep 2
    groups = mask.permute(0, 2, 1).reshape(6, 3, 2, 4)
    assert (groups.sum(-1) == 2).all()
    kept = weight.abs().permute(0, 2, 1).reshape(6, 3, 2, 4)
    smallest_kept = kept.masked_fill(~groups, float("inf")).min(-1).values
    largest_pruned = kept.masked_fill(groups, -1.0).max(-1).values
    assert (smallest_kept >= largest_pruned).all()


@pytest.mark.parametrize("pattern", sorted(PATTERN_ARGS))
def test_each_pattern_masks_a_conv1d_weight(pattern: str) -> None:
    weight = torch.randn(16, 8, 5, generator=torch.Generator().manual_seed(1))
    mask = layer_mask(weight, pattern=pattern, **PATTERN_ARGS[pattern])
    assert mask.shape == weight.shape and mask.dtype == torch.bool
    expected_density = {"dense": 1.0, "unstructured": 0.25, "nm": 0.5, "block": 0.5,
                        "channel": 0.5}[pattern]
    assert abs(float(mask.float().mean()) - expected_density) < 0.02
    if pattern == "channel":
        rows = mask.reshape(16, -1)
        assert (rows.all(1) | ~rows.any(1)).all()


def test_erk_allocates_over_conv1d_dims(mnist1d: DataSplits) -> None:
    model = cnn1d(mnist1d)
    sparsities = allocate(model, 0.8, "erk")
    assert set(sparsities) == {"conv1", "conv2", "conv3", "head"}
    shapes = {n: tuple(m.weight.shape) for n, m in prunable_layers(model).items()}
    densities = erk_densities(shapes, 0.8)
    for name, sparsity in sparsities.items():
        # within one whole weight of the real-valued ERK density
        assert abs((1 - sparsity) - densities[name]) <= 1 / math.prod(shapes[name]) + 1e-9, name

    # ERK's raw density sum(shape) / prod(shape) counts the taps: conv1 (8, 1, 5) is 14/40,
    # conv2 (16, 8, 3) is 27/384, so conv1 is kept denser
    assert sparsities["conv1"] < sparsities["conv2"]


def test_flops_of_a_pruned_conv1d_scale_with_its_density(mnist1d: DataSplits) -> None:
    model = cnn1d(mnist1d)
    example = mnist1d.val[0][:1]
    total, per_layer = dense_flops(model, example)
    # conv2: 16 out x 8 in x 3 taps x 10 positions x 2 FLOPs per multiply-add
    assert per_layer["conv2"] == 2 * 16 * 8 * 3 * 10
    apply_masks(model, {"conv2": layer_mask(model.conv2.weight, pattern="nm", nm=(1, 4))})
    assert sparse_flops(model, example) == total - round(per_layer["conv2"] * 0.75)


@pytest.mark.parametrize("recipe", list_recipes())
def test_every_recipe_prunes_conv1d_layers(mnist1d: DataSplits, recipe: str) -> None:
    spec = SubnetSpec(pattern="nm", nm="2:4", recipe=recipe)
    model = cnn1d(mnist1d)
    settings = TrainSettings(epochs=2, lr=1e-2, batch_size=64)
    generator = torch.Generator().manual_seed(0)
    ctx = RecipeContext(model=model, spec=spec, plan=SparsityPlan(spec, model),
                        settings=settings,
                        train_batches=lambda: iterate_batches(mnist1d.train, 64,
                                                              generator=generator),
                        log_metric=lambda key, value, step: None)
    create_recipe(recipe).run(ctx)
    masks = current_masks(model)
    for name in ("conv2", "conv3"):
        w = model.get_submodule(name).weight.detach()
        per_group = (w.permute(0, 2, 1).reshape(w.shape[0], w.shape[2], -1, 4) != 0).sum(-1)
        assert int(per_group.max()) <= 2, name
        assert float(masks[name].float().mean()) == 0.5, name
    accuracy, loss = accuracy_and_loss(model, iterate_batches(mnist1d.val, 512))
    assert loss == loss and accuracy > 0.1  # finite, better than chance on 10 classes


def test_masked_conv1d_is_the_masked_convolution() -> None:
    torch.manual_seed(2)
    conv = MaskedConv1d(4, 6, 3, keep=0.3, padding=1, bias=False)
    x = torch.randn(2, 4, 20)
    mask = conv.sparse.binary_masks()[0]
    expected = F.conv1d(x, conv.parametrizations.weight.original * mask, padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    assert abs(float(mask.float().mean()) - 0.3) < 0.01


@pytest.mark.parametrize("pattern", sorted(PATTERN_ARGS))
def test_a_pruned_conv1d_model_exports_and_reloads(tmp_path, mnist1d: DataSplits,
                                                   pattern: str) -> None:
    model = cnn1d(mnist1d)
    masks = {name: layer_mask(layer.weight, pattern=pattern, **PATTERN_ARGS[pattern])
             for name, layer in prunable_layers(model).items()}
    apply_masks(model, masks)
    model.eval()
    path = save(model, None, tmp_path / "export", tune=False)
    loaded = load(path)
    x = mnist1d.test[0][:32]
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)
    for name in ("conv1", "conv2", "conv3"):
        assert torch.equal(loaded.get_submodule(name).weight != 0,
                           model.get_submodule(name).weight != 0), name


def test_dass_macro_supernet_searches_conv1d_layers(mnist1d: DataSplits) -> None:
    from sparsearch.ops import Candidate, MacroSupernet

    backbone = cnn1d(mnist1d)
    candidates = (Candidate("unstructured", sparsity=0.5), Candidate("nm", nm=(1, 4)))
    names = ["conv2", "conv3"]
    net = MacroSupernet(backbone, {n: candidates for n in names},
                        example=mnist1d.train[0][:2])
    x, y = mnist1d.train[0][:16], mnist1d.train[1][:16]
    net.set_phase("search")
    loss = F.cross_entropy(net(x), y) + net.expected_cost("density")
    loss.backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.arch_parameters())
    assert all(s.grad is not None for s in net.score_parameters())
