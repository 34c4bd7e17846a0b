"""save -> load round trips: every format, every kernel, masked or baked, built or hand-made."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import safetensors.torch
import torch
from sparsearch.kernels import get_kernel, list_kernels
from torch import nn

from sparsearch.export import ExportError, KernelConv2d, KernelLinear, load, read_manifest, save
from sparsearch.export._layers import batch_class
from sparsearch.models import create_model
from sparsearch.sparsity import apply_masks, block_mask, nm_mask, remove_masks, unstructured_mask
from sparsearch.spec import SubnetSpec

from .conftest import FAST, FORMAT_MASKS, assert_close, mlp_all_formats, mlp_with

# Batches that land in every class of (1, 32, 256), and between them.
BATCHES = (1, 5, 40, 300)


def outputs(model: nn.Module, batches=BATCHES, shape=(64,)) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return [model(torch.randn(b, *shape, generator=generator)) for b in batches]


def force_kernel(path, layer: str, kernel: str) -> None:
    """Rewrites the recorded dispatch so ``layer`` runs ``kernel`` for every class."""
    manifest = json.loads((path / "manifest.json").read_text())
    for entry in manifest["dispatch"]["cpu"]["layers"][layer].values():
        entry["kernel"] = kernel
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("fmt", list(FORMAT_MASKS))
def test_every_format_round_trips(tmp_path, fmt):
    model = mlp_with(fmt)
    save(model, None, tmp_path / "export", **FAST)
    manifest = read_manifest(tmp_path / "export")
    assert manifest["layers"]["fc2"]["format"] == fmt
    loaded = load(tmp_path / "export")
    for y, ref in zip(outputs(loaded), outputs(model)):
        assert_close(y, ref)


CPU_CASES = [(fmt, kernel) for fmt in ("csr", "bsr", "nm", "semi24")
             for kernel in list_kernels(format=fmt, device="cpu")]


@pytest.mark.parametrize(("fmt", "kernel"), CPU_CASES, ids=[f"{f}-{k}" for f, k in CPU_CASES])
def test_every_cpu_kernel_runs_the_loaded_model(tmp_path, fmt, kernel):
    model = mlp_with(fmt)
    save(model, None, tmp_path / "export", **FAST)
    force_kernel(tmp_path / "export", "fc2", kernel)
    loaded = load(tmp_path / "export")
    if kernel == "dense":
        assert type(loaded.fc2) is nn.Linear  # dense everywhere: the plain module, no overhead
    else:
        assert isinstance(loaded.fc2, KernelLinear)
        assert set(loaded.fc2.kernel_names().values()) == {kernel}
    for y, ref in zip(outputs(loaded), outputs(model)):
        assert_close(y, ref)


def test_all_formats_in_one_model_and_the_manifest(tmp_path):
    model = mlp_all_formats()
    spec = SubnetSpec(pattern="nm", nm="1:8", recipe="one_shot")
    path = save(model, spec, tmp_path / "export", **FAST)
    manifest = read_manifest(path)
    formats = {name: info["format"] for name, info in manifest["layers"].items()}
    assert formats == {"fc1": "nm", "fc2": "semi24", "fc3": "bsr", "fc4": "csr", "head": "dense"}
    assert SubnetSpec.from_dict(manifest["spec"]) == spec
    assert manifest["build"] == {"kind": "mlp", "in_shape": [64], "num_classes": 10,
                                 "options": {"hidden": [128, 128, 128, 128]}}
    assert manifest["input_shape"] == [64] and manifest["batch_sizes"] == [1, 32, 256]
    assert len(manifest["weights"]["sha256"]) == 64
    assert manifest["weights"]["bytes"] < manifest["weights"]["dense_bytes"]
    record = manifest["dispatch"]["cpu"]
    assert record["machine"]["threads"] == torch.get_num_threads()
    for name, per_class in record["layers"].items():
        assert sorted(per_class, key=int) == ["1", "32", "256"]
        for entry in per_class.values():
            assert entry["kernel"] in list_kernels(format=formats[name], device="cpu")
            if entry["kernel"] == "dense":
                assert entry["speedup"] == 1.0
            else:  # chosen only when it beat dense by the margin, in the same run
                assert entry["speedup"] >= 1.1
                assert entry["times_ms"]["dense"] / entry["times_ms"][entry["kernel"]] >= 1.1
    fc1 = record["layers"]["fc1"]["32"]
    assert {"dense", "csr", "gather_sum", "nm_cpu"} <= set(fc1["times_ms"])
    # No pickle: the weights are plain safetensors with the layer parts as named.
    tensors = safetensors.torch.load_file(str(path / "weights.safetensors"))
    assert tensors["fc1.weight.indices"].dtype == torch.uint8
    assert "fc1.weight" not in tensors and "fc1.bias" in tensors
    loaded = load(path)
    for y, ref in zip(outputs(loaded), outputs(model)):
        assert_close(y, ref)


def test_masked_and_baked_models_write_the_same_weights(tmp_path):
    masked = mlp_all_formats()
    save(masked, None, tmp_path / "masked", tune=False)
    remove_masks(masked)
    save(masked, None, tmp_path / "baked", tune=False)
    sha = [read_manifest(tmp_path / d)["weights"]["sha256"] for d in ("masked", "baked")]
    assert sha[0] == sha[1]


def test_spec_may_be_a_spec_a_dict_or_none(tmp_path):
    model = mlp_with("nm")
    spec = SubnetSpec(pattern="block", block="16x16", sparsity=0.5)
    for i, given in enumerate([spec, spec.to_dict(), None]):
        save(model, given, tmp_path / f"e{i}", tune=False)
        expected = None if given is None else spec.to_dict()
        assert read_manifest(tmp_path / f"e{i}")["spec"] == expected
    with pytest.raises(ValueError, match="sparsity must be in"):
        save(model, {"pattern": "unstructured", "sparsity": 1.5}, tmp_path / "bad", tune=False)
    with pytest.raises(TypeError, match="SubnetSpec"):
        save(model, "nm", tmp_path / "bad", tune=False)


def test_save_refuses_to_overwrite_unless_asked(tmp_path):
    model = mlp_with("csr")
    save(model, None, tmp_path / "e", tune=False)
    with pytest.raises(FileExistsError):
        save(model, None, tmp_path / "e", tune=False)
    save(model, None, tmp_path / "e", tune=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["manifest.json",
                                                                  "weights.safetensors"]
    assert not list(tmp_path.glob(".e.tmp-*"))


def test_a_changed_weights_file_is_refused(tmp_path):
    path = save(mlp_with("csr"), None, tmp_path / "e", tune=False)
    data = bytearray((path / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="checksum mismatch"):
        load(path)


class HandMade(nn.Module):
    """Not built by sparsearch: 1x1 strided conv, 3x3 conv, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(16, 32, 3, padding=1)
        self.mix = nn.Conv2d(32, 64, 1, stride=2)
        self.norm = nn.BatchNorm2d(64)
        self.head = nn.Linear(64, 7)
        self.unused = nn.Linear(64, 64)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.norm(self.mix(x))
        return self.head(x.mean(dim=(2, 3)))


def hand_made() -> nn.Module:
    torch.manual_seed(0)
    model = HandMade()
    model.norm.running_mean.uniform_(-1, 1)
    with torch.no_grad():
        model.stem.weight.mul_(nm_mask(model.stem.weight, 1, 4))
        model.mix.weight.mul_(unstructured_mask(model.mix.weight, 0.9))
        model.head.weight.mul_(block_mask(model.head.weight, 0.5, block=(1, 16)))
    return model.eval()


def test_a_hand_made_module_loads_into_its_dense_architecture(tmp_path):
    model = hand_made()
    x = torch.randn(3, 16, 10, 10)
    path = save(model, None, tmp_path / "e", example_input=x, batch_sizes=(1, 8), **FAST)
    manifest = read_manifest(path)
    assert manifest["build"] is None and manifest["model_class"].endswith("HandMade")
    # unused never ran on the example, so it stays plain state.
    assert set(manifest["layers"]) == {"stem", "mix", "head"}
    assert manifest["layers"]["stem"]["layout"] == "ohwi"
    assert manifest["layers"]["mix"]["sample_shape"] == [32, 10, 10]
    with pytest.raises(ExportError, match="pass the dense architecture as model="):
        load(path)
    with pytest.raises(ExportError, match="does not match"):
        load(path, model=nn.Sequential(nn.Linear(3, 3)))
    for layer, kernel in (("stem", "gather_sum"), ("mix", "csr")):
        force_kernel(path, layer, kernel)
    loaded = load(path, model=HandMade())
    assert isinstance(loaded.stem, KernelConv2d) and isinstance(loaded.mix, KernelConv2d)
    with torch.no_grad():
        for batch in (1, 4, 50):
            x = torch.randn(batch, 16, 10, 10)
            assert_close(loaded(x), model(x))
        # An unbatched input reaches a conv as [C, H, W].
        assert_close(loaded.stem(x[0]), model.stem(x[:1])[0])


@pytest.mark.parametrize("kernel", ["csr", "gather_sum", "nm_cpu", "dense"])
def test_conv_layers_run_as_sparse_gemms(tmp_path, kernel):
    torch.manual_seed(0)
    model = create_model("cnn", in_shape=(8, 6, 6), num_classes=10, channels=(32, 64, 64))
    apply_masks(model, {"conv2": nm_mask(model.conv2.weight, 1, 8),
                        "conv3": nm_mask(model.conv3.weight, 2, 8)})
    model.eval()
    # Small classes: an unfolded conv batch is batch * H * W GEMM rows.
    path = save(model, None, tmp_path / "e", batch_sizes=(1, 8), **FAST)
    for layer in ("conv2", "conv3"):
        force_kernel(path, layer, kernel)
    loaded = load(path)
    with torch.no_grad():
        for batch in (1, 3, 20):
            x = torch.randn(batch, 8, 6, 6)
            assert_close(loaded(x), model(x))


def test_a_masked_model_passed_as_architecture_is_unmasked(tmp_path):
    model = mlp_with("nm")
    path = save(model, None, tmp_path / "e", **FAST)
    target = mlp_with("csr", seed=5)  # different weights and masks still on
    loaded = load(path, model=target)
    assert loaded is target
    assert not any("parametrizations" in name for name, _ in loaded.named_parameters())
    for y, ref in zip(outputs(loaded), outputs(model)):
        assert_close(y, ref)


def test_unmeasured_exports_are_measured_at_first_load_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    model = mlp_with("nm")
    path = save(model, None, tmp_path / "e", tune=False)
    assert read_manifest(path)["dispatch"] == {}
    loaded = load(path, min_run_time_s=0.002)
    cached = list((tmp_path / "cache" / "dispatch").glob("*.json"))
    assert len(cached) == 1
    record = json.loads(cached[0].read_text())
    assert set(record["layers"]["fc2"]) == {"1", "32", "256"}
    for y, ref in zip(outputs(loaded), outputs(model)):
        assert_close(y, ref)
    load(path)  # second load: from the cache, nothing new written
    assert list((tmp_path / "cache" / "dispatch").glob("*.json")) == cached


def test_other_batch_classes_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    path = save(mlp_with("nm"), None, tmp_path / "e", tune=False)
    loaded = load(path, batch_sizes=(4, 64), min_run_time_s=0.002)
    if isinstance(loaded.fc2, KernelLinear):
        assert list(loaded.fc2.kernel_names()) == [4, 64]


def test_batch_class_picks_the_nearest_class_on_a_log_scale():
    sizes = (1, 32, 256)
    assert [batch_class(b, sizes) for b in (1, 5, 6, 32, 90, 91, 256, 10_000)] == \
        [1, 1, 32, 32, 32, 256, 256, 256]


gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_load_on_cuda_measures_there(tmp_path, monkeypatch, dtype):
    monkeypatch.setenv("SPARSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    model = mlp_all_formats()
    path = save(model, None, tmp_path / "e", **FAST)
    loaded = load(path, device="cuda", dtype=dtype, min_run_time_s=0.002)
    generator = torch.Generator().manual_seed(1)
    for batch in BATCHES:
        x = torch.randn(batch, 64, generator=generator)
        y = loaded(x.to("cuda", dtype or torch.float32)).float().cpu()
        assert_close(y, model(x).detach(), rtol=1e-5 if dtype is None else 2e-2)
    assert get_kernel("semi_structured").devices == ("cuda",)


LOAD_IN_A_NEW_PROCESS = """
import logging
import sys
import safetensors.torch
import torch
from sparsearch.export import load
logging.basicConfig(level=logging.INFO)
model = load(sys.argv[1])
data = safetensors.torch.load_file(sys.argv[2])
with torch.no_grad():
    y = model(data["x"])
print(float((y - data["y"]).abs().max() / data["y"].abs().max()))
print(sorted(set(model.fc1.kernel_names().values())) if hasattr(model.fc1, "kernel_names")
      else "plain")
"""


@pytest.mark.parametrize("compiler", ["works", "broken"])
def test_a_new_process_loads_the_c_extension_or_falls_back(tmp_path, compiler):
    model = mlp_all_formats()
    path = save(model, None, tmp_path / "e", **FAST)
    force_kernel(path, "fc1", "nm_cpu")
    x = torch.randn(9, 64)
    with torch.no_grad():
        safetensors.torch.save_file({"x": x, "y": model(x)}, str(tmp_path / "io.safetensors"))
    # The thread count the dispatch was measured with, so the recorded choice is used.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    if compiler == "broken":  # a fresh cache and no compiler: the build fails at load
        env.update(SPARSEARCH_CACHE_DIR=str(tmp_path / "cache"), CXX=str(tmp_path / "no-g++"))
    result = subprocess.run([sys.executable, "-c", LOAD_IN_A_NEW_PROCESS, str(path),
                             str(tmp_path / "io.safetensors")], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    error, kernels = result.stdout.strip().splitlines()
    assert float(error) <= 1e-5
    if compiler == "works":  # the extension came from the cache, not a new build
        assert kernels == "['nm_cpu']"
        assert "building the N:M CPU kernel" not in result.stderr
    else:
        assert "nm_cpu" not in kernels
        assert "fc1 cannot use nm_cpu here (the N:M C++ kernel failed to build" in result.stderr
        fallback = [line for line in result.stderr.splitlines()
                    if "N:M layers use the plain-torch gather_sum kernel instead" in line]
        assert len(fallback) == 1
