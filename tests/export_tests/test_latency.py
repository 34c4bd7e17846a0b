"""The latency objective and the in-memory swap it measures."""

from __future__ import annotations

import json

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsearch.export import KernelLinear, load, measure_latency_ms, read_manifest, save
from sparsearch.export._latency import with_sparse_kernels
from sparsearch.export._manifest import MANIFEST

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


def modules_called(model: nn.Module, x: torch.Tensor, **kwargs) -> tuple[float, set[nn.Module]]:
    """``measure_latency_ms(model, x, **kwargs)`` and every module its timing ran."""
    called: set[nn.Module] = set()
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, output: called.add(module))
    try:
        return measure_latency_ms(model, x, **kwargs), called
    finally:
        handle.remove()


def test_loaded_layers_run_the_kernels_the_dispatch_table_recorded(tmp_path):
    model = mlp_all_formats()
    x = torch.randn(32, 64)
    path = save(model, None, tmp_path / "e", batch_sizes=(1, 32), **FAST)
    # Which kernel wins is the machine's call; pin fc1 (1:8) to a sparse kernel in the
    # recorded table, so the swap is checked whatever the timings were.
    manifest = read_manifest(path)
    for timing in manifest["dispatch"]["cpu"]["layers"]["fc1"].values():
        timing["kernel"] = "gather_sum"
    (path / MANIFEST).write_text(json.dumps(manifest))
    loaded = load(path)
    for name, per_class in manifest["dispatch"]["cpu"]["layers"].items():
        recorded = {int(batch): timing["kernel"] for batch, timing in per_class.items()}
        layer = loaded.get_submodule(name)
        if set(recorded.values()) == {"dense"}:
            assert type(layer) is nn.Linear, name
        else:
            assert isinstance(layer, KernelLinear), name
            assert layer.kernel_names() == recorded, name
    assert loaded.fc1.kernel_names() == {1: "gather_sum", 32: "gather_sum"}
    with torch.no_grad():
        assert_close(loaded(x), model(x))

    # The latency of a loaded model is that model's: no second swap, its own layers timed.
    loaded_ms, called = modules_called(loaded, x, min_run_time_s=0.01)
    assert loaded_ms > 0 and loaded.fc1 in called
    assert called <= set(loaded.modules())


def test_measure_latency_ms_times_the_model_asked_for(tmp_path):
    model = mlp_all_formats()
    x = torch.randn(32, 64)
    # Dense: the masked model itself, no kernel layer anywhere.
    dense_ms, called = modules_called(model, x, sparse_kernels=False, min_run_time_s=0.01)
    assert dense_ms > 0 and model.fc1 in called
    assert not any(isinstance(m, KernelLinear) for m in called)
    assert model.training is False
    # Sparse: a swapped copy, tuned for this batch only; the masked model is not run.
    sparse_ms, called = modules_called(model, x, min_run_time_s=0.01, tune_min_run_time_s=0.002)
    assert sparse_ms > 0 and not called & set(model.modules())
    assert all(list(m.kernel_names()) == [32] for m in called if isinstance(m, KernelLinear))
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
