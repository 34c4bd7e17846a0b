"""MNIST-1D: generated offline with the paper's arguments, its own test split kept."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sparsearch.data import load_mnist1d_splits
from tests.conftest import mlflow_uri

from .conftest import run_cli


def test_the_published_split_is_kept_and_val_comes_out_of_train() -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 500
    raw = make_dataset(args)
    splits = load_mnist1d_splits(num_samples=500, val_fraction=0.25, seed=3)
    assert splits.in_shape == (1, 40) and splits.num_classes == 10 and splits.name == "mnist1d"
    # test: the package's own last 20%, in its order
    assert torch.equal(splits.test[0][:, 0], torch.as_tensor(raw["x_test"], dtype=torch.float32))
    assert torch.equal(splits.test[1], torch.as_tensor(raw["y_test"]))
    # train + val: exactly the package's training samples, val a stratified quarter
    assert len(splits.train[1]) + len(splits.val[1]) == len(raw["y"]) == 400
    assert len(splits.val[1]) == 100
    per_class = np.bincount(raw["y"], minlength=10)
    assert (np.abs(splits.val[1].bincount(minlength=10).numpy() - 0.25 * per_class) <= 1).all()
    pooled = torch.cat([splits.train[0], splits.val[0]])[:, 0]
    assert sorted(map(tuple, pooled.tolist())) == sorted(map(tuple, raw["x"].astype(np.float32)
                                                             .tolist()))


def test_same_seed_same_split_and_no_global_seeding() -> None:
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.rand(), random.random())
    np.random.seed(123)
    random.seed(123)
    a = load_mnist1d_splits(num_samples=300, seed=1)
    # mnist1d seeds numpy's and random's global generators; the loader puts them back
    assert (np.random.rand(), random.random()) == expected
    b = load_mnist1d_splits(num_samples=300, seed=1)
    c = load_mnist1d_splits(num_samples=300, seed=2)
    assert torch.equal(a.val[0], b.val[0])
    assert not torch.equal(a.val[0], c.val[0])


@pytest.mark.slow
def test_the_mnist1d_preset_runs_a_conv1d_search(tmp_path) -> None:
    result = run_cli(["+experiment=mnist1d_quickstart", f"hydra.run.dir={tmp_path / 'run'}",
                      f"tracking.uri={mlflow_uri(tmp_path / 'mlflow.db')}", "data.num_samples=600",
                      "train.epochs=2", "search.n_trials=3", "export.batch_sizes=[1]"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mnist1d_quickstart (tpe, 3 complete, 0 failed)" in result.stdout
    assert (tmp_path / "run" / "exports").is_dir()


def test_too_few_samples_is_one_line_exit_2(tmp_path) -> None:
    result = run_cli(["+experiment=mnist1d_quickstart", f"hydra.run.dir={tmp_path / 'run'}",
                      f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "data.num_samples=20"],
                     cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: data.num_samples must be >= 100 or null, got 20"
    assert not (tmp_path / "run").exists()
