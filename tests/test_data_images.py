"""data=cifar10 and data=imagefolder: tiny files in the real formats, read back."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
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


def test_cifar10_above_the_cap_streams_and_trains_like_in_memory(tmp_path):
    from sparsearch.data import StreamedInputs, iterate_batches
    from sparsearch.evaluate import EvalContext, accuracy_on_test, evaluate
    from sparsearch.spec import SubnetSpec

    write_cifar(tmp_path, per_batch=24)
    loaded = load_cifar10_splits(tmp_path, image_size=8, limit=None, **SPLIT)
    # 144 images of 3 x 8 x 8 float32 = 110 KB: above a 0.05 MB cap
    streamed = load_cifar10_splits(tmp_path, image_size=8, limit=None, max_memory_mb=0.05,
                                   **SPLIT)
    assert (streamed.in_shape, streamed.num_classes) == (loaded.in_shape, loaded.num_classes)
    for name in ("train", "val", "test"):
        inputs, targets = getattr(streamed, name)
        assert isinstance(inputs, StreamedInputs)
        assert torch.equal(targets, getattr(loaded, name)[1])
        assert torch.allclose(inputs[:4], getattr(loaded, name)[0][:4], atol=1e-6)
    first = next(iterate_batches(streamed.train, 16, generator=torch.Generator().manual_seed(4)))
    in_memory = next(iterate_batches(loaded.train, 16,
                                     generator=torch.Generator().manual_seed(4)))
    assert torch.allclose(first[0], in_memory[0], atol=1e-6)
    assert torch.equal(first[1], in_memory[1])
    spec = SubnetSpec(pattern="unstructured", sparsity=0.5, recipe="one_shot")
    results = []
    for splits in (loaded, streamed):
        ctx = EvalContext(data=splits, model={"kind": "cnn", "channels": [4, 8, 8]},
                          train={"epochs": 1, "lr": 1e-2, "weight_decay": 0.0,
                                 "optimizer": "adam", "batch_size": 16})
        result, model = evaluate(spec, ctx)
        assert result.status == "complete", result.reason
        results.append((result.metrics["accuracy"], result.metrics["loss"],
                        accuracy_on_test(model, splits)))
    assert results[0] == pytest.approx(results[1], abs=1e-4)


def test_cifar10_augment_streams_train_through_timms_transform(tmp_path):
    from sparsearch.data import StreamedInputs

    write_cifar(tmp_path, per_batch=20)
    plain = load_cifar10_splits(tmp_path, image_size=None, limit=None, **SPLIT)
    augmented = load_cifar10_splits(tmp_path, image_size=None, limit=None, augment=True,
                                    **SPLIT)
    inputs, targets = augmented.train
    assert isinstance(inputs, StreamedInputs) and torch.equal(targets, plain.train[1])
    assert torch.equal(augmented.val[0], plain.val[0])
    assert torch.equal(augmented.test[0], plain.test[0])
    torch.manual_seed(0)
    views = [inputs.dataset[0][0] for _ in range(3)]
    assert all(v.shape == (3, 32, 32) and 0.0 <= float(v.min()) and float(v.max()) <= 1.0
               for v in views)
    assert not torch.equal(views[0], views[1])  # a fresh random view on every read


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


def test_a_folder_above_the_memory_cap_streams_and_trains_like_in_memory(tmp_path):
    from sparsearch.data import StreamedInputs, iterate_batches
    from sparsearch.evaluate import EvalContext, accuracy_on_test, evaluate
    from sparsearch.spec import SubnetSpec

    write_folder(tmp_path, per_class=20)
    loaded = load_imagefolder_splits(tmp_path, image_size=8, limit=None, **SPLIT)
    # 60 images of 3 x 8 x 8 float32 = 46 KB: above a 0.01 MB cap
    streamed = load_imagefolder_splits(tmp_path, image_size=8, limit=None, max_memory_mb=0.01,
                                       **SPLIT)
    for name in ("train", "val", "test"):
        inputs, targets = getattr(streamed, name)
        assert isinstance(inputs, StreamedInputs)
        assert torch.equal(targets, getattr(loaded, name)[1])
        assert torch.equal(inputs[:3], getattr(loaded, name)[0][:3])
    generator = torch.Generator().manual_seed(4)
    first = next(iterate_batches(streamed.train, 16, generator=generator))
    in_memory = next(iterate_batches(loaded.train, 16,
                                     generator=torch.Generator().manual_seed(4)))
    assert torch.equal(first[0], in_memory[0]) and torch.equal(first[1], in_memory[1])
    # one trial on each path: the same seed trains the same subnet
    spec = SubnetSpec(pattern="unstructured", sparsity=0.5, recipe="one_shot")
    results = []
    for splits in (loaded, streamed):
        ctx = EvalContext(data=splits, model={"kind": "cnn", "channels": [4, 8, 8]},
                          train={"epochs": 2, "lr": 1e-2, "weight_decay": 0.0,
                                 "optimizer": "adam", "batch_size": 16})
        result, model = evaluate(spec, ctx)
        assert result.status == "complete", result.reason
        results.append((result.metrics["accuracy"], result.metrics["loss"],
                        accuracy_on_test(model, splits)))
    assert results[0] == pytest.approx(results[1])


def test_streamed_batches_read_by_worker_processes_are_the_same(tmp_path):
    from sparsearch.data import iterate_batches

    write_folder(tmp_path, per_class=8)
    one = load_imagefolder_splits(tmp_path, image_size=8, limit=None, max_memory_mb=0.001,
                                  **SPLIT)
    two = load_imagefolder_splits(tmp_path, image_size=8, limit=None, max_memory_mb=0.001,
                                  workers=2, **SPLIT)
    a = list(iterate_batches(one.train, 5, generator=torch.Generator().manual_seed(0)))
    b = list(iterate_batches(two.train, 5, generator=torch.Generator().manual_seed(0)))
    assert len(a) == len(b) == 3
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_augment_streams_train_through_timms_transform_and_keeps_val_test_plain(tmp_path):
    from sparsearch.data import StreamedInputs
    from sparsearch.evaluate import EvalContext, evaluate
    from sparsearch.spec import SubnetSpec

    write_folder(tmp_path, per_class=10)
    plain = load_imagefolder_splits(tmp_path, image_size=8, limit=None, **SPLIT)
    augmented = load_imagefolder_splits(tmp_path, image_size=8, limit=None, augment=True,
                                        **SPLIT)
    inputs, targets = augmented.train
    assert isinstance(inputs, StreamedInputs) and torch.equal(targets, plain.train[1])
    assert torch.equal(augmented.val[0], plain.val[0])
    assert torch.equal(augmented.test[0], plain.test[0])
    torch.manual_seed(0)
    views = [inputs.dataset[0][0] for _ in range(3)]
    assert all(v.shape == (3, 8, 8) and 0.0 <= float(v.min()) and float(v.max()) <= 1.0
               for v in views)
    assert not torch.equal(views[0], views[1])  # a fresh random view on every read
    ctx = EvalContext(data=augmented, model={"kind": "cnn", "channels": [4, 8, 8]},
                      train={"epochs": 1, "lr": 1e-2, "weight_decay": 0.0,
                             "optimizer": "adam", "batch_size": 8})
    result, _ = evaluate(SubnetSpec(pattern="unstructured", sparsity=0.5), ctx)
    assert result.status == "complete", result.reason


def test_augment_needs_an_image_size(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(ConfigError, match="data.augment is true, so data.image_size must be set"):
        load_imagefolder_splits(tmp_path, image_size=None, limit=None, augment=True, **SPLIT)
