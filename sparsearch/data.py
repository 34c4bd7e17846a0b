"""Datasets as in-memory tensors with a fixed, seeded train/val/test split.

scikit-learn's digits set ships inside scikit-learn, so the default needs no download.
The val split drives the search; the test split is only read for the Pareto subnets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from sparsearch.catalogue import Catalogue

__all__ = ["DataSplits", "iterate_batches", "load_digits_splits"]


@dataclass(frozen=True)
class DataSplits:
    """Train, val and test tensors of one dataset.

    Attributes:
        train, val, test: (inputs, targets) pairs; inputs are float32, targets int64.
        in_shape: shape of one input sample, without the batch dimension.
        num_classes: number of classes.
        name: the dataset's name.
    """

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    in_shape: tuple[int, ...]
    num_classes: int
    name: str

    def to(self, device: torch.device | str) -> DataSplits:
        def move(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return pair[0].to(device), pair[1].to(device)

        return DataSplits(move(self.train), move(self.val), move(self.test), self.in_shape,
                          self.num_classes, self.name)


def split_arrays(
    inputs: np.ndarray, targets: np.ndarray, *, val_fraction: float, test_fraction: float,
    seed: int, name: str,
) -> DataSplits:
    """Splits arrays into stratified train/val/test tensors, the same for the same seed."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(targets))
    rest, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                      stratify=targets)
    train_idx, val_idx = train_test_split(rest, test_size=val_fraction / (1.0 - test_fraction),
                                          random_state=seed, stratify=targets[rest])

    def pair(sel: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(inputs[sel], dtype=torch.float32),
                torch.as_tensor(targets[sel], dtype=torch.int64))

    return DataSplits(pair(train_idx), pair(val_idx), pair(test_idx),
                      tuple(inputs.shape[1:]), int(targets.max()) + 1, name)


def load_digits_splits(*, val_fraction: float = 0.2, test_fraction: float = 0.2,
                       seed: int = 0) -> DataSplits:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), scaled to [0, 1], as (1, 8, 8)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return split_arrays(images, digits.target, val_fraction=val_fraction,
                        test_fraction=test_fraction, seed=seed, name="digits")


def iterate_batches(
    pair: tuple[torch.Tensor, torch.Tensor], batch_size: int, *,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yields mini-batches; shuffled when a generator is given."""
    inputs, targets = pair
    n = len(targets)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(inputs.device)
    for start in range(0, n, batch_size):
        sel = order[start:start + batch_size]
        yield inputs[sel], targets[sel]


# Image datasets read from a local folder (CIFAR-10's python batches, class folders).
# Nothing is downloaded: a missing or malformed folder is a ConfigError naming the path.

from pathlib import Path  # noqa: E402  (appended section: the loaders of image folders)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def _subset(images: np.ndarray, targets: np.ndarray, *, limit: int | None,
            seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` samples, drawn with a seeded permutation (the same for the same seed)."""
    if limit is None or limit >= len(targets):
        return images, targets
    keep = np.sort(np.random.RandomState(seed).permutation(len(targets))[:limit])
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
                        image_size: int | None = None, limit: int | None = None) -> DataSplits:
    """CIFAR-10 from its python pickle batches (``data_batch_1..5``, ``test_batch``).

    All 60,000 images (train and test batches together) are split by the config's
    fractions, as every dataset here; pixels are scaled to [0, 1], shape (3, 32, 32) or
    ``(3, image_size, image_size)``.

    Raises:
        ConfigError: the folder lacks a batch, or a batch is not a CIFAR-10 pickle.
    """
    import pickle

    from sparsearch.config import ConfigError

    folder = _cifar_folder(Path(root))
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        try:
            with open(folder / name, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except (OSError, pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as err:
            raise ConfigError(f"data.root: {folder / name} is not a CIFAR-10 python batch "
                              f"({type(err).__name__})") from None
    data, targets = _subset(np.concatenate(images), np.concatenate(labels), limit=limit,
                            seed=seed)
    pixels = _resize(data.astype(np.float32) / 255.0, image_size)
    return split_arrays(pixels, targets, val_fraction=val_fraction,
                        test_fraction=test_fraction, seed=seed, name="cifar10")


def load_imagefolder_splits(root: Path, *, val_fraction: float, test_fraction: float,
                            seed: int, image_size: int | None = None,
                            limit: int | None = None) -> DataSplits:
    """Images in one folder per class (``root/<class>/<image>``), classes in sorted order.

    Images are read with PIL as RGB, scaled to [0, 1] and resized to ``image_size`` when
    set; without it every image must have the same size.

    Raises:
        ConfigError: no class folders or images, an unreadable image, or mixed sizes
            without ``data.image_size``.
    """
    from PIL import Image, UnidentifiedImageError

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
    images = []
    for i in index:
        path = files[i][0]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
                if image_size is not None:
                    rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
                images.append(np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        except (OSError, UnidentifiedImageError) as err:
            raise ConfigError(f"data.root: cannot read image {path} ({err})") from None
    sizes = {img.shape for img in images}
    if len(sizes) > 1:
        raise ConfigError(f"data.root {str(root)!r}: images have different sizes "
                          f"{sorted(s[1:] for s in sizes)[:3]}; set data.image_size")
    return split_arrays(np.stack(images), targets, val_fraction=val_fraction,
                        test_fraction=test_fraction, seed=seed, name="imagefolder")


# Every ``load_<name>_splits`` function above is the data set ``<name>`` (``data.name``):
# the function's name is the one place a data set's name is written. A loader whose first
# parameter is ``root`` reads files from ``data.root``; the others make their data.
DATASETS: Catalogue[Callable[..., DataSplits]] = Catalogue("data set", field="data.name")
for _name, _loader in list(globals().items()):
    if _name.startswith("load_") and _name.endswith("_splits") and callable(_loader):
        DATASETS.register(_name[len("load_"):-len("_splits")], _loader)
