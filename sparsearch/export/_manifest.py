"""The export directory: ``weights.safetensors`` plus ``manifest.json``; no pickle anywhere.

The manifest says what the model is (the SubnetSpec; how to rebuild it: the
``sparsearch_build`` of ``create_model`` and the class name), how each swappable layer is
stored (format, params, layout, shape, density, tensor keys, sha256), and the measured
dispatch per device type (kernel and speedup per batch-size class, all timings with their
spread, the machine, the whole-model check), and which all-zero channels were removed as
structure (``channels``). The weights file holds every tensor of the model's state under its
``state_dict`` name, except the weights of the swappable layers, which are stored as their
format's parts under ``"{layer}.weight.{part}"``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["FORMAT_VERSION", "MANIFEST", "WEIGHTS", "ExportError", "file_sha256",
           "read_manifest", "tensors_sha256"]

# 2: layers may be smaller than the rebuilt architecture's (``channels.shapes``), which a
# reader of version 1 would refuse with a confusing shape mismatch instead of this version.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"


class ExportError(ValueError):
    """An export directory that is missing, malformed, or does not match the model."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """A checksum over named tensors (names, dtypes, shapes and bytes, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{list(t.shape)}:".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


# What readers index without a fallback; save() always writes these.
_REQUIRED_KEYS = {"weights": dict, "layers": dict, "batch_sizes": list}
_REQUIRED_WEIGHTS_KEYS = {"file": str, "sha256": str}


def _check_keys(node: dict[str, Any], required: dict[str, type], *, where: str,
                manifest_path: Path) -> None:
    for key, kind in required.items():
        if key not in node:
            raise ExportError(f"{manifest_path}: missing required key '{where}{key}'")
        if not isinstance(node[key], kind):
            raise ExportError(f"{manifest_path}: key '{where}{key}' is a "
                              f"{type(node[key]).__name__}, expected a {kind.__name__}")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Reads and checks an export directory's manifest.

    Raises:
        ExportError: when ``path`` is not a directory holding a sparsearch export.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such export directory")
    if not path.is_dir():
        raise ExportError(f"{path}: not a directory (an export is a directory)")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ExportError(f"{path}: not a sparsearch export (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{manifest_path}: not valid JSON ({err})") from err
    if not isinstance(manifest, dict) or "sparsearch_export" not in manifest:
        raise ExportError(f"{manifest_path}: not a sparsearch export manifest")
    version = manifest["sparsearch_export"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise ExportError(f"{manifest_path}: export format {version!r} is not an integer")
    if version > FORMAT_VERSION:
        raise ExportError(f"{path}: export format {version} is newer than "
                          f"this sparsearch reads ({FORMAT_VERSION})")
    _check_keys(manifest, _REQUIRED_KEYS, where="", manifest_path=manifest_path)
    _check_keys(manifest["weights"], _REQUIRED_WEIGHTS_KEYS, where="weights.",
                manifest_path=manifest_path)
    if not (path / manifest["weights"]["file"]).is_file():
        raise ExportError(f"{path}: weights file {manifest['weights']['file']} is missing")
    return manifest
