"""Export: sparse subnets as compressed weights + a manifest, served by measured kernels.

``save(model, spec, path)`` writes a directory: ``weights.safetensors`` (each swappable
layer in the format its zeros call for: dense, CSR, BSR, N:M values + positions, 2:4 with
CUTLASS metadata; everything else under its ``state_dict`` name) and ``manifest.json``
(the SubnetSpec, how to rebuild the model, per-layer format and kernel per batch-size
class, measured speedups, checksums). Output channels a mask zeroed whole are removed
with the next layer's matching inputs, so channel sparsity is served as smaller dense
layers. No pickle.

``load(path, device)`` rebuilds the model (from ``sparsearch_build``, or the ``model=`` you
pass) with its Linear/Conv2d layers on the kernels measured fastest for each batch-size
class; dense stays wherever sparse does not win.

``measure_latency_ms`` is the search's latency objective; ``log_export`` puts an export in
MLflow's model registry under an alias. ``python -m sparsearch.export PATH --bench``
prints the per-layer kernel table.
"""

from sparsearch.export._latency import measure_latency_ms
from sparsearch.export._layers import KernelConv2d, KernelLinear
from sparsearch.export._load import load
from sparsearch.export._manifest import ExportError, read_manifest
from sparsearch.export._mlflow import RegisteredExport, load_registered, log_export
from sparsearch.export._save import save

# What a user calls or meets in a loaded model; format detection, batch classes, the
# kernel table and the latency seam are imported from their modules by the code that needs them.
__all__ = [
    "ExportError",
    "KernelConv2d",
    "KernelLinear",
    "RegisteredExport",
    "load",
    "load_registered",
    "log_export",
    "measure_latency_ms",
    "read_manifest",
    "save",
]
