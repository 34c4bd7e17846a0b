"""The latency objective: a model's measured time with its chosen sparse kernels.

``with_sparse_kernels`` is ``save`` + ``load`` without the files: it copies the model and
swaps its layers onto measured kernels. ``measure_latency_ms`` times a model on an example
batch, by default after that swap, so a search can minimise ``latency_ms`` as it will be
served rather than as FLOPs suggest.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from sparsearch.export._channels import prune_channels
from sparsearch.export._layers import KernelConv2d, KernelLinear
from sparsearch.export._model_check import check_whole_model
from sparsearch.export._plan import (
    example_for,
    plan_model,
    strip_parametrizations,
    swap_layers,
    tune_plan,
)
from sparsearch.export._tuning import DEFAULT_BATCH_SIZES, time_ms

__all__ = ["measure_latency_ms", "with_sparse_kernels"]


def with_sparse_kernels(model: nn.Module, *, example_input: torch.Tensor | None = None,
                        device: str | torch.device | None = None,
                        batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
                        min_run_time_s: float = 0.05, rounds: int = 2,
                        min_speedup: float = 1.1) -> nn.Module:
    """A copy of ``model`` whose Linear/Conv2d layers run the fastest measured kernels, and
    whose all-zero output channels are removed where that is exact (``save`` does both).

    Args:
        model: any module whose pruned weights are zeros (masks may still be applied);
            it is not modified.
        example_input: a model input (gives the layers' real input shapes).
        device: where to measure and run (default: the model's device).
        batch_sizes: batch-size classes to measure.
        min_run_time_s: timing budget per kernel and class.
        rounds: interleaved timing rounds per contending kernel (median kept).
        min_speedup: how much faster than dense a sparse kernel must be to be chosen.

    Returns:
        The copy, in eval mode.
    """
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = torch.device(device) if device is not None else (
        param.device if param is not None else torch.device("cpu"))
    copied = copy.deepcopy(model)
    strip_parametrizations(copied)
    example = example_for(copied, example_input)
    # Channels the mask removed whole run as smaller layers, as load() would serve them.
    copied, _ = prune_channels(copied.eval(), None if example is None else
                               example.to(device=param.device if param is not None else device,
                                          dtype=dtype))
    plan = plan_model(copied, example_input=example_input)
    tune_plan(plan, device=device, dtype=dtype, batch_sizes=batch_sizes,
              min_run_time_s=min_run_time_s, rounds=rounds, min_speedup=min_speedup)
    copied.to(device)
    check_whole_model(copied, plan, device=device, dtype=dtype, batch_sizes=batch_sizes,
                      min_run_time_s=min_run_time_s, rounds=rounds)
    swap_layers(copied, plan, device=device, dtype=dtype, batch_sizes=batch_sizes)
    return copied.eval()


def _has_sparse_layers(model: nn.Module) -> bool:
    return any(isinstance(m, (KernelLinear, KernelConv2d)) for m in model.modules())


def measure_latency_ms(model: nn.Module, example_input: torch.Tensor, *,
                       sparse_kernels: bool = True, min_run_time_s: float = 0.2,
                       tune_min_run_time_s: float = 0.02, threads: int | None = None) -> float:
    """Median milliseconds of one forward pass on ``example_input``.

    Args:
        model: a dense/masked model, or one returned by ``load``/``with_sparse_kernels``.
        example_input: the batch to time (its batch size is the one that matters).
        sparse_kernels: first swap a copy of the model onto the kernels measured fastest
            at this batch size (skipped for models that already run sparse kernels).
        min_run_time_s: timing budget of the model.
        tune_min_run_time_s: timing budget per kernel when choosing them (one round: a
            search calls this once per trial).
        threads: torch threads while timing (default: the current setting).

    Returns:
        ``latency_ms``, the median of ``torch.utils.benchmark.Timer`` blocks under no_grad.
    """
    if sparse_kernels and not _has_sparse_layers(model):
        model = with_sparse_kernels(model, example_input=example_input,
                                    batch_sizes=(max(1, example_input.shape[0]),),
                                    min_run_time_s=tune_min_run_time_s, rounds=1)
    was_training = model.training
    model.eval()
    try:
        return time_ms(model, example_input, min_run_time_s=min_run_time_s, threads=threads)
    finally:
        model.train(was_training)
