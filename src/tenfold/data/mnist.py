"""MNIST and Fashion-MNIST from IDX files (the official layout), with an npz fallback for training.

The shared benchmark folder holds the MNIST test set as IDX but only the first 10,000 training
images, as ``mnist_cazala_10k_uint8.npz`` (sorted by class). So when ``train-images-idx3-ubyte`` is
absent, any ``*.npz`` with ``images`` and ``labels`` arrays in the folder is used for training,
with its own labels (never paired with the IDX train labels, whose order differs).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tenfold.data.idx import read_idx
from tenfold.data.splits import DataSplits, check_labels, make_splits, subsample
from tenfold.errors import DataError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_PATH",
    "MNIST_CLASSES",
    "MNIST_FILES",
    "load_fashion_mnist",
    "load_mnist",
]

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Where Debian's dataset-fashion-mnist package installs the four *-ubyte.gz files.
FASHION_MNIST_DEFAULT_PATH = Path("/usr/share/datasets/fashion-mnist")

# The four official file stems; each is found with or without .gz, and in the "train-images.idx3-ubyte"
# spelling some unpackers produce.
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find(folder: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")
    for base in (folder, folder / "raw"):
        for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
            candidate = base / name
            if candidate.is_file():
                return candidate
    return None


def _expected_files_text() -> str:
    return ", ".join(f"{stem}[.gz]" for stem in MNIST_FILES.values())


def _read_npz_train(folder: Path) -> tuple[np.ndarray, np.ndarray, Path] | None:
    """The first ``*.npz`` (by name, skipping test files) holding ``images`` and ``labels``."""
    for npz in sorted(folder.glob("*.npz")):
        if "test" in npz.name.lower() or "t10k" in npz.name.lower():
            continue
        try:
            with np.load(npz, allow_pickle=False) as z:
                if "images" not in z.files or "labels" not in z.files:
                    continue
                images, labels = z["images"], z["labels"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{npz}: cannot read npz file ({exc}); expected arrays 'images' and 'labels'") from exc
        return images, labels, npz
    return None


def _check_images(images: np.ndarray, source: Path | str) -> np.ndarray:
    if images.ndim != 3 or images.shape[1] < 1 or images.shape[2] < 1:
        raise DataError(f"{source}: images must have shape (N, H, W), got {tuple(images.shape)}")
    if images.dtype != np.uint8:
        raise DataError(f"{source}: images must be uint8 pixels 0..255, got dtype {images.dtype}")
    return images


def _load_idx_folder(
    folder: Path, name: str, num_classes: int, install_hint: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not folder.is_dir():
        raise DataError(
            f"{name}: data folder {folder} not found or not a folder; "
            f"expected a folder with {_expected_files_text()}. {install_hint}"
        )
    found = {key: _find(folder, stem) for key, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[k] for k in ("test_images", "test_labels") if found[k] is None]
    if missing:
        raise DataError(
            f"{name}: {folder} lacks {', '.join(m + '[.gz]' for m in missing)}; "
            f"expected {_expected_files_text()}. {install_hint}"
        )
    x_test = _check_images(read_idx(found["test_images"], ndim=3), found["test_images"])
    y_test = check_labels(read_idx(found["test_labels"], ndim=1), num_classes, str(found["test_labels"]))
    if len(x_test) != len(y_test):
        raise DataError(
            f"{name}: {found['test_images'].name} has {len(x_test)} images but "
            f"{found['test_labels'].name} has {len(y_test)} labels"
        )

    if found["train_images"] is not None:
        if found["train_labels"] is None:
            raise DataError(f"{name}: {folder} has {found['train_images'].name} but no train-labels-idx1-ubyte[.gz]")
        x_train = _check_images(read_idx(found["train_images"], ndim=3), found["train_images"])
        y_train = check_labels(read_idx(found["train_labels"], ndim=1), num_classes, str(found["train_labels"]))
        source = f"{found['train_images'].name} / {found['train_labels'].name}"
    else:
        npz = _read_npz_train(folder)
        if npz is None:
            raise DataError(
                f"{name}: {folder} has no training images: expected train-images-idx3-ubyte[.gz] with "
                f"train-labels-idx1-ubyte[.gz], or an .npz with 'images' (N, H, W) uint8 and 'labels'. "
                f"{install_hint}"
            )
        images, labels, npz_path = npz
        x_train = _check_images(images, npz_path)
        y_train = check_labels(labels, num_classes, str(npz_path))
        source = npz_path.name
    if len(x_train) != len(y_train):
        raise DataError(f"{name}: training data {source} has {len(x_train)} images but {len(y_train)} labels")
    if len(x_train) == 0 or len(x_test) == 0:
        raise DataError(f"{name}: {folder} holds an empty training or test set")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{name}: training images are {x_train.shape[1:]} but test images are {x_test.shape[1:]}")
    return x_train, y_train, x_test, y_test


def _load_grey(
    name: str,
    path: str | Path | None,
    classes: Sequence[str],
    install_hint: str,
    *,
    val_fraction: float,
    seed: int,
    flatten: bool,
    max_train: int | None,
    max_test: int | None,
) -> DataSplits:
    if path is None:
        raise DataError(f"{name}: no data path given. {install_hint}")
    x_train, y_train, x_test, y_test = _load_idx_folder(Path(path).expanduser(), name, len(classes), install_hint)
    x_train, y_train = subsample(x_train, y_train, max_train, seed, "max_train")
    x_test, y_test = subsample(x_test, y_test, max_test, seed, "max_test")
    # uint8 0..255 -> float32 [0, 1], NCHW with one channel; normalised with train-split stats.
    scale = np.float32(1.0 / 255.0)
    return make_splits(
        name,
        x_train[:, None].astype(np.float32) * scale,
        y_train,
        x_test[:, None].astype(np.float32) * scale,
        y_test,
        classes,
        val_fraction=val_fraction,
        seed=seed,
        normalize="dataset",
        flatten=flatten,
    )


def load_mnist(
    path: str | Path | None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    flatten: bool = False,
    max_train: int | None = None,
    max_test: int | None = None,
) -> DataSplits:
    """MNIST from a folder of IDX files (or the t10k IDX files plus a training ``*.npz``).

    Images come out as (N, 1, 28, 28) float32 (or (N, 784) with ``flatten``), normalised with the
    mean/std of the training split. ``max_train`` caps the training pool (before the validation
    split is carved) and ``max_test`` the test set, by stratified seeded subsampling, for quick runs.
    """
    return _load_grey(
        "mnist",
        path,
        MNIST_CLASSES,
        "Download the four MNIST IDX files and pass their folder (--data PATH).",
        val_fraction=val_fraction,
        seed=seed,
        flatten=flatten,
        max_train=max_train,
        max_test=max_test,
    )


def load_fashion_mnist(
    path: str | Path | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    flatten: bool = False,
    max_train: int | None = None,
    max_test: int | None = None,
) -> DataSplits:
    """Fashion-MNIST from IDX files; by default from where Debian's ``dataset-fashion-mnist`` puts them.

    Same layout and options as :func:`load_mnist`; class names are the ten Zalando article types.
    """
    return _load_grey(
        "fashion-mnist",
        FASHION_MNIST_DEFAULT_PATH if path is None else path,
        FASHION_MNIST_CLASSES,
        f"Run `apt-get install dataset-fashion-mnist` (installs to {FASHION_MNIST_DEFAULT_PATH}) "
        "or pass --data PATH to a folder with the IDX files.",
        val_fraction=val_fraction,
        seed=seed,
        flatten=flatten,
        max_train=max_train,
        max_test=max_test,
    )
