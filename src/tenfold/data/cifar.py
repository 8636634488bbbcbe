"""CIFAR-10 and CIFAR-100 from the official python pickles or from npz archives.

Two layouts are accepted for CIFAR-10: a folder with ``test.npz`` and ``train*.npz`` (keys
``images`` (N, 32, 32, 3) uint8, ``labels`` (N,), optional ``classes``), as in the shared benchmark
data, and the standard ``cifar-10-batches-py`` folder (or its parent). CIFAR-100 reads
``cifar-100-python`` (or its parent) with fine or coarse labels.

The pickles are read with a restricted unpickler that only rebuilds numpy arrays, lists, dicts and
strings: a pickle can run arbitrary code, and a dataset path from a user should not be able to.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tenfold.data.splits import DataSplits, check_labels, make_splits, subsample
from tenfold.errors import DataError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_PRETRAINED_MEAN",
    "CIFAR_PRETRAINED_STD",
    "load_cifar10",
    "load_cifar100",
]

# Input normalisation the pretrained CIFAR-10 ResNet-20/32/44/56 checkpoints (pytorch_resnet_cifar10
# model zoo) were trained with. These are the ImageNet statistics, not CIFAR's own, so a model from
# those checkpoints loses accuracy if fed data normalised any other way: this is the default.
CIFAR_PRETRAINED_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
CIFAR_PRETRAINED_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_NORMALIZE_CHOICES = ("pretrained", "dataset", None)

# (module, name) pairs numpy needs to rebuild arrays from a pickle (numpy 1.x and 2.x spellings).
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("builtins", "bytearray"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except the few numpy needs to rebuild arrays."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: CIFAR pickles hold only arrays")


def _load_pickle(path: Path) -> dict[str, Any]:
    """Load one CIFAR pickle (encoding="bytes" for the Python 2 originals) with str keys."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on garbage: EOFError, UnpicklingError, ValueError...
        raise DataError(f"{path}: corrupt or unsupported CIFAR pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _names(values: Sequence[Any]) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _pickle_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels from one pickled batch (rows are CHW, row-major)."""
    batch = _load_pickle(path)
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"{path}: missing key {key!r}; found {sorted(batch)}")
    data = np.asarray(batch["data"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8:
        raise DataError(
            f"{path}: 'data' must be (N, 3072) uint8 (32x32 RGB, CHW row-major), got {tuple(data.shape)} {data.dtype}"
        )
    labels = check_labels(np.asarray(batch[label_key]), num_classes, str(path))
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _resolve(path: str | Path | None, folder_name: str, marker: str, name: str) -> Path:
    """The pickle folder itself, or ``folder_name`` inside the given parent."""
    if path is None:
        raise DataError(f"{name}: no data path given; pass the {folder_name} folder (or its parent)")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{name}: {p} does not exist; expected the {folder_name} folder or its parent")
    if (p / marker).is_file():
        return p
    if (p / folder_name / marker).is_file():
        return p / folder_name
    raise DataError(f"{name}: {p} has no {marker}; expected the {folder_name} folder (or its parent)")


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("images", "labels") if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; expected 'images', 'labels' (and 'classes')")
            images, labels = z["images"], z["labels"]
            classes = [str(c) for c in z["classes"]] if "classes" in z.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: corrupt or unreadable npz file ({type(exc).__name__}: {exc})") from exc
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3) or images.dtype != np.uint8:
        raise DataError(f"{path}: 'images' must be (N, 32, 32, 3) uint8, got {tuple(images.shape)} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{path}: 'labels' must be (N,) with N = {len(images)} images, got shape {tuple(labels.shape)}")
    return images, labels, classes


def _cifar10_npz(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    test_path = folder / "test.npz"
    if (folder / "train.npz").is_file():
        train_path = folder / "train.npz"
    else:
        # Several subsets (train_25k.npz, train_50k.npz...): take the largest, i.e. the most complete.
        train_path = max(sorted(folder.glob("train*.npz")), key=lambda p: p.stat().st_size)
    x_tr, y_tr, cls_tr = _read_npz(train_path)
    x_te, y_te, cls_te = _read_npz(test_path)
    classes = cls_tr or cls_te or list(CIFAR10_CLASSES)
    if cls_tr and cls_te and cls_tr != cls_te:
        raise DataError(f"{folder}: train classes {cls_tr} differ from test classes {cls_te}")
    y_tr = check_labels(y_tr, len(classes), str(train_path))
    y_te = check_labels(y_te, len(classes), str(test_path))
    # NHWC -> NCHW
    return x_tr.transpose(0, 3, 1, 2), y_tr, x_te.transpose(0, 3, 1, 2), y_te, classes


def _cifar10_pickles(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    classes = list(CIFAR10_CLASSES)
    meta_path = folder / "batches.meta"
    if meta_path.is_file():
        meta = _load_pickle(meta_path)
        if "label_names" in meta:
            classes = _names(meta["label_names"])
    batch_paths = sorted(folder.glob("data_batch_*"), key=lambda p: (len(p.name), p.name))
    if not batch_paths:
        raise DataError(f"cifar10: {folder} has test_batch but no data_batch_1..5")
    parts = [_pickle_batch(p, "labels", len(classes)) for p in batch_paths]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = _pickle_batch(folder / "test_batch", "labels", len(classes))
    return x_tr, y_tr, x_te, y_te, classes


def _finish(
    name: str,
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x_te: np.ndarray,
    y_te: np.ndarray,
    classes: Sequence[str],
    *,
    normalize: str | None,
    val_fraction: float,
    seed: int,
    max_train: int | None,
    max_test: int | None,
) -> DataSplits:
    if len(y_tr) == 0 or len(y_te) == 0:
        raise DataError(f"{name}: empty training or test set")
    x_tr, y_tr = subsample(x_tr, y_tr, max_train, seed, "max_train")
    x_te, y_te = subsample(x_te, y_te, max_test, seed, "max_test")
    scale = np.float32(1.0 / 255.0)
    norm: Any = (CIFAR_PRETRAINED_MEAN, CIFAR_PRETRAINED_STD) if normalize == "pretrained" else normalize
    return make_splits(
        name,
        x_tr.astype(np.float32) * scale,
        y_tr,
        x_te.astype(np.float32) * scale,
        y_te,
        classes,
        val_fraction=val_fraction,
        seed=seed,
        normalize=norm,
    )


def _check_normalize(normalize: str | None) -> None:
    if normalize not in _NORMALIZE_CHOICES:
        raise DataError(f"normalize must be one of {_NORMALIZE_CHOICES}, got {normalize!r}")


def load_cifar10(
    path: str | Path | None,
    *,
    normalize: str | None = "pretrained",
    val_fraction: float = 0.1,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
) -> DataSplits:
    """CIFAR-10 as (N, 3, 32, 32) float32 from an npz folder or ``cifar-10-batches-py`` (or its parent).

    ``normalize="pretrained"`` (default) applies :data:`CIFAR_PRETRAINED_MEAN`/``STD``, which the
    pretrained CIFAR ResNets expect; ``"dataset"`` uses the training split's own per-channel stats;
    ``None`` leaves pixels in [0, 1]. ``max_train`` caps the training pool before the validation
    split, ``max_test`` the test set (stratified, seeded) for quick runs.
    """
    _check_normalize(normalize)
    if path is None:
        raise DataError(
            "cifar10: no data path given; pass a folder with test.npz and train*.npz, "
            "or the cifar-10-batches-py folder (or its parent)"
        )
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(
            f"cifar10: {p} does not exist; expected a folder with test.npz and train*.npz, "
            "or the cifar-10-batches-py folder (or its parent)"
        )
    if (p / "test.npz").is_file() and any(p.glob("train*.npz")):
        arrays = _cifar10_npz(p)
    elif (p / "test.npz").is_file() or any(p.glob("train*.npz")):
        raise DataError(f"cifar10: {p} needs both test.npz and a train*.npz")
    else:
        arrays = _cifar10_pickles(_resolve(p, "cifar-10-batches-py", "test_batch", "cifar10"))
    return _finish(
        "cifar10",
        *arrays,
        normalize=normalize,
        val_fraction=val_fraction,
        seed=seed,
        max_train=max_train,
        max_test=max_test,
    )


def load_cifar100(
    path: str | Path | None,
    *,
    label_mode: str = "fine",
    normalize: str | None = "pretrained",
    val_fraction: float = 0.1,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
) -> DataSplits:
    """CIFAR-100 from ``cifar-100-python`` (or its parent): 100 fine or 20 coarse classes.

    Options as :func:`load_cifar10`; class names come from the ``meta`` file.
    """
    _check_normalize(normalize)
    if label_mode not in ("fine", "coarse"):
        raise DataError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    folder = _resolve(path, "cifar-100-python", "test", "cifar100")
    meta_path = folder / "meta"
    meta = _load_pickle(meta_path)
    names_key = f"{label_mode}_label_names"
    if names_key not in meta:
        raise DataError(f"{meta_path}: missing key {names_key!r}; found {sorted(meta)}")
    classes = _names(meta[names_key])
    label_key = f"{label_mode}_labels"
    x_tr, y_tr = _pickle_batch(folder / "train", label_key, len(classes))
    x_te, y_te = _pickle_batch(folder / "test", label_key, len(classes))
    return _finish(
        "cifar100",
        x_tr,
        y_tr,
        x_te,
        y_te,
        classes,
        normalize=normalize,
        val_fraction=val_fraction,
        seed=seed,
        max_train=max_train,
        max_test=max_test,
    )
