"""``save``: write a model's export directory (formats by zeros, kernels by measurement)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from sparsearch.export._channels import prune_channels
from sparsearch.export._manifest import (
    FORMAT_VERSION,
    MANIFEST,
    WEIGHTS,
    file_sha256,
    tensors_sha256,
)
from sparsearch.export._model_check import check_whole_model
from sparsearch.export._plan import (
    ModelPlan,
    example_for,
    plan_model,
    strip_parametrizations,
    tune_plan,
)
from sparsearch.export._tuning import DEFAULT_BATCH_SIZES, machine_fingerprint
from sparsearch.spec import SubnetSpec, parse_block

__all__ = ["save", "spec_dict"]


def spec_dict(spec: SubnetSpec | dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON form of a spec; a dict is validated by a round trip through SubnetSpec."""
    if spec is None:
        return None
    if isinstance(spec, SubnetSpec):
        return spec.to_dict()
    if isinstance(spec, dict):
        return SubnetSpec.from_dict(spec).to_dict()
    raise TypeError(f"spec must be a SubnetSpec, its dict form or None, got {type(spec).__name__}")


def _package_version() -> str:
    try:
        return version("sparsearch")
    except PackageNotFoundError:
        return "unknown"


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters(), None)
    if param is None:
        return torch.device("cpu"), torch.float32
    return param.device, param.dtype


def dispatch_record(plan: ModelPlan, *, device: torch.device, dtype: torch.dtype,
                    batch_sizes: Sequence[int], model_check: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The manifest's record of one device's measured dispatch (and its whole-model check)."""
    return {
        "machine": machine_fingerprint(device),
        "dtype": str(dtype).removeprefix("torch."),
        "batch_sizes": sorted(batch_sizes),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "layers": {name: {str(t.batch_size): t.to_dict() for t in layer.timings}
                   for name, layer in plan.layers.items()},
        "model_check": model_check or {"skipped": "not run"},
    }


def _write(plan: ModelPlan, path: Path, manifest: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in plan.state.items():
        tensor = tensor.detach().cpu().contiguous()
        # safetensors refuses tensors sharing memory (tied weights): store a copy.
        if tensor.data_ptr() in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        tensors[key] = tensor
    layers: dict[str, Any] = {}
    dense_bytes = sum(t.numel() * t.element_size() for t in plan.state.values())
    for name, layer in plan.layers.items():
        parts = {part: f"{name}.weight.{part}" for part in layer.weight.tensors}
        for part, key in parts.items():
            tensors[key] = layer.weight.tensors[part].detach().cpu().contiguous()
        rows, cols = layer.weight.shape
        dense_bytes += rows * cols * 4
        layers[name] = {
            "module": layer.geometry,
            "layout": layer.layout,
            "format": layer.weight.format,
            "params": layer.weight.params,
            "shape": [rows, cols],
            "nnz": layer.weight.nnz,
            "density": round(layer.weight.density, 6),
            "sample_shape": list(layer.sample_shape),
            "tensors": parts,
            "bytes": layer.weight.nbytes,
            "sha256": tensors_sha256(layer.weight.tensors),
        }
    # One metadata key: safetensors writes the metadata map in hash order, and the file's
    # checksum should depend on the weights alone.
    safetensors.torch.save_file(tensors, str(path / WEIGHTS),
                                metadata={"sparsearch_export": str(FORMAT_VERSION)})
    manifest["layers"] = layers
    manifest["weights"] = {"file": WEIGHTS, "sha256": file_sha256(path / WEIGHTS),
                           "bytes": (path / WEIGHTS).stat().st_size, "dense_bytes": dense_bytes}
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def save(model: nn.Module, spec: SubnetSpec | dict[str, Any] | None, path: str | Path, *,
         example_input: torch.Tensor | None = None, device: str | torch.device | None = None,
         batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, tune: bool = True,
         min_run_time_s: float = 0.05, rounds: int = 2, min_speedup: float = 1.1,
         overwrite: bool = False) -> Path:
    """Exports ``model`` to the directory ``path`` (see the package docstring).

    Args:
        model: any module whose pruned weights are zeros (masks may still be applied).
        spec: the SubnetSpec, its dict form, or None.
        path: the export directory; it must not exist (or be empty) unless ``overwrite``.
        example_input: a model input; gives each layer's real input shape for timing and
            skips layers it never reaches. Defaults to one built from
            ``model.sparsearch_build``.
        device: where to measure the dispatch (default: the model's device).
        batch_sizes: batch-size classes to measure.
        tune: measure the dispatch now; if False, ``load`` measures it on first load.
        min_run_time_s: timing budget per kernel and class.
        rounds: interleaved timing rounds per contending kernel (median kept).
        min_speedup: how much faster than dense a sparse kernel must be to be chosen.
        overwrite: replace an existing export at ``path``.

    Returns:
        The export directory.
    """
    path = Path(path)
    spec_json = spec_dict(spec)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty (pass overwrite=True)")
    block_hint = None
    if spec_json and spec_json.get("pattern") == "block" and spec_json.get("block"):
        block_hint = parse_block(spec_json["block"])
    model_device, dtype = _device_and_dtype(model)
    source = copy.deepcopy(model)
    strip_parametrizations(source)
    example = example_for(source, example_input)
    source, channels = prune_channels(source.eval(), None if example is None else
                                      example.to(device=model_device, dtype=dtype))
    plan = plan_model(source, example_input=example_input, block_hint=block_hint)
    device = torch.device(device) if device is not None else model_device
    manifest: dict[str, Any] = {
        "sparsearch_export": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"sparsearch": _package_version(), "torch": torch.__version__},
        "spec": spec_json,
        "build": getattr(model, "sparsearch_build", None),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "input_shape": list(plan.input_shape) if plan.input_shape is not None else None,
        "dtype": str(dtype).removeprefix("torch."),
        "batch_sizes": sorted(batch_sizes),
        "channels": channels,
        "dispatch": {},
    }
    if tune:
        tune_plan(plan, device=device, dtype=dtype, batch_sizes=batch_sizes,
                  min_run_time_s=min_run_time_s, rounds=rounds, min_speedup=min_speedup)
        check = check_whole_model(source, plan, device=device, dtype=dtype,
                                  batch_sizes=batch_sizes, min_run_time_s=min_run_time_s,
                                  rounds=rounds)
        manifest["dispatch"][device.type] = dispatch_record(plan, device=device, dtype=dtype,
                                                           batch_sizes=batch_sizes,
                                                           model_check=check)
    # Written next to the target and renamed, so a crash never leaves half an export.
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write(plan, staging, manifest)
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
