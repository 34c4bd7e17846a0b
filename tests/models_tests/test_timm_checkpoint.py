"""model=timm with a local pretrained file (model.checkpoint): timm loads it with its own
pretrained mechanism, so a file with another classifier head (1000 classes) starts a
10-class model whose body holds the file's weights and whose head is new."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch

from sparsearch.data import load_digits_splits
from sparsearch.evaluate import EvalContext, build_model

from ..conftest import run_cli


def imagenet_file(path: Path, *, name: str = "test_resnet") -> dict[str, torch.Tensor]:
    """A 1000-class state dict of ``name``, saved to ``path`` as an ImageNet file would be."""
    torch.manual_seed(7)
    state = timm.create_model(name, pretrained=False, num_classes=1000).state_dict()
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_1000_class_file_starts_a_10_class_model(tmp_path: Path, suffix: str) -> None:
    state = imagenet_file(tmp_path / f"w{suffix}")
    data = load_digits_splits()
    ctx = EvalContext(data=data, model={"kind": "timm", "name": "test_resnet",
                                        "checkpoint": str(tmp_path / f"w{suffix}")},
                      train={"epochs": 1, "lr": 1e-2, "weight_decay": 0.0,
                             "optimizer": "adam", "batch_size": 64})
    model = build_model(ctx)
    own = model.state_dict()
    assert model.get_classifier().out_features == 10
    body = [k for k in state if not k.startswith("fc.") and k != "conv1.0.weight"]
    assert body and all(torch.equal(own[k], state[k]) for k in body)
    # digits have one channel: timm adapts the RGB stem by summing over its input channels
    assert torch.allclose(own["conv1.0.weight"], state["conv1.0.weight"].sum(1, keepdim=True))
    assert tuple(own["fc.weight"].shape) == (10, state["fc.weight"].shape[1])
    # an export rebuilds the model without the file: its weights travel with the export
    assert "checkpoint" not in model.sparsearch_build["options"]
    assert model(data.val[0][:2]).shape == (2, 10)


def test_a_file_of_another_model_is_one_line_exit_2(tmp_path: Path) -> None:
    imagenet_file(tmp_path / "other.safetensors", name="test_efficientnet")
    result = run_cli([f"hydra.run.dir={tmp_path / 'run'}",
                      f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "model=timm",
                      "model.name=test_resnet", "space=generic",
                      f"model.checkpoint={tmp_path / 'other.safetensors'}"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: model.checkpoint ")
    assert "does not fit timm model 'test_resnet': size mismatch for" in lines[0]
