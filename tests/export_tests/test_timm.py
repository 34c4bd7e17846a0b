"""A timm ViT (img_size 32) built by sparsearch, exported at 1:8 and rebuilt from its manifest."""

from __future__ import annotations

import os

import torch

from sparsearch.export import load, read_manifest, save
from sparsearch.models import create_model
from sparsearch.sparsity import apply_masks, nm_mask, prunable_layers

from .conftest import assert_close

os.environ["HF_HUB_OFFLINE"] = "1"


def test_vit_tiny_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_model("timm", in_shape=(3, 32, 32), num_classes=10,
                         name="vit_tiny_patch16_224", img_size=32)
    apply_masks(model, {name: nm_mask(layer.weight, 1, 8)
                        for name, layer in prunable_layers(model).items()
                        if name.startswith("blocks.0.")})
    model.eval()
    path = save(model, None, tmp_path / "vit", batch_sizes=(1, 4), min_run_time_s=0.001,
                rounds=1)
    manifest = read_manifest(path)
    assert manifest["build"]["options"] == {"name": "vit_tiny_patch16_224", "img_size": 32}
    assert manifest["layers"]["blocks.0.attn.qkv"]["format"] == "nm"
    assert manifest["layers"]["blocks.0.attn.qkv"]["sample_shape"] == [5, 192]
    assert manifest["layers"]["blocks.1.mlp.fc1"]["format"] == "dense"
    loaded = load(path)
    with torch.no_grad():
        for batch in (1, 3):
            x = torch.randn(batch, 3, 32, 32)
            assert_close(loaded(x), model(x))
