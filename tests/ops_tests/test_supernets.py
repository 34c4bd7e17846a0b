"""The layer-wise and the cell supernet on digits shapes: forward, backward, cost."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from sparsearch.models import create_model
from sparsearch.ops import Candidate, CellSupernet, MacroSupernet
from sparsearch.sparsity import prunable_layers

CANDIDATES = (Candidate("unstructured", sparsity=0.5), Candidate("unstructured", sparsity=0.9),
              Candidate("nm", nm=(1, 4)))


def macro(kind: str, digits) -> MacroSupernet:
    torch.manual_seed(0)
    options = {"hidden": (32, 32)} if kind == "mlp" else {"channels": (4, 8, 8)}
    backbone = create_model(kind, in_shape=digits.in_shape, num_classes=10, **options)
    names = [n for n in prunable_layers(backbone) if n != "head"]
    return MacroSupernet(backbone, {n: CANDIDATES for n in names}, example=digits.train[0][:2])


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_macro_supernet_forward_backward_on_digits(kind, digits):
    net = macro(kind, digits)
    x, y = digits.train[0][:16], digits.train[1][:16]
    net.set_phase("search")
    loss = F.cross_entropy(net(x), y) + net.expected_cost("density")
    loss.backward()
    assert net(x).shape == (16, 10)
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.arch_parameters())
    assert all(s.grad is not None for s in net.score_parameters())
    assert net.backbone.head.bias.grad is not None
    # module names are the backbone's, so a choice maps to a LayerRule per layer name
    assert set(net.decisions()) <= set(prunable_layers(net.backbone))


def test_macro_cost_is_the_expected_density(digits):
    net = macro("mlp", digits)
    sizes = {n: m.weight.numel() for n, m in prunable_layers(net.backbone).items()}
    for chosen in ({"fc1": 0, "fc2": 1}, {"fc1": 2, "fc2": 2}):
        for name, i in chosen.items():
            net.set_override(name, net.one_hot(name, i))
        expected = (sizes["head"] + sum(sizes[n] * net.densities[n][i]
                                        for n, i in chosen.items())) / sum(sizes.values())
        assert float(net.expected_cost("density").detach()) == pytest.approx(expected)
        assert net.chosen_density(chosen) == pytest.approx(expected)
    net.overrides.clear()
    assert net.cheapest_cost("density") < float(net.expected_cost("density").detach()) < 1.0
    assert 0.0 < float(net.expected_cost("flops").detach()) < 1.0


def test_warmup_phase_is_dense_and_finetune_freezes_the_masks(digits):
    net = macro("mlp", digits)
    x = digits.train[0][:4]
    net.set_phase("warmup")
    dense = net(x)
    net.set_phase("search")
    assert not torch.allclose(dense, net(x))
    net.set_phase("finetune")
    F.cross_entropy(net(x), digits.train[1][:4]).backward()
    assert all(s.grad is None for s in net.score_parameters())


def test_cell_supernet_forward_backward_and_cost(digits):
    torch.set_num_threads(1)  # many tiny convolutions: threads only add overhead
    torch.manual_seed(0)
    net = CellSupernet(in_shape=digits.in_shape, num_classes=10, init_channels=4, cells=3,
                       sparsities=(0.5, 0.9))
    x, y = digits.train[0][:8], digits.train[1][:8]
    net.set_phase("search")
    out = net(x)
    assert out.shape == (8, 10)
    (F.cross_entropy(out, y) + net.expected_cost("flops")).backward()
    assert net.alpha_normal.grad.abs().sum() > 0 and net.alpha_reduce.grad.abs().sum() > 0
    assert net.beta.grad.abs().sum() > 0
    assert len(net.decisions()) == 2 * 14 + 1
    # more weight on the sparser level -> lower expected cost
    with torch.no_grad():
        net.beta.copy_(torch.tensor([2.0, -2.0]))
        dense_ish = float(net.expected_cost("density"))
        net.beta.copy_(torch.tensor([-2.0, 2.0]))
    assert float(net.expected_cost("density").detach()) < dense_ish
    assert net.cheapest_cost("density") < float(net.expected_cost("density").detach())


def test_cell_network_of_a_genotype_is_a_registered_model(digits):
    genotype = {"normal": [["sep_conv_3x3", 0], ["skip_connect", 1]] * 4,
                "reduce": [["max_pool_3x3", 0], ["dil_conv_3x3", 1]] * 4}
    model = create_model("darts_cell", in_shape=digits.in_shape, num_classes=10,
                         genotype=genotype, init_channels=4, cells=3)
    assert model(digits.train[0][:4]).shape == (4, 10)
    layers = prunable_layers(model)
    assert "classifier" in layers and any(".ops." in n for n in layers)
    assert model.sparsearch_build["kind"] == "darts_cell"
