"""Channel sparsity exported as smaller dense layers: exact outputs, unsafe graphs keep shape."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from torch import nn

from sparsearch.export import load, read_manifest, save
from sparsearch.export._channels import prune_channels
from sparsearch.models import create_model
from sparsearch.sparsity import apply_masks, channel_mask, remove_masks

from .conftest import FAST, assert_close


def channel_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("mlp", in_shape=(64,), num_classes=10, hidden=(96, 80))
    apply_masks(model, {"fc1": channel_mask(model.fc1.weight, 0.5),
                        "fc2": channel_mask(model.fc2.weight, 0.5)})
    return model.eval()


class ConvNet(nn.Module):
    """conv1 -> BN -> ReLU -> conv2 (padding as given) -> ReLU -> conv3 [+ residual]."""

    def __init__(self, *, padding: int, residual: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=padding)
        self.conv3 = nn.Conv2d(16, 16, 1)
        self.residual = residual

    def forward(self, x):
        y = torch.relu(self.bn(self.conv1(x)))
        y = self.conv3(torch.relu(self.conv2(y)))
        return y + y.mean() if self.residual else y


def masked_convnet(*, padding: int, residual: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = ConvNet(padding=padding, residual=residual)
    with torch.no_grad():  # running stats that make the dead channels' constant non-zero
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        model.bn.bias.uniform_(0.5, 1)
        model.conv2.weight[::2] = 0.0  # conv2: half its output channels pruned
        model.conv1.weight[1::4] = 0.0
    return model.eval()


def test_mlp_channels_become_smaller_layers_with_equal_outputs(tmp_path):
    model = channel_mlp()
    path = save(model, None, tmp_path / "export", **FAST)
    manifest = read_manifest(path)
    channels = manifest["channels"]
    assert channels["pruned"]["fc1"] == {"channels": [96, 48], "consumer": "fc2"}
    assert channels["pruned"]["fc2"] == {"channels": [80, 40], "consumer": "head"}
    assert manifest["layers"]["fc2"]["shape"] == [40, 48]
    assert manifest["layers"]["fc2"]["format"] == "dense"  # no zeros left to store
    assert manifest["sparsearch_export"] == 2  # older readers refuse it instead of misreading
    check = manifest["dispatch"]["cpu"]["model_check"]
    assert sorted(check, key=int) == ["1", "32", "256"]
    assert all(entry["kept"] in ("export", "dense") for entry in check.values())
    loaded = load(path)
    assert loaded.fc1.out_features == 48 and loaded.head.in_features == 40
    x = torch.randn(7, 64)
    with torch.no_grad():
        assert_close(loaded(x), model(x))
    # A fresh process rebuilds the smaller model from the manifest alone.
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        torch.save(model(x), tmp_path / "ref.pt")
    code = ("import sys, torch; from sparsearch.export import load; m = load(sys.argv[1]); "
            "x = torch.load(sys.argv[2]); ref = torch.load(sys.argv[3]); "
            "err = float((m(x) - ref).abs().max() / ref.abs().max()); "
            "print(m.fc2.in_features, err); assert err < 1e-5")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.pt"),
                           str(tmp_path / "ref.pt")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "48"


def test_conv_bn_conv_chain_folds_the_dead_channels_constant():
    model = masked_convnet(padding=0)
    smaller, report = prune_channels(model, torch.randn(2, 3, 12, 12))
    assert report["pruned"]["conv1"] == {"channels": [16, 12], "consumer": "conv2"}
    assert report["pruned"]["conv2"] == {"channels": [16, 8], "consumer": "conv3"}
    assert smaller.bn.num_features == 12 and smaller.conv3.in_channels == 8
    assert report["shapes"]["bn"] == {"num_features": 12}
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        assert_close(smaller(x), model(x))


def test_a_constant_into_a_zero_padded_conv_keeps_the_shape():
    model = masked_convnet(padding=1)
    smaller, report = prune_channels(model, torch.randn(2, 3, 12, 12))
    assert "conv1" not in report["pruned"]
    assert report["kept_full"]["conv1"] == ("its channels carry a non-zero constant into a "
                                            "zero-padded conv")
    assert report["pruned"]["conv2"]["channels"] == [16, 8]  # its consumer is 1x1, unpadded
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert_close(smaller(x), model(x))


def test_residual_outputs_keep_their_shape_and_say_why():
    model = masked_convnet(padding=0, residual=True)
    with torch.no_grad():
        model.conv3.weight[:4] = 0.0
    smaller, report = prune_channels(model, torch.randn(2, 3, 12, 12))
    assert report["kept_full"]["conv3"].startswith("output used by 2 nodes")
    assert smaller.conv3.out_channels == 16
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert_close(smaller(x), model(x))


def test_an_untraceable_model_keeps_every_shape():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = -x
            return self.fc2(self.fc1(x))

    model = Branchy().eval()
    with torch.no_grad():
        model.fc1.weight[:4] = 0.0
    same, report = prune_channels(model, torch.randn(2, 8))
    assert same is model and report["skipped"].startswith("the graph cannot be traced")
    assert json.dumps(report)  # JSON-able for the manifest


def test_half_precision_models_are_pruned_too():
    model = channel_mlp()
    remove_masks(model)
    smaller, report = prune_channels(model.to(torch.bfloat16), torch.randn(4, 64,
                                                                           dtype=torch.bfloat16))
    assert "skipped" not in report and report["pruned"]["fc1"]["channels"] == [96, 48]
    assert smaller.fc1.weight.dtype == torch.bfloat16


def test_a_module_called_at_two_places_keeps_its_shape():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)

        def forward(self, x):
            return self.fc3(self.fc2(self.fc1(self.fc2(torch.relu(x)))))

    model = Shared().eval()
    with torch.no_grad():
        model.fc2.weight[:3] = 0.0  # fc2 is called twice
        model.fc1.weight[:2] = 0.0  # fc1 feeds the shared fc2
    x = torch.randn(5, 8)
    smaller, report = prune_channels(model, x)
    assert report["kept_full"] == {"fc2": "called at 2 places",
                                   "fc1": "feeds fc2, which is called at several places"}
    with torch.no_grad():
        assert_close(smaller(x), model(x))
