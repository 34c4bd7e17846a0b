"""``load``: rebuild a model from an export directory, its layers on the chosen kernels.

The dispatch recorded in the manifest is used when it was measured for this device type
on the same processor (name and thread count) in the same dtype. Otherwise it is measured
at this first load and cached under ``$SPARSEARCH_CACHE_DIR/dispatch`` (default
``~/.cache/sparsearch``), keyed by the weights' checksum and the machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from sparsearch.export._channels import resize_layers
from sparsearch.export._layers import layer_geometry
from sparsearch.export._manifest import ExportError, file_sha256, read_manifest
from sparsearch.export._model_check import check_whole_model
from sparsearch.export._plan import (
    LayerPlan,
    ModelPlan,
    strip_parametrizations,
    swap_layers,
    tune_plan,
)
from sparsearch.export._save import dispatch_record
from sparsearch.export._tuning import LayerTiming, machine_fingerprint
from sparsearch.kernels import SparseWeight

__all__ = ["load", "read_plan", "rebuilt_model"]

log = logging.getLogger("sparsearch.export")


def read_plan(path: str | Path, manifest: dict[str, Any] | None = None
              ) -> tuple[ModelPlan, dict[str, Any]]:
    """Reads an export into a ``ModelPlan`` (checksum verified) and its manifest."""
    path = Path(path)
    manifest = manifest or read_manifest(path)
    weights_path = path / manifest["weights"]["file"]
    if file_sha256(weights_path) != manifest["weights"]["sha256"]:
        raise ExportError(f"{weights_path}: checksum mismatch (the file was changed or is "
                          "truncated)")
    tensors = safetensors.torch.load_file(str(weights_path))
    layers: dict[str, LayerPlan] = {}
    for name, info in manifest["layers"].items():
        parts = {part: tensors.pop(key) for part, key in info["tensors"].items()}
        weight = SparseWeight(info["format"], tuple(info["shape"]), parts, info["params"])
        bias = tensors.get(f"{name}.bias")
        layers[name] = LayerPlan(name, info["module"], info["layout"], weight, bias,
                                 tuple(info["sample_shape"]))
    input_shape = manifest.get("input_shape")
    return ModelPlan(layers, tensors, tuple(input_shape) if input_shape else None), manifest


def _rebuild(manifest: dict[str, Any]) -> nn.Module:
    build = manifest.get("build")
    if not build:
        raise ExportError(f"this export holds a {manifest.get('model_class')}, which sparsearch "
                          "did not build: pass the dense architecture as model=")
    from sparsearch.models import create_model

    return create_model(build["kind"], in_shape=tuple(build["in_shape"]),
                        num_classes=build["num_classes"], **build["options"])


def rebuilt_model(manifest: dict[str, Any], plan: ModelPlan) -> nn.Module | None:
    """The export's architecture with its state (layers' weights not set), if sparsearch
    built it; None for a user's own model, which only its author can rebuild."""
    try:
        model = _rebuild(manifest)
    except ExportError:
        return None
    resize_layers(model, manifest.get("channels", {}).get("shapes", {}))
    _load_state(model, plan)
    return model


def _load_state(model: nn.Module, plan: ModelPlan) -> None:
    modules = dict(model.named_modules())
    for name, layer in plan.layers.items():
        module = modules.get(name)
        geometry = layer_geometry(module) if module is not None else None
        if geometry != layer.geometry:
            raise ExportError(f"model= does not match the export: layer {name!r} is "
                              f"{geometry}, the export has {layer.geometry}")
    result = model.load_state_dict(plan.state, strict=False)
    layer_weights = {f"{name}.weight" for name in plan.layers}
    missing = [k for k in result.missing_keys if k not in layer_weights]
    if missing or result.unexpected_keys:
        raise ExportError("model= does not match the export: "
                          f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}")


def _cache_path(weights_sha: str, record_key: dict[str, Any]) -> Path:
    root = os.environ.get("SPARSEARCH_CACHE_DIR") or Path.home() / ".cache" / "sparsearch"
    key = hashlib.sha256(json.dumps(record_key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(root) / "dispatch" / f"{weights_sha[:16]}-{key}.json"


def _apply_record(plan: ModelPlan, record: dict[str, Any]) -> None:
    for name, layer in plan.layers.items():
        per_class = record["layers"].get(name, {})
        layer.timings = [LayerTiming.from_dict(int(b), data) for b, data in per_class.items()]


def _choose_dispatch(plan: ModelPlan, manifest: dict[str, Any], model: nn.Module, *,
                     device: torch.device, dtype: torch.dtype, batch_sizes: Sequence[int],
                     retune: bool, min_run_time_s: float) -> None:
    wanted = {"machine": machine_fingerprint(device), "dtype": str(dtype).removeprefix("torch."),
              "batch_sizes": sorted(batch_sizes)}
    record = manifest.get("dispatch", {}).get(device.type)
    if not retune and record and all(record.get(k) == v for k, v in wanted.items()):
        _apply_record(plan, record)
        return
    cache = _cache_path(manifest["weights"]["sha256"], wanted)
    if not retune and cache.is_file():
        _apply_record(plan, json.loads(cache.read_text()))
        return
    if record and not retune:
        log.info("sparsearch.export: dispatch was measured on %s; measuring on %s",
                 record.get("machine"), wanted["machine"])
    tune_plan(plan, device=device, dtype=dtype, batch_sizes=batch_sizes,
              min_run_time_s=min_run_time_s, rounds=2, min_speedup=1.1)
    # The model's swappable layers still hold their initial weights here: the dense side of
    # the check times the right shapes, and the exported side runs the export's weights.
    check = check_whole_model(model, plan, device=device, dtype=dtype, batch_sizes=batch_sizes,
                              min_run_time_s=min_run_time_s, rounds=2)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(dispatch_record(plan, device=device, dtype=dtype,
                                                    batch_sizes=batch_sizes,
                                                    model_check=check)))
    except OSError as err:
        log.warning("sparsearch.export: could not cache the dispatch in %s (%s)", cache, err)


def load(path: str | Path, device: str | torch.device = "cpu", model: nn.Module | None = None,
         *, dtype: torch.dtype | None = None, retune: bool = False,
         batch_sizes: Sequence[int] | None = None, min_run_time_s: float = 0.05) -> nn.Module:
    """Loads an export as an ``nn.Module`` whose Linear/Conv2d layers run the chosen kernels.

    Args:
        path: the export directory.
        device: ``"cpu"`` or ``"cuda"`` (or a ``torch.device``).
        model: the dense architecture, for models sparsearch did not build (modified in
            place and returned). Masks on it are removed; its weights are replaced.
        dtype: run in this floating-point dtype (fp16/bf16 enable 2:4 semi-structured on
            CUDA); default: the stored dtype.
        retune: measure the dispatch again even if the manifest or cache has one.
        batch_sizes: batch-size classes (default: the export's).
        min_run_time_s: timing budget per kernel and class when measuring.

    Returns:
        The model in eval mode on ``device``.

    Raises:
        ExportError: a missing or malformed export, a checksum mismatch, or a ``model``
            that does not match it.
    """
    device = torch.device(device)
    plan, manifest = read_plan(path)
    if model is None:
        model = _rebuild(manifest)
    strip_parametrizations(model)
    resize_layers(model, manifest.get("channels", {}).get("shapes", {}))
    _load_state(model, plan)
    dtype = dtype or getattr(torch, manifest.get("dtype", "float32"))
    model.to(device=device, dtype=dtype)
    sizes = sorted(batch_sizes or manifest.get("batch_sizes") or (1, 32, 256))
    _choose_dispatch(plan, manifest, model, device=device, dtype=dtype, batch_sizes=sizes,
                     retune=retune, min_run_time_s=min_run_time_s)
    swap_layers(model, plan, device=device, dtype=dtype, batch_sizes=sizes)
    return model.eval()
