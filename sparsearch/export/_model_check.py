"""The whole-model check after dispatch: an export is never slower than dense at any class.

Per-layer timings can each beat dense and still lose end to end: the routing modules'
reshapes, the transposed outputs a kernel hands the next layer, caches evicted between
layers. So once every layer has its kernels, the exported model is timed against the
dense model on the same input, interleaved (``time_interleaved``), per batch-size class;
where the export is not at least ``MIN_MODEL_RATIO`` of dense's speed, every layer runs
dense at that class, and the manifest says so.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sparsearch.export._plan import ModelPlan, strip_parametrizations, swap_layers
from sparsearch.export._tuning import time_interleaved

__all__ = ["MIN_MODEL_RATIO", "check_whole_model"]

# The export's promise: at least this fraction of dense's speed at every batch class.
MIN_MODEL_RATIO = 0.95


def check_whole_model(model: nn.Module, plan: ModelPlan, *, device: torch.device,
                      dtype: torch.dtype, batch_sizes: Sequence[int], min_run_time_s: float,
                      rounds: int, min_ratio: float = MIN_MODEL_RATIO) -> dict[str, Any]:
    """Times ``model`` with ``plan``'s kernels against it dense; slow classes go dense.

    Args:
        model: the dense architecture holding the weights (masks may still be applied);
            it is not modified.
        plan: the tuned plan; classes that fail the check are set to dense in place.
        device: where to time.
        dtype: the dtype to run in.
        batch_sizes: the batch-size classes.
        min_run_time_s: timing budget per model and interleaved round.
        rounds: interleaved rounds.
        min_ratio: the least dense/export time ratio an export class may have.

    Returns:
        The manifest's record: per class, both medians, their spreads, the ratio and what
        was kept; or ``{"skipped": why}`` without an input shape.
    """
    if plan.input_shape is None:
        return {"skipped": "no example input, so the model's input shape is unknown"}
    sizes = sorted(batch_sizes)
    dense = copy.deepcopy(model)
    strip_parametrizations(dense)
    dense.to(device=device, dtype=dtype).eval()
    exported = copy.deepcopy(dense)
    swap_layers(exported, plan, device=device, dtype=dtype, batch_sizes=sizes)
    generator = torch.Generator().manual_seed(0)
    record: dict[str, Any] = {}
    for i, batch in enumerate(sizes):
        if all(layer.kernels(sizes)[i] == "dense" for layer in plan.layers.values()):
            record[str(batch)] = {"kept": "dense", "speedup": 1.0}
            continue
        x = torch.randn(batch, *plan.input_shape, generator=generator).to(device=device,
                                                                          dtype=dtype)
        samples = time_interleaved({"dense": dense, "export": exported}, x,
                                   min_run_time_s=min_run_time_s, rounds=rounds)
        dense_ms = statistics.median(samples["dense"])
        export_ms = statistics.median(samples["export"])
        ratio = dense_ms / export_ms
        kept = "export" if ratio >= min_ratio else "dense"
        record[str(batch)] = {
            "kept": kept, "speedup": round(ratio, 4), "dense_ms": round(dense_ms, 6),
            "export_ms": round(export_ms, 6),
            "spread_ms": {name: [round(min(v), 6), round(max(v), 6)]
                          for name, v in samples.items()}}
        if kept == "dense":
            reason = (f"whole model ran {ratio:.2f}x of dense at batch {batch} "
                      f"(< {min_ratio}): every layer kept dense at this class")
            for layer in plan.layers.values():
                for timing in layer.timings:
                    if timing.batch_size == batch and timing.kernel != "dense":
                        timing.rejected[timing.kernel] = reason
                        timing.kernel, timing.speedup = "dense", 1.0
    return record
