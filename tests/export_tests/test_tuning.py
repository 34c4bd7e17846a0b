"""The dispatcher: real timings decide, wrong kernels are refused, routing never costs dense."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sparsearch.kernels import Kernel, encode_weight, register_kernel
from sparsearch.kernels._registry import KERNELS
from torch import nn

from sparsearch.export._model_check import check_whole_model
from sparsearch.export._plan import plan_model, tune_plan
from sparsearch.export._tuning import (
    LayerTiming,
    _keep_dense_classes_whole,
    time_interleaved,
    tune_layer,
)
from sparsearch.models import create_model
from sparsearch.sparsity import apply_masks, nm_mask

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
    KERNELS.unregister("off_by_one_percent")


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


def test_timings_are_interleaved_medians_with_their_spread_and_load():
    timings = tune_layer(LINEAR, nm_weight(), layout="oi", bias=None, sample_shape=(64,),
                         batch_sizes=(4,), min_run_time_s=0.003, rounds=1)
    (t,) = timings
    assert "dense" in t.spread_ms and t.load_avg is not None
    for name, (lo, hi) in t.spread_ms.items():
        assert lo <= t.times_ms[name] <= hi
    again = LayerTiming.from_dict(4, t.to_dict())
    assert again.spread_ms.keys() == t.spread_ms.keys() and again.load_avg == pytest.approx(
        t.load_avg, abs=0.01)


def test_time_interleaved_samples_every_module_in_turn():
    calls = []

    def module(name):
        return lambda x: calls.append(name)

    samples = time_interleaved({"a": module("a"), "b": module("b")}, torch.zeros(1),
                               min_run_time_s=1e-9, rounds=2)
    assert [len(v) for v in samples.values()] == [6, 6]
    assert all(ms > 0 for v in samples.values() for ms in v)
    # In turn: the last timed call of the run is b's, and both ran equally often.
    assert calls[-1] == "b" and calls.count("a") == calls.count("b")


def three_equal_layers() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("mlp", in_shape=(64,), num_classes=10, hidden=(64, 64, 64))
    apply_masks(model, {name: nm_mask(getattr(model, name).weight, 1, 8)
                        for name in ("fc2", "fc3")})
    return model.eval()


def test_layers_of_one_shape_format_and_density_share_one_measurement():
    model = three_equal_layers()
    plan = plan_model(model)
    tune_plan(plan, device="cpu", dtype=torch.float32, batch_sizes=(1, 8),
              min_run_time_s=0.002, rounds=1, min_speedup=1.1)
    fc2, fc3 = plan.layers["fc2"].timings, plan.layers["fc3"].timings
    assert all(t.shared_with is None for t in fc2)
    assert all(t.shared_with == "fc2" for t in fc3)
    assert [t.kernel for t in fc3] == [t.kernel for t in fc2]
    assert [t.times_ms for t in fc3] == [t.times_ms for t in fc2]


def test_whole_model_check_sends_a_slower_export_class_to_dense():
    model = three_equal_layers()
    plan = plan_model(model)
    tune_plan(plan, device="cpu", dtype=torch.float32, batch_sizes=(1, 8),
              min_run_time_s=0.002, rounds=1, min_speedup=1.1)
    for layer in ("fc2", "fc3"):  # as if the layers had won: the check must catch it
        for t in plan.layers[layer].timings:
            t.kernel, t.speedup = "csr", 2.0
    kept = check_whole_model(model, plan, device=torch.device("cpu"), dtype=torch.float32,
                             batch_sizes=(1, 8), min_run_time_s=0.002, rounds=1, min_ratio=0.0)
    assert {kept[b]["kept"] for b in ("1", "8")} == {"export"}
    dropped = check_whole_model(model, plan, device=torch.device("cpu"), dtype=torch.float32,
                                batch_sizes=(1, 8), min_run_time_s=0.002, rounds=1,
                                min_ratio=1e9)
    assert {dropped[b]["kept"] for b in ("1", "8")} == {"dense"}
    for t in plan.layers["fc2"].timings:
        assert t.kernel == "dense" and t.rejected["csr"].startswith("whole model ran ")
    assert check_whole_model(model, plan, device=torch.device("cpu"), dtype=torch.float32,
                             batch_sizes=(1, 8), min_run_time_s=0.002,
                             rounds=1)["1"] == {"kept": "dense", "speedup": 1.0}


@pytest.mark.parametrize(("load", "measurements"), [(0.0, 1), (1e3, 2)])
def test_a_class_timed_on_a_busy_machine_is_timed_again(monkeypatch, load, measurements):
    from sparsearch.export import _tuning

    calls = []
    real = _tuning.time_interleaved

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_tuning, "time_interleaved", counting)
    monkeypatch.setattr(_tuning.os, "getloadavg", lambda: (load, load, load))
    (t,) = tune_layer(LINEAR, nm_weight(), layout="oi", bias=None, sample_shape=(64,),
                      batch_sizes=(2,), min_run_time_s=0.002, rounds=1)
    assert len(calls) == measurements and t.load_avg == load
