"""MaskedLinear / MaskedConv2d: HYDRA's top-k score masks, straight-through, scaled init."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from sparsearch.ops import Candidate, MaskChoice, MaskedConv2d, MaskedLinear
from sparsearch.sparsity import nm_mask, unstructured_mask


def test_scaled_score_init_starts_from_the_magnitude_mask():
    torch.manual_seed(0)
    layer = MaskedLinear(64, 32, keep=0.25)
    weight = layer.parametrizations.weight.original
    mask = layer.sparse.binary_masks()[0]
    assert int(mask.sum()) == 64 * 32 // 4
    assert torch.equal(mask, unstructured_mask(weight, 0.75))
    # the forward sees W * M: exactly the kept weights, the rest exact zeros
    assert torch.equal(layer.weight != 0, mask)


def test_straight_through_gradient_reaches_the_scores():
    torch.manual_seed(1)
    layer = MaskedLinear(16, 8, keep=0.5)
    x = torch.randn(5, 16)
    weight = layer.parametrizations.weight.original.detach()
    mask = layer.sparse.binary_masks()[0].float()
    masked = (weight * mask).requires_grad_(True)
    F.linear(x, masked, layer.bias.detach()).square().sum().backward()
    layer(x).square().sum().backward()
    scores = layer.sparse.scores
    # HYDRA: dL/dS = dL/dW~ * W * sign(S)
    expected = masked.grad * weight * torch.sign(scores.detach())
    assert torch.allclose(scores.grad, expected, atol=1e-6)
    assert scores.grad.abs().sum() > 0


def test_sparse_conv2d_is_the_masked_convolution():
    torch.manual_seed(2)
    conv = MaskedConv2d(4, 6, 3, keep=0.3, padding=1, bias=False)
    x = torch.randn(2, 4, 8, 8)
    mask = conv.sparse.binary_masks()[0]
    expected = F.conv2d(x, conv.parametrizations.weight.original * mask, padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-6)
    assert abs(float(mask.float().mean()) - 0.3) < 0.01


def test_a_mixture_of_masks_is_the_mixed_op_of_the_candidates():
    torch.manual_seed(3)
    candidates = [Candidate("unstructured", sparsity=0.5), Candidate("nm", nm=(2, 4)),
                  Candidate("channel", sparsity=0.25)]
    choice = MaskChoice(candidates)
    choice.probs = torch.tensor([0.2, 0.5, 0.3])
    layer = MaskedLinear(16, 8, choice=choice)
    x = torch.randn(3, 16)
    weight = layer.parametrizations.weight.original
    masks = layer.sparse.binary_masks()
    assert torch.equal(masks[1], nm_mask(layer.sparse.scores, 2, 4))
    # linearity in W: op(x; W * sum p_i M_i) = sum p_i op(x; W * M_i)
    expected = sum(p * F.linear(x, weight * m, layer.bias) for p, m in zip(choice.probs, masks))
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_disabled_choice_is_dense_and_bad_keep_is_rejected():
    layer = MaskedLinear(8, 4, keep=0.1)
    layer.sparse.choice.enabled = False
    assert torch.equal(layer.weight, layer.parametrizations.weight.original)
    with pytest.raises(ValueError, match="keep fraction"):
        MaskedLinear(8, 4, keep=0.0)
    with pytest.raises(ValueError, match="at least one candidate"):
        MaskChoice([])
    # no probs: the candidates mix uniformly (alpha = 0)
    mixed = MaskedLinear(8, 4, choice=MaskChoice([Candidate("dense"), Candidate("nm", nm=(1, 4))]))
    original = mixed.parametrizations.weight.original
    nm = mixed.sparse.binary_masks()[1]
    assert torch.allclose(mixed.weight, original * (0.5 + 0.5 * nm.float()))
