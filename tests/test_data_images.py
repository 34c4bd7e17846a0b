"""data=cifar10 and data=imagefolder: tiny files in the real formats, read back."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparsearch.config import ConfigError, DataConfig, SparsearchConfig
from sparsearch.data import load_cifar10_splits, load_imagefolder_splits
from sparsearch.search.setup import load_data

SPLIT = {"val_fraction": 0.2, "test_fraction": 0.2, "seed": 0}


def write_cifar(folder: Path, per_batch: int = 20) -> np.ndarray:
    """CIFAR-10's python layout: pickled dicts with bytes keys, rows of 3072 uint8 (RGB planes)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    first = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.randint(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        first = data if first is None else first
        with open(folder / name, "wb") as handle:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * per_batch}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, handle)
    return first


def test_cifar10_batches_load_and_split(tmp_path):
    first = write_cifar(tmp_path / "cifar-10-batches-py")
    splits = load_cifar10_splits(tmp_path, image_size=None, limit=None, **SPLIT)
    assert splits.in_shape == (3, 32, 32) and splits.num_classes == 10
    assert sum(len(p[1]) for p in (splits.train, splits.val, splits.test)) == 120
    # the official split: test_batch is the test split, val 20% of the training batches
    assert len(splits.test[1]) == 20 and len(splits.val[1]) == 20
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        test_batch = pickle.load(handle, encoding="bytes")
    expected = np.asarray(test_batch[b"data"]).reshape(-1, 3, 32, 32) / 255.0
    assert np.allclose(splits.test[0].numpy(), expected, atol=1e-6)
    x = splits.train[0]
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # channel planes: the first row's first 1024 bytes are the red channel of image 0
    red = first[0, :1024].reshape(32, 32) / 255.0
    matches = [np.allclose(img[0].numpy(), red, atol=1e-6)
               for pair in (splits.train, splits.val, splits.test) for img in pair[0]]
    assert sum(matches) == 1
    again = load_cifar10_splits(tmp_path / "cifar-10-batches-py", image_size=None, limit=None,
                                **SPLIT)
    assert np.array_equal(again.train[1].numpy(), splits.train[1].numpy())


def test_cifar10_limit_and_resize(tmp_path):
    write_cifar(tmp_path)
    splits = load_cifar10_splits(tmp_path, image_size=16, limit=60, **SPLIT)
    assert splits.in_shape == (3, 16, 16)
    assert sum(len(p[1]) for p in (splits.train, splits.val, splits.test)) == 60
    assert len(splits.test[1]) == 10  # the published 5:1 train:test proportion


def test_cifar10_missing_or_bad_batches_are_config_errors(tmp_path):
    write_cifar(tmp_path / "c")
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match="no CIFAR-10 python batches"):
        load_cifar10_splits(tmp_path / "c", image_size=None, limit=None, **SPLIT)
    (tmp_path / "c" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="data_batch_3 is not a CIFAR-10 python batch"):
        load_cifar10_splits(tmp_path / "c", image_size=None, limit=None, **SPLIT)


def write_folder(root: Path, *, sizes=((10, 12),), per_class: int = 6) -> None:
    rng = np.random.RandomState(1)
    for c, name in enumerate(["cat", "dog", "emu"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            pixels = rng.randint(0, 256, size=(h, w, 3), dtype=np.uint8)
            pixels[..., 0] = 80 * c  # class c has red level 80 * c
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")


def test_imagefolder_reads_classes_in_sorted_order(tmp_path):
    write_folder(tmp_path)
    splits = load_imagefolder_splits(tmp_path, image_size=None, limit=None, **SPLIT)
    assert splits.in_shape == (3, 10, 12) and splits.num_classes == 3
    for images, labels in (splits.train, splits.val, splits.test):
        for img, label in zip(images, labels):
            assert float(img[0].mean()) == pytest.approx(80 * int(label) / 255.0, abs=1e-6)
    resized = load_imagefolder_splits(tmp_path, image_size=8, limit=None, **SPLIT)
    assert resized.in_shape == (3, 8, 8)


def test_imagefolder_mixed_sizes_need_image_size(tmp_path):
    write_folder(tmp_path, sizes=((10, 12), (9, 9)))
    with pytest.raises(ConfigError, match="images have different sizes .*set data.image_size"):
        load_imagefolder_splits(tmp_path, image_size=None, limit=None, **SPLIT)
    assert load_imagefolder_splits(tmp_path, image_size=6, limit=None,
                                   **SPLIT).in_shape == (3, 6, 6)


def test_load_data_dispatches_and_names_a_missing_root(tmp_path):
    write_folder(tmp_path / "imgs")
    cfg = SparsearchConfig(data=DataConfig(name="imagefolder", root=str(tmp_path / "imgs"),
                                           image_size=8))
    assert load_data(cfg).name == "imagefolder"
    missing = SparsearchConfig(data=DataConfig(name="cifar10", root=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="does not exist"):
        load_data(missing)
    with pytest.raises(ConfigError, match="one folder of images per class"):
        load_imagefolder_splits(tmp_path / "imgs" / "cat", image_size=None, limit=None, **SPLIT)
