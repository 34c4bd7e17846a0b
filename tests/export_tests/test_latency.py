"""The latency objective and the in-memory swap it measures."""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from sparsearch.export import KernelLinear, load, measure_latency_ms, save
from sparsearch.export._latency import with_sparse_kernels

from .conftest import FAST, assert_close, mlp_all_formats


def test_with_sparse_kernels_matches_and_leaves_the_model_alone():
    model = mlp_all_formats()
    fast = with_sparse_kernels(model, batch_sizes=(1, 32), **FAST)
    assert parametrize.is_parametrized(model.fc1, "weight")  # the original keeps its masks
    assert not any(parametrize.is_parametrized(m) for m in fast.modules())
    with torch.no_grad():
        for batch in (1, 9, 70):
            x = torch.randn(batch, 64)
            assert_close(fast(x), model(x))


def test_measure_latency_ms_on_dense_masked_and_loaded_models(tmp_path):
    model = mlp_all_formats()
    x = torch.randn(32, 64)
    dense_ms = measure_latency_ms(model, x, sparse_kernels=False, min_run_time_s=0.01)
    sparse_ms = measure_latency_ms(model, x, min_run_time_s=0.01, tune_min_run_time_s=0.002)
    assert dense_ms > 0 and sparse_ms > 0
    assert model.training is False
    loaded = load(save(model, None, tmp_path / "e", **FAST))
    assert measure_latency_ms(loaded, x, min_run_time_s=0.01) > 0
    model.train()
    measure_latency_ms(model, x, sparse_kernels=False, min_run_time_s=0.005)
    assert model.training  # restored after timing in eval mode


def test_the_swap_is_tuned_for_the_example_batch_only():
    model = mlp_all_formats()
    x = torch.randn(32, 64)
    fast = with_sparse_kernels(model, example_input=x, batch_sizes=(32,), **FAST)
    for module in fast.modules():
        if isinstance(module, KernelLinear):
            assert list(module.kernel_names()) == [32]
