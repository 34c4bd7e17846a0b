"""The DARTS primitives registry and MixedOp (every registered primitive is tested)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from sparsearch.ops import MaskChoice, MaskedConv2d, MixedOp, create_primitive, list_primitives
from sparsearch.ops.primitives import plain_conv

DARTS_PRIMITIVES = ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                    "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]


def test_the_eight_darts_primitives_are_registered_in_order():
    assert list_primitives()[:8] == DARTS_PRIMITIVES


@pytest.mark.parametrize("name", list_primitives())
@pytest.mark.parametrize("stride", [1, 2])
def test_primitive_shapes_dense_and_sparse(name, stride):
    sparse = partial(MaskedConv2d, choice=MaskChoice.keep_fraction(0.5), bias=False)
    x = torch.randn(2, 6, 8, 8)
    for conv in (plain_conv, sparse):
        op = create_primitive(name, 6, stride, conv=conv)
        assert op(x).shape == (2, 6, 8 // stride, 8 // stride)
    parametric = [m for m in op.modules() if isinstance(m, MaskedConv2d)]
    assert bool(parametric) == (name.endswith(("conv_3x3", "conv_5x5"))
                                or name == "skip_connect" and stride == 2)


def test_mixed_op_is_the_weighted_sum_and_skips_zero_weights():
    torch.manual_seed(0)
    ops = [create_primitive(n, 4, 1, conv=plain_conv) for n in ("skip_connect", "avg_pool_3x3",
                                                                 "sep_conv_3x3")]
    mixed = MixedOp(ops, ["skip", "avg", "sep"])
    x = torch.randn(2, 4, 6, 6)
    w = torch.tensor([0.2, 0.3, 0.5])
    expected = sum(wi * op(x) for wi, op in zip(w, ops))
    assert torch.allclose(mixed(x, w), expected, atol=1e-6)
    calls = []
    ops[2].register_forward_hook(lambda *a: calls.append(1))
    assert torch.allclose(mixed(x, torch.tensor([1.0, 0.0, 0.0])), x)
    assert not calls  # a constant zero weight skips the op
    with pytest.raises(ValueError):
        create_primitive("conv_7x7", 4, 1, conv=plain_conv)
