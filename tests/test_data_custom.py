"""data=custom: a user's function returning torch Datasets, read under a memory cap."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

from sparsearch.config import ConfigError
from sparsearch.data import load_custom_splits

from .conftest import run_cli

USER_DATA = '''
import torch
from torch.utils.data import Dataset, TensorDataset


def _pairs(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 6, generator=g)
    return TensorDataset(x, (x[:, 0, 0] > 0).long() + 2 * (x[:, 1, 0] > 0).long())


def two():
    return _pairs(200, 0), _pairs(50, 1)


def three():
    return _pairs(200, 0), _pairs(40, 2), _pairs(50, 1)


def one():
    return _pairs(300, 3)


class Broken(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        if i > 3:
            raise OSError(f"cannot open sample {i}.bin")
        return torch.zeros(3), 0


def broken():
    return Broken(), Broken()


def not_datasets():
    return [1, 2, 3]
'''


@pytest.fixture
def user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "code"
    root.mkdir()
    (root / "userdata.py").write_text(textwrap.dedent(USER_DATA))
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root),
                                                      os.environ.get("PYTHONPATH", "")]))
    return root


SPLIT = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0, "max_memory_mb": 64}


def test_train_and_test_keep_test_and_carve_val_out_of_train(user_data: Path) -> None:
    from userdata import two

    splits = load_custom_splits("userdata:two", **SPLIT)
    train, test = two()
    assert torch.equal(splits.test[0], test.tensors[0])
    assert len(splits.train[1]) == 160 and len(splits.val[1]) == 40
    assert splits.in_shape == (2, 6) and splits.num_classes == 4
    pooled = torch.cat([splits.train[0], splits.val[0]])
    assert sorted(pooled.sum((1, 2)).tolist()) == sorted(train.tensors[0].sum((1, 2)).tolist())


def test_three_datasets_are_used_as_given_and_one_is_split(user_data: Path) -> None:
    from userdata import three

    given = load_custom_splits("userdata:three", **SPLIT)
    assert torch.equal(given.val[0], three()[1].tensors[0])
    pooled = load_custom_splits("userdata:one", **SPLIT)
    assert [len(p[1]) for p in (pooled.train, pooled.val, pooled.test)] == [180, 60, 60]


@pytest.mark.parametrize(("target", "cap", "message"), [
    ("userdata:broken", 64, "cannot read its samples as (input tensor, int label) pairs "
                            "(OSError: cannot open sample 4.bin)"),
    ("userdata:not_datasets", 64, "must return torch Datasets"),
    ("userdata:nothing", 64, "data.target 'userdata:nothing': 'userdata' has no 'nothing'"),
    ("nomodule:fn", 64, "data.target 'nomodule:fn': cannot import 'nomodule'"),
])
def test_bad_data_is_a_config_error(user_data: Path, target: str, cap: float,
                                    message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        load_custom_splits(target, **{**SPLIT, "max_memory_mb": cap})
    assert message in str(err.value)


def test_unreadable_data_is_one_line_exit_2(user_data: Path, tmp_path: Path) -> None:
    result = run_cli([f"hydra.run.dir={tmp_path / 'run'}",
                      f"tracking.uri=sqlite:///{tmp_path / 'ml.db'}", "data=custom",
                      "data.target=userdata:broken", "space=generic"], cwd=tmp_path)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data.target 'userdata:broken'")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("target", ["userdata:one", "userdata:two", "userdata:three"])
def test_data_above_the_cap_streams_and_trains_like_in_memory(user_data: Path,
                                                              target: str) -> None:
    from sparsearch.data import StreamedInputs, iterate_batches
    from sparsearch.evaluate import EvalContext, accuracy_on_test, evaluate
    from sparsearch.spec import SubnetSpec

    loaded = load_custom_splits(target, **SPLIT)
    # 250-300 samples of 2 x 6 float32 = 12-14 KB: above a 0.01 MB cap
    streamed = load_custom_splits(target, **{**SPLIT, "max_memory_mb": 0.01})
    assert (streamed.in_shape, streamed.num_classes) == (loaded.in_shape, loaded.num_classes)
    for name in ("train", "val", "test"):
        inputs, targets = getattr(streamed, name)
        assert isinstance(inputs, StreamedInputs)
        assert torch.equal(targets, getattr(loaded, name)[1])
        assert torch.equal(inputs[:3], getattr(loaded, name)[0][:3])
    batches = [list(iterate_batches(s.train, 32, generator=torch.Generator().manual_seed(4)))
               for s in (loaded, streamed)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(*batches, strict=True))
    spec = SubnetSpec(pattern="unstructured", sparsity=0.5, recipe="one_shot")
    results = []
    for splits in (loaded, streamed):
        ctx = EvalContext(data=splits, model={"kind": "mlp", "hidden": [16], "dropout": 0.0},
                          train={"epochs": 1, "lr": 1e-2, "weight_decay": 0.0,
                                 "optimizer": "adam", "batch_size": 32})
        result, model = evaluate(spec, ctx)
        assert result.status == "complete", result.reason
        results.append((result.metrics["accuracy"], result.metrics["loss"],
                        accuracy_on_test(model, splits)))
    assert results[0] == pytest.approx(results[1])
