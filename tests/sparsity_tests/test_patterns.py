"""Properties of the pattern masks, and agreement with torch.ao.pruning."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.ao.pruning import WeightNormSparsifier

from sparsearch.sparsity import (
    block_mask,
    channel_mask,
    layer_mask,
    list_patterns,
    nm_mask,
    register_pattern,
    unstructured_mask,
)
from sparsearch.sparsity import patterns as patterns_module
from sparsearch.sparsity.patterns import n_pruned

PROPERTY = settings(max_examples=50, deadline=None)


def _weight(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    # Continuous random values: no ties, so rankings are unique.
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@st.composite
def nm_cases(draw: st.DrawFn) -> tuple[int, int]:
    m = draw(st.integers(2, 32))
    return draw(st.integers(1, m - 1)), m


@PROPERTY
@given(nm=nm_cases(), out=st.integers(1, 5), inp=st.integers(1, 70), seed=st.integers(0, 99))
def test_nm_linear_groups(nm: tuple[int, int], out: int, inp: int, seed: int) -> None:
    n, m = nm
    w = _weight((out, inp), seed)
    kept = (w * nm_mask(w, n, m)) != 0
    full = (inp // m) * m
    per_group = kept[:, :full].reshape(out, -1, m).sum(-1)
    assert torch.all(per_group == n)
    # Tail rule: an incomplete last group stays dense.
    assert torch.all(kept[:, full:])


@PROPERTY
@given(nm=nm_cases(), out=st.integers(1, 4), inp=st.integers(1, 40), k=st.integers(1, 3),
       seed=st.integers(0, 99))
def test_nm_conv_groups_run_along_input_channels(nm: tuple[int, int], out: int, inp: int,
                                                 k: int, seed: int) -> None:
    n, m = nm
    w = _weight((out, inp, k, k), seed)
    kept = nm_mask(w, n, m).permute(0, 2, 3, 1)  # [O, kh, kw, I]: groups along I
    full = (inp // m) * m
    assert torch.all(kept[..., :full].reshape(out, k, k, -1, m).sum(-1) == n)
    assert torch.all(kept[..., full:])


def test_nm_keeps_the_largest_of_each_group() -> None:
    w = torch.tensor([[0.1, -4.0, 3.0, 0.2, 9.0, -8.0, 0.0, 7.0]])
    expected = torch.tensor([[False, True, True, False, True, True, False, False]])
    assert torch.equal(nm_mask(w, 2, 4), expected)


@PROPERTY
@given(shape=st.sampled_from([(7,), (3, 11), (4, 3, 3, 3)]), sparsity=st.floats(0.0, 0.99),
       seed=st.integers(0, 99))
def test_unstructured_exact_count_and_magnitude_order(shape: tuple[int, ...], sparsity: float,
                                                      seed: int) -> None:
    w = _weight(shape, seed)
    mask = unstructured_mask(w, sparsity)
    assert int((~mask).sum()) == n_pruned(w.numel(), sparsity)
    if mask.any() and (~mask).any():
        assert w.abs()[~mask].max() <= w.abs()[mask].min()


@st.composite
def block_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, int]]:
    conv = draw(st.booleans())
    out = draw(st.integers(1, 12))
    shape = (out, draw(st.integers(1, 6)), 3, 3) if conv else (out, draw(st.integers(1, 20)))
    return shape, (draw(st.integers(1, 5)), draw(st.integers(1, 5)))


@PROPERTY
@given(case=block_cases(), sparsity=st.floats(0.0, 0.95), seed=st.integers(0, 99))
def test_block_tiles_are_whole_and_counted_exactly(
    case: tuple[tuple[int, ...], tuple[int, int]], sparsity: float, seed: int
) -> None:
    shape, (bh, bw) = case
    w = _weight(shape, seed)
    mask2 = block_mask(w, sparsity, block=(bh, bw)).reshape(shape[0], -1)
    rows, cols = mask2.shape
    tiles_h, tiles_w = math.ceil(rows / bh), math.ceil(cols / bw)
    kept_tiles = []
    rms = []
    for i in range(tiles_h):
        for j in range(tiles_w):
            tile = mask2[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
            assert tile.all() or not tile.any(), "a tile is partly pruned"
            kept_tiles.append(bool(tile.all()))
            values = w.reshape(shape[0], -1)[i * bh:(i + 1) * bh, j * bw:(j + 1) * bw]
            rms.append(float(values.square().mean()))
    assert kept_tiles.count(False) == n_pruned(tiles_h * tiles_w, sparsity)
    pruned_rms = [r for r, k in zip(rms, kept_tiles) if not k]
    kept_rms = [r for r, k in zip(rms, kept_tiles) if k]
    if pruned_rms and kept_rms:
        assert max(pruned_rms) <= min(kept_rms) * (1 + 1e-6)


@PROPERTY
@given(shape=st.sampled_from([(9, 5), (6, 2, 3, 3), (1, 4)]), sparsity=st.floats(0.0, 0.99),
       seed=st.integers(0, 99))
def test_channel_prunes_whole_rows(shape: tuple[int, ...], sparsity: float, seed: int) -> None:
    w = _weight(shape, seed)
    rows = channel_mask(w, sparsity).reshape(shape[0], -1)
    assert torch.all(rows.all(1) | ~rows.any(1)), "a row is partly pruned"
    pruned = ~rows.all(1)
    assert int(pruned.sum()) == round(sparsity * shape[0])
    norms = w.reshape(shape[0], -1).norm(dim=1)
    if pruned.any() and (~pruned).any():
        assert norms[pruned].max() <= norms[~pruned].min()


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (1, 8), (3, 16), (5, 32), (31, 32)])
def test_nm_matches_torch_weight_norm_sparsifier(n: int, m: int) -> None:
    torch.manual_seed(n * 100 + m)
    # WeightNormSparsifier zeroes the smallest values of padded tail groups too, so
    # compare on an input size that is a multiple of M (tail rules differ by design).
    model = nn.Sequential(nn.Linear(3 * m, 7))
    sparsifier = WeightNormSparsifier(sparsity_level=1.0, sparse_block_shape=(1, m),
                                      zeros_per_block=m - n)
    sparsifier.prepare(model, config=[{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    theirs = model[0].parametrizations.weight[0].mask.bool()
    ours = nm_mask(model[0].parametrizations.weight.original, n, m)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("shape,block,sparsity", [
    ((10, 13), (4, 4), 0.5), ((8, 16), (2, 4), 0.3), ((7, 9), (3, 2), 0.6), ((16, 32), (1, 8), 0.9),
])
def test_block_matches_torch_weight_norm_sparsifier(shape: tuple[int, int],
                                                    block: tuple[int, int],
                                                    sparsity: float) -> None:
    torch.manual_seed(sum(shape))
    model = nn.Sequential(nn.Linear(shape[1], shape[0]))
    sparsifier = WeightNormSparsifier(sparsity_level=sparsity, sparse_block_shape=block,
                                      zeros_per_block=block[0] * block[1])
    sparsifier.prepare(model, config=[{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    theirs = model[0].parametrizations.weight[0].mask.bool()
    ours = block_mask(model[0].parametrizations.weight.original, sparsity, block=block)
    assert torch.equal(ours, theirs)


def test_registry_lists_the_five_patterns() -> None:
    assert list_patterns() == ["block", "channel", "dense", "nm", "unstructured"]


@pytest.mark.parametrize("pattern", ["dense", "unstructured", "nm", "block", "channel"])
def test_layer_mask_dispatches_to_the_pattern(pattern: str) -> None:
    w = _weight((8, 4, 3, 3), 1)
    mask = layer_mask(w, pattern=pattern, sparsity=0.5, nm=(1, 4), block=(2, 6))
    expected = {
        "dense": torch.ones_like(w, dtype=torch.bool),
        "unstructured": unstructured_mask(w, 0.5),
        "nm": nm_mask(w, 1, 4),
        "block": block_mask(w, 0.5, block=(2, 6)),
        "channel": channel_mask(w, 0.5),
    }[pattern]
    assert mask.shape == w.shape and torch.equal(mask, expected)


def test_register_pattern_adds_a_pattern() -> None:
    @register_pattern("keep_positive")
    def keep_positive(weight: torch.Tensor, *, sparsity: float, nm: object,
                      block: object) -> torch.Tensor:
        return weight > 0

    try:
        assert "keep_positive" in list_patterns()
        w = _weight((3, 3), 2)
        assert torch.equal(layer_mask(w, pattern="keep_positive"), w > 0)
        # A second registration under the same name replaces the first, loudly.
        with pytest.warns(RuntimeWarning, match="pattern 'keep_positive' registered twice"):
            register_pattern("keep_positive")(keep_positive)
    finally:
        patterns_module.PATTERNS.unregister("keep_positive")


@pytest.mark.parametrize("kwargs,match", [
    ({"pattern": "diagonal"}, "pattern must be one of"),
    ({"pattern": "unstructured", "sparsity": 1.0}, "sparsity must be in"),
    ({"pattern": "unstructured", "sparsity": -0.1}, "sparsity must be in"),
    ({"pattern": "nm"}, "needs nm="),
    ({"pattern": "nm", "nm": (4, 4)}, "0 < N < M"),
    ({"pattern": "nm", "nm": (2,)}, "nm must be a pair"),
    ({"pattern": "block"}, "needs block="),
    ({"pattern": "block", "sparsity": 0.5, "block": (0, 4)}, "block must have both"),
])
def test_bad_input_raises_one_clear_value_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        layer_mask(_weight((4, 8), 0), **kwargs)


def test_structured_masks_reject_1d_weights() -> None:
    with pytest.raises(ValueError, match="2 or more dims"):
        channel_mask(torch.ones(5), 0.5)
