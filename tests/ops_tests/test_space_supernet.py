"""The whole-space supernet: every on-grid point random search can draw is a candidate
with the same masks; global magnitude follows the scores."""

from __future__ import annotations

import copy

import pytest
import torch

from sparsearch.evaluate import EvalContext, build_model
from sparsearch.ops import SpaceSupernet
from sparsearch.ops.space import target_label
from sparsearch.search.dass.plan import fixed_values, space_targets
from sparsearch.space import load_space
from sparsearch.sparsity.plan import SparsityPlan

TRAIN = {"epochs": 1, "lr": 1e-2, "weight_decay": 0.0, "optimizer": "adam", "batch_size": 64}


def supernet(digits, levels: int):
    space = load_space("digits_mlp")
    fixed = fixed_values(space, {})
    ctx = EvalContext(data=digits, model={"kind": "mlp", "hidden": [96, 32]},
                      train=dict(TRAIN), seed=0, threads=1)
    torch.manual_seed(0)
    model = build_model(ctx)
    reference = copy.deepcopy(model)
    targets = space_targets(space, levels=levels, fixed=fixed)
    net = SpaceSupernet(model, targets, example=digits.train[0][:1])
    net.reset_scores()
    net.set_phase("search")
    return space, fixed, reference, net


def test_every_on_grid_point_random_draws_has_a_candidate_with_its_masks(digits):
    space, fixed, reference, net = supernet(digits, levels=3)
    labels = net.labels("target")
    # unstructured x {uniform, global, erk} x 3 sparsities, and 4 N:M (allocation moot)
    assert len(labels) == 13 and "unstructured erk @0.74" in labels and "nm 1:8" in labels
    masks = {name: sw.binary_masks() for name, sw in net.sparse_layers().items()}
    checked = 0
    for allocation in space.params["allocation"].grid(3):
        points = [{"pattern": "unstructured", "sparsity": s}
                  for s in space.params["sparsity"].grid(3)]
        points += [{"pattern": "nm", "nm": v} for v in space.params["nm"].grid(3)]
        for point in points:
            spec = space.to_spec({**fixed, **point, "allocation": allocation})
            expected = SparsityPlan(spec, reference).masks(reference)
            j = labels.index(target_label(spec))
            assert set(expected) == {"fc1", "fc2"}  # head: dense rule, in both
            for name, mask in expected.items():
                assert torch.equal(masks[f"backbone.{name}"][j], mask), (spec, name)
            checked += 1
    assert checked == 3 * (3 + 4)
    # the allocations do give different masks: ERK prunes the larger fc1 harder
    uniform, erk = (labels.index(f"unstructured {a} @0.5") for a in ("uniform", "erk"))
    kept = masks["backbone.fc1"].flatten(1).float().mean(1)
    assert kept[erk] < kept[uniform] - 0.05
    # the derived spec of a candidate is the spec random search would have drawn
    erk = labels.index("unstructured erk @0.98")
    assert net.targets[erk] == space.to_spec({**fixed, "pattern": "unstructured",
                                              "allocation": "erk", "sparsity": 0.98})


def test_global_magnitude_is_one_top_k_recomputed_from_the_scores(digits):
    _, _, _, net = supernet(digits, levels=2)
    j = net.labels("target").index("unstructured global @0.5")
    fc1, fc2 = (net.sparse_layers()[f"backbone.{n}"] for n in ("fc1", "fc2"))
    before = [float(m[j].float().mean()) for m in (fc1.binary_masks(), fc2.binary_masks())]
    cost = net.target_cost(j, "density")
    with torch.no_grad():
        fc1.scores.mul_(10.0)  # fc1's scores now outrank fc2's: it keeps more
    net(torch.zeros(1, 64))
    after = [float(m[j].float().mean()) for m in (fc1.binary_masks(), fc2.binary_masks())]
    assert after[0] > before[0] and after[1] < before[1]
    # the joint top-k keeps the target: the same number of weights overall
    assert net.target_cost(j, "density") == pytest.approx(cost, abs=1e-4)
    # E[cost] mixes the targets' costs by softmax(alpha)
    costs = torch.tensor([net.target_cost(i, "density") for i in range(len(net.targets))])
    assert float(net.expected_cost("density").detach()) == pytest.approx(float(costs.mean()), rel=1e-5)


def test_cost_of_any_spec_counts_as_the_targets_cost(digits):
    space, fixed, _, net = supernet(digits, levels=3)
    for j, spec in enumerate(net.targets):
        for kind in ("density", "flops"):
            assert net.cost_of(spec, kind) == pytest.approx(net.target_cost(j, kind)), spec
    # off the grid: between its neighbours, falling with the sparsity
    on = [space.to_spec({**fixed, "pattern": "unstructured", "sparsity": s,
                         "allocation": "erk"}) for s in (0.5, 0.62, 0.74)]
    costs = [net.cost_of(spec, "density") for spec in on]
    assert costs[0] > costs[1] > costs[2]
