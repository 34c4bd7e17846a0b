"""Allocation: exact totals, ERK caps, the Global MP floor, agreement with torch.nn.utils.prune."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from sparsearch.models import create_model
from sparsearch.sparsity import (
    allocate,
    allocation_options,
    erk_densities,
    list_allocations,
    prunable_layers,
)
from sparsearch.sparsity.patterns import n_pruned

PROPERTY = settings(max_examples=50, deadline=None)


@st.composite
def small_models(draw: st.DrawFn) -> nn.Module:
    """A seeded stack of Conv2d and Linear layers of random small sizes."""
    torch.manual_seed(draw(st.integers(0, 999)))
    layers: list[nn.Module] = []
    chans = draw(st.integers(1, 4))
    for _ in range(draw(st.integers(0, 2))):
        out = draw(st.integers(1, 12))
        layers.append(nn.Conv2d(chans, out, draw(st.sampled_from([1, 3]))))
        chans = out
    width = chans
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 40))
        layers.append(nn.Linear(width, out))
        width = out
    return nn.Sequential(*layers)


def _sizes(model: nn.Module) -> dict[str, int]:
    return {name: m.weight.numel() for name, m in prunable_layers(model).items()}


def _assert_contract(result: dict[str, float], sizes: dict[str, int], sparsity: float) -> None:
    assert list(result) == list(sizes)
    assert all(0.0 <= s < 1.0 for s in result.values())
    pruned = [n_pruned(sizes[n], s) for n, s in result.items()]
    # Whole weights per layer, and the total within one weight of the target.
    assert all(abs(p - s * sizes[n]) < 1e-6 for p, (n, s) in zip(pruned, result.items()))
    assert abs(sum(pruned) - sparsity * sum(sizes.values())) <= 1.0


@PROPERTY
@given(model=small_models(), sparsity=st.floats(0.0, 0.9),
       method=st.sampled_from(["uniform", "erk", "global"]))
def test_totals_are_exact_and_in_range(model: nn.Module, sparsity: float, method: str) -> None:
    sizes = _sizes(model)
    options = {"min_threshold": 0.0} if method == "global" else {}
    try:
        result = allocate(model, sparsity, method, **options)
    except ValueError as err:
        # Only when one-weight-per-layer caps make the target impossible.
        assert sparsity * sum(sizes.values()) > sum(sizes.values()) - len(sizes) - 1, err
        return
    _assert_contract(result, sizes, sparsity)


@PROPERTY
@given(model=small_models(), sparsity=st.floats(0.0, 0.9), power=st.floats(0.0, 2.0),
       keep=st.booleans())
def test_option_variants_keep_the_contract(model: nn.Module, sparsity: float, power: float,
                                           keep: bool) -> None:
    sizes = _sizes(model)
    names = list(sizes)
    try:
        erk = allocate(model, sparsity, "erk", power=power)
        uniform = allocate(model, sparsity, "uniform", keep_first=keep, keep_last=True)
    except ValueError:
        return
    _assert_contract(erk, sizes, sparsity)
    _assert_contract(uniform, sizes, sparsity)
    assert uniform[names[-1]] == 0.0
    if keep:
        assert uniform[names[0]] == 0.0


@PROPERTY
@given(shapes=st.lists(st.sampled_from([(4, 3), (16, 8), (64, 32), (8, 4, 3, 3), (32, 16, 3, 3),
                                        (10, 64), (3, 1, 3, 3)]), min_size=1, max_size=5),
       sparsity=st.floats(0.0, 0.97), power=st.floats(0.0, 2.0))
def test_erk_densities_cap_at_one_and_meet_the_target(shapes: list[tuple[int, ...]],
                                                      sparsity: float, power: float) -> None:
    named = {f"l{i}": s for i, s in enumerate(shapes)}
    try:
        dens = erk_densities(named, sparsity, power=power)
    except ValueError:
        return
    sizes = {n: math.prod(s) for n, s in named.items()}
    assert all(0.0 < d <= 1.0 for d in dens.values())
    kept = sum(dens[n] * sizes[n] for n in named)
    assert kept == pytest.approx((1.0 - sparsity) * sum(sizes.values()), rel=1e-9, abs=1e-9)
    # Non-dense layers keep RigL's proportions: d_l / raw_l is one common epsilon.
    ratios = {dens[n] / (sum(s) / math.prod(s)) ** power for n, s in named.items() if dens[n] < 1}
    assert max(ratios, default=1.0) == pytest.approx(min(ratios, default=1.0), rel=1e-9)


def test_erk_dense_capping_by_hand() -> None:
    # raw = 20/100 and 200/10000; eps = 5050/220 would give the small layer 4.6 > 1, so it
    # is made dense and eps is re-solved: (0.5 * 10000 - 0.5 * 100) / (0.02 * 10000).
    dens = erk_densities({"small": (10, 10), "big": (100, 100)}, 0.5)
    assert dens["small"] == 1.0
    assert dens["big"] == pytest.approx(0.495)


def test_erk_power_zero_is_uniform() -> None:
    dens = erk_densities({"a": (10, 20), "b": (30, 40, 3, 3)}, 0.8, power=0.0)
    assert dens == pytest.approx({"a": 0.2, "b": 0.2})


@PROPERTY
@given(model=small_models(), sparsity=st.floats(0.5, 0.99),
       min_threshold=st.sampled_from([0.05, 1.0, 5.0, 10.0]))
def test_global_keeps_the_floor_in_every_layer(model: nn.Module, sparsity: float,
                                               min_threshold: float) -> None:
    sizes = _sizes(model)
    floor = max(1, int(sum(sizes.values()) * min_threshold / 100))
    try:
        result = allocate(model, sparsity, "global", min_threshold=min_threshold)
    except ValueError as err:
        assert "min_threshold" in str(err) or "too high" in str(err)
        return
    _assert_contract(result, sizes, sparsity)
    for name, s in result.items():
        kept = sizes[name] - n_pruned(sizes[name], s)
        assert kept >= min(floor, sizes[name])


def test_global_prunes_unprotected_weights_when_the_smallest_sit_at_a_floor() -> None:
    # Found by hypothesis: the one smallest |w| is the only weight of the last layer, which
    # the one-weight floor protects; the rescale grows only layers the threshold prunes (none
    # here), and raised "cannot meet the sparsity" though 3 + 1 weights were free to prune.
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1), nn.Linear(1, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.9, 0.8], [0.7, 0.3]]))
        model[1].weight.copy_(torch.tensor([[0.5, 0.6]]))
        model[2].weight.fill_(0.01)
    sizes = _sizes(model)
    result = allocate(model, 0.125, "global", min_threshold=0.0)  # one weight of seven
    assert [n_pruned(sizes[n], s) for n, s in result.items()] == [1, 0, 0]  # the 0.3
    _assert_contract(result, sizes, 0.125)


@pytest.mark.parametrize("kind,sparsity", [("mlp", 0.5), ("mlp", 0.9), ("cnn", 0.7)])
def test_global_without_floor_matches_torch_global_unstructured(kind: str,
                                                                sparsity: float) -> None:
    torch.manual_seed(0)
    model = create_model(kind, in_shape=(1, 8, 8), num_classes=10)
    ours = allocate(model, sparsity, "global", min_threshold=0.0)
    layers = prunable_layers(model)
    prune.global_unstructured([(m, "weight") for m in layers.values()],
                              pruning_method=prune.L1Unstructured, amount=sparsity)
    for name, module in layers.items():
        theirs = int((module.weight_mask == 0).sum())
        assert n_pruned(module.weight.numel(), ours[name]) == theirs, name


def test_uniform_raises_the_rest_when_ends_stay_dense() -> None:
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 30), nn.Linear(30, 10))
    result = allocate(model, 0.3, "uniform", keep_first=True, keep_last=True)
    assert result["0"] == result["2"] == 0.0
    assert result["1"] == pytest.approx(0.3 * 700 / 300)


def test_layers_restricts_the_allocation() -> None:
    model = create_model("cnn", in_shape=(1, 8, 8), num_classes=10)
    result = allocate(model, 0.8, "erk", layers=["conv2", "conv3"])
    assert list(result) == ["conv2", "conv3"]
    _assert_contract(result, {n: s for n, s in _sizes(model).items() if n in result}, 0.8)


def test_layerwise_gives_named_layers_their_value_and_the_rest_the_target() -> None:
    model = create_model("mlp", in_shape=(1, 8, 8), num_classes=10)
    result = allocate(model, 0.5, "layerwise", sparsities={"fc1": 0.9, "head": 0.0})
    # Rounded to whole weights: within one weight of each value.
    assert result == pytest.approx({"fc1": 0.9, "fc2": 0.5, "head": 0.0}, abs=1 / 16384)


def test_registry_and_options() -> None:
    assert list_allocations() == ["erk", "global", "layerwise", "uniform"]
    assert allocation_options("uniform") == {"keep_first": False, "keep_last": False}
    assert allocation_options("erk") == {"power": 1.0}
    assert allocation_options("global") == {"min_threshold": 0.05}
    assert allocation_options("layerwise") == {"sparsities": None}


@pytest.mark.parametrize("args,kwargs,match", [
    ((0.5, "random"), {}, "allocation must be one of"),
    ((1.0, "uniform"), {}, "sparsity must be in"),
    ((0.5, "erk"), {"alpha": 1}, "has no option 'alpha'"),
    ((0.5, "erk"), {"power": -1.0}, "erk.power"),
    ((0.5, "global"), {"min_threshold": 100.0}, "min_threshold"),
    ((0.5, "uniform"), {"layers": ["nope"]}, "'nope' is not a Linear/Conv1d/Conv2d"),
    ((0.5, "uniform"), {"layers": []}, "at least one"),
    ((0.5, "layerwise"), {"sparsities": {"fc1": 1.5}}, r"sparsities\['fc1'\]"),
    ((0.5, "layerwise"), {"sparsities": {"nope": 0.5}}, "'nope' is not one of"),
    ((0.8, "uniform"), {"keep_first": True, "keep_last": True}, "too high"),
])
def test_bad_input_raises_one_clear_value_error(args: tuple, kwargs: dict, match: str) -> None:
    model = create_model("mlp", in_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ValueError, match=match):
        allocate(model, *args, **kwargs)


@pytest.mark.parametrize("target", [0.0, 0.5])
def test_layerwise_rules_hold_through_the_plan_even_without_a_global_target(target) -> None:
    from sparsearch.sparsity.plan import SparsityPlan
    from sparsearch.spec import LayerRule, SubnetSpec

    model = create_model("mlp", in_shape=(1, 8, 8), num_classes=10)
    spec = SubnetSpec(pattern="unstructured", sparsity=target, allocation="layerwise",
                      layers=(LayerRule("fc1", sparsity=0.9), LayerRule("head", dense=True)))
    plans = SparsityPlan(spec, model).layers(model)
    assert plans["fc1"].sparsity == pytest.approx(0.9, abs=1 / 4096)
    assert plans["fc2"].sparsity == pytest.approx(target, abs=1 / 4096)
    assert plans["head"].pattern == "dense" and plans["head"].sparsity == 0.0
    masks = SparsityPlan(spec, model).masks(model)
    kept = masks["fc1"].float().mean().item()
    assert kept == pytest.approx(0.1, abs=1 / 4096)


@pytest.mark.parametrize("sparsity", [2.2250738585e-313, 1e-17])
def test_erk_with_less_than_one_weight_to_prune_is_dense(sparsity: float) -> None:
    # Found by hypothesis: 1 - sparsity rounds to 1, so every layer was capped dense and
    # ERK raised "cannot meet sparsity" for a target of zero pruned weights.
    model = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 3))
    result = allocate(model, sparsity, "erk")
    assert result == {"0": 0.0, "2": 0.0}
