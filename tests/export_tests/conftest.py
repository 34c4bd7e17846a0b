"""Masked models covering every storage format, and fast export settings for tests."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from sparsearch.models import create_model
from sparsearch.sparsity import apply_masks, block_mask, nm_mask, unstructured_mask

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def one_thread():
    """Tests need real timings, not fast ones: on one thread, tiny ops do not stall on
    OpenMP barriers when other processes share the two cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

# Timing budget small enough for tests; choices made with it are still real measurements.
FAST = {"min_run_time_s": 0.002, "rounds": 1}

# Which mask gives which storage format on a 128 x 128 Linear.
FORMAT_MASKS = {
    "dense": lambda w: torch.ones_like(w, dtype=torch.bool),
    "csr": lambda w: unstructured_mask(w, 0.9),
    "bsr": lambda w: block_mask(w, 0.75, block=(16, 16)),
    "nm": lambda w: nm_mask(w, 1, 8),
    "semi24": lambda w: nm_mask(w, 2, 4),
}


def mlp_with(fmt: str, *, seed: int = 0) -> nn.Module:
    """A digits-sized MLP (64 -> 128 -> 128 -> 10) whose middle layer is pruned for ``fmt``."""
    torch.manual_seed(seed)
    model = create_model("mlp", in_shape=(64,), num_classes=10, hidden=(128, 128))
    apply_masks(model, {"fc2": FORMAT_MASKS[fmt](model.fc2.weight)})
    return model.eval()


def mlp_all_formats(*, seed: int = 0) -> nn.Module:
    """fc1 1:8, fc2 2:4 (semi24), fc3 block 16, fc4 unstructured 90%, head dense."""
    torch.manual_seed(seed)
    model = create_model("mlp", in_shape=(64,), num_classes=10, hidden=(128, 128, 128, 128))
    apply_masks(model, {
        "fc1": nm_mask(model.fc1.weight, 1, 8),
        "fc2": nm_mask(model.fc2.weight, 2, 4),
        "fc3": block_mask(model.fc3.weight, 0.75, block=(16, 16)),
        "fc4": unstructured_mask(model.fc4.weight, 0.9),
    })
    return model.eval()


def assert_close(y: torch.Tensor, ref: torch.Tensor, rtol: float = 1e-5) -> None:
    """fp32 tolerance at the output's scale: max |y - ref| <= rtol * max |ref|."""
    assert y.shape == ref.shape
    error = float((y.float() - ref.float()).abs().max())
    assert error <= rtol * float(ref.abs().max()), f"relative error {error / float(ref.abs().max()):.2e}"
