"""A user's own model from their own package, started from their own checkpoint: searched,
recorded, exported, and reloaded in a fresh process; bad targets and checkpoints exit 2.

The package is written by the test into a temporary folder put on PYTHONPATH, as a user's
code would be; the data is scikit-learn's digits, seen by the model as an (8, 8) signal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import torch

from sparsearch.data import iterate_batches, load_digits_splits
from sparsearch.evaluate import EvalContext, build_model
from sparsearch.models import create_model
from sparsearch.models._custom import load_checkpoint
from sparsearch.sparsity.plan import SparsityPlan
from sparsearch.sparsity.recipes import RecipeContext, create_recipe
from sparsearch.spec import SubnetSpec
from sparsearch.train import TrainSettings, accuracy_and_loss, make_optimizer, train_epoch

from ..conftest import mlflow_uri, run_cli

NETS = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width, num_classes):
        super().__init__()
        self.stem = nn.Conv1d(8, width, 3, padding=1)
        self.body = nn.Linear(width * 8, width)
        self.out = nn.Linear(width, num_classes)

    def forward(self, x):
        h = torch.relu(self.stem(x.flatten(1, 2))).flatten(1)
        return self.out(torch.relu(self.body(h)))


def build(*, width=16, num_classes=10):
    return Net(width, num_classes)
'''


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "user_code"
    (root / "mynets").mkdir(parents=True)
    (root / "mynets" / "__init__.py").write_text("")
    (root / "mynets" / "nets.py").write_text(textwrap.dedent(NETS))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH",
                                                                                 "")]))
    return root


def trained_checkpoint(path: Path, *, epochs: int = 8) -> torch.nn.Module:
    digits = load_digits_splits()
    torch.manual_seed(0)
    model = create_model("custom", in_shape=digits.in_shape, num_classes=10,
                         target="mynets.nets:build", options={"width": 24})
    optimizer = make_optimizer(model.parameters(), TrainSettings(lr=1e-2))
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        train_epoch(model, iterate_batches(digits.train, 64, generator=generator), optimizer)
    safetensors.torch.save_file(model.state_dict(), str(path))
    return model


def test_a_custom_model_is_built_with_its_options_and_loads_a_checkpoint(
        user_package: Path, tmp_path: Path) -> None:
    trained = trained_checkpoint(tmp_path / "ckpt.safetensors", epochs=2)
    digits = load_digits_splits()
    ctx = EvalContext(data=digits, train={},
                      model={"kind": "custom", "target": "mynets.nets:build",
                             "options": {"width": 24},
                             "checkpoint": str(tmp_path / "ckpt.safetensors")})
    model = build_model(ctx, seed=5)
    assert model.body.in_features == 24 * 8  # the option reached the factory
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.sparsearch_build["options"] == {"target": "mynets.nets:build",
                                                  "options": {"width": 24}}
    # a weights-only torch state dict, wrapped as training scripts often save it
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "ckpt.pt")
    other = create_model("custom", in_shape=digits.in_shape, num_classes=10,
                         target="mynets.nets:build", options={"width": 24})
    load_checkpoint(other, tmp_path / "ckpt.pt")
    assert torch.equal(other.stem.weight, trained.stem.weight)


@pytest.mark.parametrize(("recipe", "knob"), [("one_shot", "prune_at"), ("gradual", "start")])
def test_recipes_prune_a_checkpoint_at_once(recipe: str, knob: str) -> None:
    digits = load_digits_splits()
    zeros_at_epoch: dict[bool, list[int]] = {}
    for pretrained in (False, True):
        torch.manual_seed(0)
        model = create_model("mlp", in_shape=digits.in_shape, num_classes=10, hidden=(32,))
        spec = SubnetSpec(pattern="unstructured", sparsity=0.8, recipe=recipe)
        generator = torch.Generator().manual_seed(0)
        seen: list[int] = []

        def batches(model=model, seen=seen, generator=generator):
            # zeros the forward pass sees as each epoch starts
            seen.append(int((model.fc1.weight == 0).sum()))
            return iterate_batches(digits.train, 128, generator=generator)

        ctx = RecipeContext(model=model, spec=spec, plan=SparsityPlan(spec, model),
                            settings=TrainSettings(epochs=4, batch_size=128), log_metric=
                            lambda *_: None, train_batches=batches, pretrained=pretrained)
        create_recipe(recipe, **{knob: 0.5}).run(ctx)
        zeros_at_epoch[pretrained] = seen
    # gradual counts its steps in one extra pass over the batches before training
    first_epoch = 1 if recipe == "gradual" else 0
    assert zeros_at_epoch[False][first_epoch + 1] == 0  # from scratch: dense for a while
    assert zeros_at_epoch[True][first_epoch + 1] > 0  # from a checkpoint: pruned at once


@pytest.mark.slow
def test_own_model_and_checkpoint_searched_exported_and_reloaded_elsewhere(
        user_package: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt.safetensors"
    trained = trained_checkpoint(ckpt)
    digits = load_digits_splits()
    loaded_acc, _ = accuracy_and_loss(trained, iterate_batches(digits.val, 1024))
    run = tmp_path / "run"
    result = run_cli([f"hydra.run.dir={run}", f"tracking.uri={mlflow_uri(tmp_path / 'ml.db')}",
                      "model=custom", "model.target=mynets.nets:build", "+model.options.width=24",
                      f"model.checkpoint={ckpt}", "space=generic", "train.epochs=2",
                      "search.n_trials=3", "search.strategy=random", "export.batch_sizes=[1]",
                      "name=own_model"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    dense = json.loads((run / "dense.json").read_text())
    assert dense["checkpoint_accuracy"] == pytest.approx(loaded_acc)
    assert "checkpoint" in result.stdout and "as loaded" in result.stdout
    pareto = json.loads((run / "pareto.json").read_text())
    rank0 = next(p for p in pareto["front"] if p["rank"] == 0)
    export = run / "exports" / "rank-0"
    manifest = json.loads((export / "manifest.json").read_text())
    assert manifest["build"]["kind"] == "custom"
    assert manifest["build"]["options"] == {"target": "mynets.nets:build",
                                            "options": {"width": 24}}
    # A fresh process, with only the user's package on its path, rebuilds and runs it.
    script = textwrap.dedent(f"""
        from sparsearch.data import iterate_batches, load_digits_splits
        from sparsearch.export import load
        from sparsearch.train import accuracy_and_loss
        model = load({str(export)!r})
        print(accuracy_and_loss(model, iterate_batches(load_digits_splits().test, 1024))[0])
    """)
    fresh = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300, env=os.environ.copy())
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert float(fresh.stdout.strip()) == pytest.approx(rank0["metrics"]["test_accuracy"])


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.target=nowhere.nets:build"], "model.target 'nowhere.nets:build': cannot import"),
    # Hydra's spelling is the same field
    (["+model._target_=nowhere.nets.build"], "model.target 'nowhere.nets.build': cannot import"),
    (["+model._target_=mynets.nets.build", "model.target=mynets.nets:other"],
     "model._target_ 'mynets.nets.build' and model.target 'mynets.nets:other' name different "
     "factories"),
    (["model.target=mynets.nets:nothing"], "has no 'nothing'"),
    (["model.target=mynets.nets:build", "model.checkpoint=missing.pt"],
     "model.checkpoint 'missing.pt' does not exist"),
    (["model.target=mynets.nets:build", "+model.options.width=24",
      "model.checkpoint=wrong.safetensors"],
     "wrong.safetensors': stem.weight has shape (16, 8, 3), the model's has (24, 8, 3)"),
    (["model.target=mynets.nets:build", "+model.options.width=24", "data=mnist1d",
      "data.num_samples=200"],
     "model mynets.nets:build cannot take the input shape (1, 40) of data.name=mnist1d"),
])
def test_bad_targets_and_checkpoints_are_one_line_exit_2(user_package: Path, tmp_path: Path,
                                                         overrides: list[str],
                                                         message: str) -> None:
    # saved at the factory's default width 16
    safetensors.torch.save_file(create_model("custom", in_shape=(1, 8, 8), num_classes=10,
                                             target="mynets.nets:build").state_dict(),
                                str(tmp_path / "wrong.safetensors"))
    result = run_cli([f"hydra.run.dir={tmp_path / 'run'}",
                      f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "model=custom",
                      "space=generic", *overrides], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "ml.db").exists()


def test_hydras_target_spelling_searches_the_same_model(user_package: Path,
                                                       tmp_path: Path) -> None:
    # the dotted form Hydra uses, and model.target naming the same factory with a colon
    result = run_cli([f"hydra.run.dir={tmp_path / 'run'}",
                      f"tracking.uri={mlflow_uri(tmp_path / 'ml.db')}", "model=custom",
                      "+model._target_=mynets.nets.build", "model.target=mynets.nets:build",
                      "+model.options.width=8", "space=generic", "train.epochs=1",
                      "search.n_trials=1", "export.enabled=false"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Pareto-optimal subnets" in result.stdout
