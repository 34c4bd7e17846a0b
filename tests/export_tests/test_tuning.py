"""The dispatcher: real timings decide, wrong kernels are refused, routing never costs dense."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sparsearch.kernels import Kernel, encode_weight, register_kernel
from sparsearch.kernels._registry import _KERNELS
from torch import nn

from sparsearch.export._tuning import LayerTiming, _keep_dense_classes_whole, tune_layer
from sparsearch.sparsity import nm_mask

LINEAR = {"type": "linear", "in_features": 64, "out_features": 32, "bias": True}


@pytest.fixture
def off_by_one_percent():
    """A real kernel, registered for the test, whose results are 1% off."""

    @register_kernel("off_by_one_percent")
    class OffKernel(Kernel):
        formats = ("nm",)
        devices = ("cpu",)

        def prepare(self, weight, *, device, dtype):
            return {"weight": weight.to_dense().to(device, dtype)}

        def linear(self, operands, x, bias=None):
            return F.linear(x, operands["weight"] * 1.01, bias)

    yield "off_by_one_percent"
    del _KERNELS["off_by_one_percent"]


def nm_weight():
    w = torch.randn(32, 64)
    return encode_weight(w * nm_mask(w, 1, 8), "nm", n=1, m=8)


def test_every_class_gets_a_choice_and_its_timings(off_by_one_percent):
    timings = tune_layer(LINEAR, nm_weight(), layout="oi", bias=torch.randn(32),
                         sample_shape=(64,), batch_sizes=(1, 16), min_run_time_s=0.002,
                         rounds=1)
    assert [t.batch_size for t in timings] == [1, 16]
    for t in timings:
        assert {"dense", "csr", "gather_sum", "nm_cpu"} <= set(t.times_ms)
        assert t.kernel in t.times_ms
        assert t.speedup == pytest.approx(t.times_ms["dense"] / t.times_ms[t.kernel])
        assert off_by_one_percent not in t.times_ms
        assert t.rejected[off_by_one_percent].startswith("relative error ")
        assert t.rejected[off_by_one_percent].endswith("> 1e-05")


def test_a_routing_layer_that_slows_a_dense_class_stays_dense():
    dense = nn.Linear(64, 32)

    class Slower(nn.Module):
        def forward(self, x):
            for _ in range(20):
                y = dense(x)
            return y

    results = [LayerTiming(1, "dense", 1.0, {"dense": 1.0}),
               LayerTiming(32, "csr", 2.0, {"dense": 2.0, "csr": 1.0})]
    _keep_dense_classes_whole(results, dense, {1: torch.randn(1, 64), 32: torch.randn(32, 64)},
                              min_run_time_s=0.002, build=lambda kernels: Slower())
    assert [r.kernel for r in results] == ["dense", "dense"]
    assert results[1].speedup == 1.0
    assert results[1].rejected["csr"].startswith("kept dense: routing would cost batch 1")


def test_layers_sparse_or_dense_everywhere_are_not_re_timed():
    results = [LayerTiming(1, "csr", 2.0, {}), LayerTiming(32, "csr", 2.0, {})]

    def build(kernels):
        raise AssertionError("no routing check needed")

    _keep_dense_classes_whole(results, nn.Identity(), {}, min_run_time_s=0.002, build=build)
    assert [r.kernel for r in results] == ["csr", "csr"]
