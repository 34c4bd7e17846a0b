"""Datasets as in-memory tensors with a fixed, seeded train/val/test split.

scikit-learn's digits set ships inside scikit-learn, so the default needs no download;
MNIST-1D is generated offline by the ``mnist1d`` package. The val split drives the
search; the test split is only read for the Pareto subnets. A data set that ships its own
test split keeps it, and val is carved out of its training part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch.utils.data import Dataset

from sparsearch.catalogue import Catalogue

__all__ = ["DATASETS", "DataSplits", "ImageFiles", "StreamedInputs", "iterate_batches",
           "load_custom_splits", "load_digits_splits", "load_mnist1d_splits"]

# (inputs, targets) of one split; inputs may stay on disk (StreamedInputs), targets never do.
Pair = tuple["torch.Tensor | StreamedInputs", torch.Tensor]


@dataclass(frozen=True)
class DataSplits:
    """Train, val and test tensors of one dataset.

    Attributes:
        train, val, test: (inputs, targets) pairs; inputs are float32, targets int64.
            Inputs may be ``StreamedInputs`` (left on disk) where a data set is too large.
        in_shape: shape of one input sample, without the batch dimension.
        num_classes: number of classes.
        name: the dataset's name.
    """

    train: Pair
    val: Pair
    test: Pair
    in_shape: tuple[int, ...]
    num_classes: int
    name: str

    def to(self, device: torch.device | str) -> DataSplits:
        def move(pair: Pair) -> Pair:
            return pair[0].to(device), pair[1].to(device)

        return DataSplits(move(self.train), move(self.val), move(self.test), self.in_shape,
                          self.num_classes, self.name)


def split_indices(targets: np.ndarray, *, val_fraction: float, test_fraction: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded (train, val, test) sample indices."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(targets))
    rest, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                      stratify=targets)
    train_idx, val_idx = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction),
                                          random_state=seed, stratify=targets[rest])
    return train_idx, val_idx, test_idx


def split_arrays(
    inputs: np.ndarray, targets: np.ndarray, *, val_fraction: float, test_fraction: float,
    seed: int, name: str,
) -> DataSplits:
    """Splits arrays into stratified train/val/test tensors, the same for the same seed."""
    train_idx, val_idx, test_idx = split_indices(targets, val_fraction=val_fraction,
                                                 test_fraction=test_fraction, seed=seed)

    def pair(sel: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(inputs[sel], dtype=torch.float32),
                torch.as_tensor(targets[sel], dtype=torch.int64))

    return DataSplits(pair(train_idx), pair(val_idx), pair(test_idx),
                      tuple(inputs.shape[1:]), int(targets.max()) + 1, name)


def carve_val_indices(targets: np.ndarray, *, val_fraction: float,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded (train, val) indices of a training part whose test split is given."""
    from sklearn.model_selection import train_test_split

    train_idx, val_idx = train_test_split(np.arange(len(targets)), test_size=val_fraction,
                                          random_state=seed, stratify=targets)
    return train_idx, val_idx


def split_train_val(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], *,
    val_fraction: float, seed: int, name: str,
) -> DataSplits:
    """Keeps a published test split; carves a stratified, seeded val split out of train.

    ``val_fraction`` is the share of the training samples that go to val.
    """
    inputs, targets = train
    train_idx, val_idx = carve_val_indices(targets, val_fraction=val_fraction, seed=seed)

    def pair(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64))

    num_classes = int(max(targets.max(), test[1].max())) + 1
    return DataSplits(pair(inputs[train_idx], targets[train_idx]),
                      pair(inputs[val_idx], targets[val_idx]), pair(*test),
                      tuple(inputs.shape[1:]), num_classes, name)


def load_mnist1d_splits(*, val_fraction: float = 0.2, seed: int = 0,
                        num_samples: int | None = None) -> DataSplits:
    """MNIST-1D (Greydanus, arXiv 2011.14439), generated offline, as (1, 40) signals.

    The paper's generation arguments (``mnist1d.data.get_dataset_args``: 5000 samples,
    generation seed 42) and its split: the first 80% train (4000), the last 20% test (1000);
    val is ``val_fraction`` of the training samples. ``num_samples`` enlarges the set (the
    same 80/20 split). Never ``mnist1d.data.get_dataset``: that one downloads a pickle.
    """
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    if num_samples is not None:
        args.num_samples = int(num_samples)
    # make_dataset seeds numpy's and random's global generators: restore them afterwards.
    numpy_state, random_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(random_state)

    def signals(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32)[:, None, :]

    return split_train_val((signals(raw["x"]), raw["y"]), (signals(raw["x_test"]), raw["y_test"]),
                           val_fraction=val_fraction, seed=seed, name="mnist1d")


def load_digits_splits(*, val_fraction: float = 0.2, test_fraction: float = 0.2,
                       seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), scaled to [0, 1], as (1, 8, 8)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return split_arrays(images, digits.target, val_fraction=val_fraction,
                        test_fraction=test_fraction, seed=seed, name="digits")


class StreamedInputs:
    """The inputs of a split left on disk: read batch by batch through a DataLoader.

    Stands where an inputs tensor stands in a ``(inputs, targets)`` pair (the targets stay
    in memory): ``len``, ``.to(device)``, a slice ``[:k]`` (the first k inputs, read now)
    and ``iterate_batches``.

    Args:
        dataset: a map-style Dataset of ``(input tensor, label)``.
        workers: DataLoader worker processes (0: read in this process).
        device: where batches go; memory is pinned for a CUDA device.
    """

    def __init__(self, dataset: Dataset, *, workers: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.dataset = dataset
        self.workers = workers
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(cast(Sized, self.dataset))

    def to(self, device: torch.device | str) -> StreamedInputs:
        return StreamedInputs(self.dataset, workers=self.workers, device=device)

    def __getitem__(self, index: slice) -> torch.Tensor:
        if not isinstance(index, slice):
            raise TypeError("streamed inputs are read by slices ([:k]) or by iterate_batches")
        rows = range(*index.indices(len(self)))
        return torch.stack([torch.as_tensor(self.dataset[i][0]) for i in rows]).to(self.device)

    def batches(self, order: torch.Tensor, targets: torch.Tensor, batch_size: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from torch.utils.data import DataLoader

        loader = DataLoader(self.dataset, batch_size=batch_size, sampler=order.tolist(),
                            num_workers=self.workers, pin_memory=self.device.type == "cuda")
        for start, (inputs, _) in zip(range(0, len(order), batch_size), loader):
            sel = order[start:start + batch_size].to(targets.device)
            yield inputs.to(self.device, non_blocking=True), targets[sel]


def iterate_batches(
    pair: Pair, batch_size: int, *,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yields mini-batches; shuffled when a generator is given.

    Streamed inputs (``StreamedInputs``) are read through a DataLoader in the same order as
    in-memory ones, so the same seed trains the same way on either path.
    """
    inputs, targets = pair
    n = len(targets)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    if isinstance(inputs, StreamedInputs):
        yield from inputs.batches(order, targets, batch_size)
        return
    order = order.to(inputs.device)
    for start in range(0, n, batch_size):
        sel = order[start:start + batch_size]
        yield inputs[sel], targets[sel]


# Image datasets read from a local folder (CIFAR-10's python batches, class folders).
# Nothing is downloaded: a missing or malformed folder is a ConfigError naming the path.

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _subset(images: np.ndarray, targets: np.ndarray, *, limit: int | None,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` samples, drawn seeded (the same for the same seed) and stratified
    where every class has two samples or more, so a small cap keeps every class."""
    from sklearn.model_selection import train_test_split

    if limit is None or limit >= len(targets):
        return images, targets
    try:
        keep, _ = train_test_split(np.arange(len(targets)), train_size=limit,
                                   random_state=seed, stratify=targets)
    except ValueError:
        keep = np.random.RandomState(seed).permutation(len(targets))[:limit]
    keep = np.sort(keep)
    return images[keep], targets[keep]


def _resize(images: np.ndarray, image_size: int | None) -> np.ndarray:
    """[N, C, H, W] float images resized (bilinear, antialiased) to a square side."""
    if image_size is None or images.shape[-2:] == (image_size, image_size):
        return images
    from torch.nn import functional as F

    out = F.interpolate(torch.from_numpy(images), size=(image_size, image_size),
                        mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0).numpy()


def _cifar_folder(root: Path) -> Path:
    from sparsearch.config import ConfigError

    for folder in (root, root / "cifar-10-batches-py"):
        if all((folder / f"data_batch_{i}").is_file() for i in range(1, 6)) \
                and (folder / "test_batch").is_file():
            return folder
    raise ConfigError(f"data.root {str(root)!r} holds no CIFAR-10 python batches "
                      f"(data_batch_1..5 and test_batch, as in cifar-10-python.tar.gz)")


def load_cifar10_splits(root: Path, *, val_fraction: float, test_fraction: float, seed: int,
                        image_size: int | None = None, limit: int | None = None,
                        max_memory_mb: float | None = None, workers: int = 0,
                        augment: bool = False) -> DataSplits:
    """CIFAR-10 from its python pickle batches (``data_batch_1..5``, ``test_batch``).

    The official split is kept, so numbers compare with published ones: ``test_batch`` is
    the test split and val is ``val_fraction`` of the 50,000 training images
    (``test_fraction`` is not used). ``limit`` caps the images in all, drawn seeded from
    train and test in the published 5:1 proportion. Pixels are scaled to [0, 1], shape
    (3, 32, 32) or ``(3, image_size, image_size)``. When the float32 pixels would take more
    than ``max_memory_mb``, the images stay uint8 and every split streams them
    (``StreamedInputs``, ``workers`` DataLoader processes). With ``augment`` the training
    split always streams, through timm's training transform; val and test stay plain.

    Raises:
        ConfigError: the folder lacks a batch, or a batch is not a CIFAR-10 pickle.
    """
    import pickle

    from sparsearch.config import ConfigError

    folder = _cifar_folder(Path(root))

    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for name in names:
            try:
                with open(folder / name, "rb") as handle:
                    batch = pickle.load(handle, encoding="bytes")
                images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
            except (OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError,
                    EOFError) as err:
                raise ConfigError(f"data.root: {folder / name} is not a CIFAR-10 python batch "
                                  f"({type(err).__name__})") from None
        return np.concatenate(images), np.concatenate(labels)

    train = read([f"data_batch_{i}" for i in range(1, 6)])
    test = read(["test_batch"])
    train_limit = None if limit is None else limit * 5 // 6
    test_limit = None if limit is None else limit - limit * 5 // 6
    train = _subset(*train, limit=train_limit, seed=seed)
    test = _subset(*test, limit=test_limit, seed=seed)

    def pixels(data: np.ndarray) -> np.ndarray:
        return _resize(data.astype(np.float32) / 255.0, image_size)

    side = image_size or 32
    float_mb = (len(train[1]) + len(test[1])) * 3 * side * side * 4 / 2**20
    too_large = max_memory_mb is not None and float_mb > max_memory_mb
    if not (too_large or augment):
        return split_train_val((pixels(train[0]), train[1]), (pixels(test[0]), test[1]),
                               val_fraction=val_fraction, seed=seed, name="cifar10")
    train_idx, val_idx = carve_val_indices(train[1], val_fraction=val_fraction, seed=seed)

    def part(images: np.ndarray, labels: np.ndarray, *, training: bool) -> Pair:
        targets = torch.as_tensor(labels, dtype=torch.int64)
        if not too_large and not training:
            return torch.from_numpy(pixels(images)), targets
        dataset = CifarImages(images, labels, image_size, augment=augment and training)
        return StreamedInputs(dataset, workers=workers), targets

    return DataSplits(part(train[0][train_idx], train[1][train_idx], training=True),
                      part(train[0][val_idx], train[1][val_idx], training=False),
                      part(*test, training=False), (3, side, side),
                      int(max(train[1].max(), test[1].max())) + 1, "cifar10")


def _training_transform(image_size: int) -> Callable[..., torch.Tensor]:
    """timm's standard training augmentation of a PIL image, kept in [0, 1] (mean 0, std 1)
    like the plain path."""
    from timm.data import create_transform

    return cast(Callable[..., torch.Tensor],
                create_transform(input_size=(3, image_size, image_size), is_training=True,
                                 mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))


class CifarImages(Dataset):
    """CIFAR-10 images kept as uint8 (a quarter of float32) and made float on demand.

    Without ``augment``, the same pixels as the in-memory path (scaled to [0, 1], resized
    to ``image_size``); with it, timm's standard training transform at ``image_size``.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, image_size: int | None, *,
                 augment: bool = False) -> None:
        self.images = images
        self.labels = labels
        self.image_size = image_size
        self.transform = _training_transform(image_size or 32) if augment else None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.transform is None:
            pixels = _resize(self.images[i:i + 1].astype(np.float32) / 255.0, self.image_size)
            return torch.from_numpy(pixels[0]), int(self.labels[i])
        from PIL import Image

        image = Image.fromarray(self.images[i].transpose(1, 2, 0))
        return self.transform(image), int(self.labels[i])


class ImageFiles(Dataset):
    """Image files read on demand as RGB float tensors in [0, 1], resized when asked.

    Without ``augment``, the same pixels as the in-memory image-folder path, so the two
    paths train alike. With it, timm's standard training transform
    (``timm.data.create_transform(is_training=True)``: random resized crop, horizontal flip,
    colour jitter), kept in [0, 1] (mean 0, std 1) like the plain path.
    """

    def __init__(self, paths: list[Path], labels: np.ndarray, image_size: int | None, *,
                 augment: bool = False) -> None:
        self.paths = paths
        self.labels = labels
        self.image_size = image_size
        self.transform = None
        if augment:
            if image_size is None:
                raise ValueError("augmented images need an image_size")
            self.transform = _training_transform(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.transform is None:
            pixels = torch.from_numpy(_read_image(self.paths[i], self.image_size))
        else:
            from PIL import Image

            with Image.open(self.paths[i]) as image:
                pixels = self.transform(image.convert("RGB"))
        return pixels, int(self.labels[i])


def _read_image(path: Path, image_size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        rgb = image.convert("RGB")
        if image_size is not None:
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0


def load_imagefolder_splits(root: Path, *, val_fraction: float, test_fraction: float,
                            seed: int, image_size: int | None = None,
                            limit: int | None = None, max_memory_mb: float | None = None,
                            workers: int = 0, augment: bool = False) -> DataSplits:
    """Images in one folder per class (``root/<class>/<image>``), classes in sorted order.

    Images are read with PIL as RGB, scaled to [0, 1] and resized to ``image_size`` when
    set; without it every image must have the same size. When the float32 pixels would take
    more than ``max_memory_mb``, the images stay on disk and every split streams them
    (``StreamedInputs``, ``workers`` DataLoader processes); labels stay in memory. With
    ``augment`` the training split always streams, through timm's training transform (a
    fresh random view of every image each epoch); val and test stay plain.

    Raises:
        ConfigError: no class folders or images, an unreadable image, or mixed sizes
            without ``data.image_size``.
    """
    from PIL import UnidentifiedImageError

    from sparsearch.config import ConfigError

    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((root / name).iterdir())
             if path.suffix.lower() in _IMAGE_SUFFIXES]
    if len(classes) < 2 or not files:
        raise ConfigError(f"data.root {str(root)!r} must hold one folder of images per class "
                          f"(at least 2 classes), found {len(classes)} folder(s) and "
                          f"{len(files)} image(s)")
    targets = np.asarray([label for _, label in files], dtype=np.int64)
    index, targets = _subset(np.arange(len(files)), targets, limit=limit, seed=seed)

    def read(path: Path) -> np.ndarray:
        try:
            return _read_image(path, image_size)
        except (OSError, UnidentifiedImageError) as err:
            raise ConfigError(f"data.root: cannot read image {path} ({err})") from None

    first = read(files[index[0]][0])
    too_large = max_memory_mb is not None and len(index) * first.nbytes > max_memory_mb * 2**20
    if (too_large or augment) and image_size is None:
        why = ("data.augment is true" if augment else
               f"it is streamed (above data.max_memory_mb={max_memory_mb})")
        raise ConfigError(f"data.root {str(root)!r}: {why}, so data.image_size must be set")
    if too_large or augment:
        paths = [files[i][0] for i in index]
        parts = split_indices(targets, val_fraction=val_fraction, test_fraction=test_fraction,
                              seed=seed)

        def streamed(sel: np.ndarray, *, train: bool
                     ) -> Pair:
            labels = torch.as_tensor(targets[sel])
            if not too_large and not train:
                return torch.from_numpy(np.stack([read(paths[i]) for i in sel])), labels
            subset = ImageFiles([paths[i] for i in sel], targets[sel], image_size,
                                augment=augment and train)
            return StreamedInputs(subset, workers=workers), labels

        return DataSplits(streamed(parts[0], train=True), streamed(parts[1], train=False),
                          streamed(parts[2], train=False), tuple(first.shape),
                          int(targets.max()) + 1, "imagefolder")
    images = [first] + [read(files[i][0]) for i in index[1:]]
    sizes = {img.shape for img in images}
    if len(sizes) > 1:
        raise ConfigError(f"data.root {str(root)!r}: images have different sizes "
                          f"{sorted(s[1:] for s in sizes)[:3]}; set data.image_size")
    return split_arrays(np.stack(images), targets, val_fraction=val_fraction,
                        test_fraction=test_fraction, seed=seed, name="imagefolder")


# A user's own data: a function returning torch Datasets, read into memory under a cap
# and streamed from the Datasets above it.


def _dataset_arrays(dataset: Dataset, *, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of a map-style Dataset of (input tensor, int label) pairs."""
    from torch.utils.data import DataLoader

    try:
        batches = list(DataLoader(dataset, batch_size=256, shuffle=False))
        inputs = torch.cat([torch.as_tensor(b[0]) for b in batches]).float().numpy()
        targets = torch.cat([torch.as_tensor(b[1]) for b in batches]).long().numpy()
    except Exception as err:  # noqa: BLE001  (any error of the user's Dataset is reported)
        text = str(err).strip().splitlines()
        raise ValueError(f"{key}: cannot read its samples as (input tensor, int label) pairs "
                         f"({type(err).__name__}: {text[0] if text else ''})") from None
    return inputs, targets


class DatasetSamples(Dataset):
    """Samples ``indices`` of a user's Dataset as (float32 input tensor, int label) pairs,
    read on demand, so a split of it streams like an image folder."""

    def __init__(self, dataset: Dataset, indices: np.ndarray) -> None:
        self.dataset = dataset
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        inputs, label = self.dataset[int(self.indices[i])]
        return torch.as_tensor(inputs).float(), int(label)


def _dataset_labels(dataset: Dataset, *, key: str, workers: int) -> np.ndarray:
    """The int labels of a map-style Dataset, read in one pass (inputs are not kept)."""
    from torch.utils.data import DataLoader

    try:
        loader = DataLoader(dataset, batch_size=256, shuffle=False, num_workers=workers)
        return torch.cat([torch.as_tensor(b[1]).long() for b in loader]).numpy()
    except Exception as err:  # noqa: BLE001  (any error of the user's Dataset is reported)
        text = str(err).strip().splitlines()
        raise ValueError(f"{key}: cannot read its samples as (input tensor, int label) pairs "
                         f"({type(err).__name__}: {text[0] if text else ''})") from None


def _streamed_custom_splits(parts: list[Dataset], *, key: str, val_fraction: float,
                            test_fraction: float, seed: int, workers: int,
                            in_shape: tuple[int, ...]) -> DataSplits:
    """A user's Datasets left where they are, split by the same seeded, stratified rules
    (and so into the same samples) as the in-memory path."""
    labels = [_dataset_labels(part, key=key, workers=workers) for part in parts]
    if len(parts) == 1:
        train_idx, val_idx, test_idx = split_indices(
            labels[0], val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        chosen = [(parts[0], labels[0], sel) for sel in (train_idx, val_idx, test_idx)]
    elif len(parts) == 2:
        train_idx, val_idx = carve_val_indices(labels[0], val_fraction=val_fraction,
                                               seed=seed)
        chosen = [(parts[0], labels[0], train_idx), (parts[0], labels[0], val_idx),
                  (parts[1], labels[1], np.arange(len(labels[1])))]
    else:
        chosen = [(part, y, np.arange(len(y))) for part, y in zip(parts, labels)]

    def pair(dataset: Dataset, y: np.ndarray, sel: np.ndarray) -> Pair:
        return (StreamedInputs(DatasetSamples(dataset, sel), workers=workers),
                torch.as_tensor(y[sel], dtype=torch.int64))

    train, val, test = (pair(*c) for c in chosen)
    num_classes = int(max(y.max() for y in labels)) + 1
    return DataSplits(train, val, test, in_shape, num_classes, "custom")


def load_custom_splits(target: str, *, val_fraction: float, test_fraction: float, seed: int,
                       max_memory_mb: float, workers: int = 0) -> DataSplits:
    """A user's data: ``target`` names a function returning torch Datasets.

    ``(train, test)``: the test split is kept and val is carved out of train as for a data
    set with its own test split; ``(train, val, test)``: used as given; ``(all,)`` or one
    Dataset: split like digits by the fractions. Samples are ``(input tensor, int label)``.
    The data is read into memory when its float32 inputs fit under ``max_memory_mb``;
    above it every split streams from the user's Datasets (``StreamedInputs``, ``workers``
    DataLoader processes), split into the same samples; labels stay in memory.

    Raises:
        ConfigError: a bad target or return value, or unreadable samples.
    """
    from torch.utils.data import Dataset

    from sparsearch.config import ConfigError
    from sparsearch.models._custom import resolve_target

    key = f"data.target {target!r}"
    try:
        fn = resolve_target(target, key="data.target")
        returned = fn()
    except ValueError as err:
        raise ConfigError(str(err)) from None
    parts = list(returned) if isinstance(returned, (tuple, list)) else [returned]
    if not 1 <= len(parts) <= 3 or not all(isinstance(p, Dataset) for p in parts):
        raise ConfigError(f"{key} must return torch Datasets: (train, test), "
                          f"(train, val, test) or one Dataset; got {type(returned).__name__}")
    try:
        sizes_mb = []
        for part in parts:
            first = torch.as_tensor(part[0][0])
            sizes_mb.append(len(cast(Sized, part)) * first.numel() * 4 / 2**20)
    except Exception as err:  # noqa: BLE001  (any error of the user's Dataset is reported)
        raise ConfigError(f"{key}: cannot read a sample ({type(err).__name__}: {err})") from None
    try:
        if sum(sizes_mb) > max_memory_mb:
            return _streamed_custom_splits(parts, key=key, val_fraction=val_fraction,
                                           test_fraction=test_fraction, seed=seed,
                                           workers=workers, in_shape=tuple(first.shape))
        arrays = [_dataset_arrays(part, key=key) for part in parts]
    except ValueError as err:
        raise ConfigError(str(err)) from None
    name = "custom"
    if len(arrays) == 1:
        return split_arrays(*arrays[0], val_fraction=val_fraction, test_fraction=test_fraction,
                            seed=seed, name=name)
    if len(arrays) == 2:
        return split_train_val(arrays[0], arrays[1], val_fraction=val_fraction, seed=seed,
                               name=name)

    def pair(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(x), torch.from_numpy(y)

    (train, val, test) = arrays
    num_classes = int(max(train[1].max(), val[1].max(), test[1].max())) + 1
    return DataSplits(pair(*train), pair(*val), pair(*test), tuple(train[0].shape[1:]),
                      num_classes, name)


# Every ``load_<name>_splits`` function above is the data set ``<name>`` (``data.name``):
# the function's name is the one place a data set's name is written. A loader whose first
# parameter is ``root`` reads files from ``data.root``; the others make their data.
DATASETS: Catalogue[Callable[..., DataSplits]] = Catalogue("data set", field="data.name")
for _name, _loader in list(globals().items()):
    if _name.startswith("load_") and _name.endswith("_splits") and callable(_loader):
        DATASETS.register(_name[len("load_"):-len("_splits")], _loader)
