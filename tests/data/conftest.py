"""Writers for tiny dataset files in each supported layout, so every loader is tested without downloads."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tenfold.data import JET_CLASSES, JET_FEATURES, write_idx


def tiny_images(n: int, num_classes: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images whose first two pixels hold a unique id (so splits can be checked for overlap)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % num_classes).astype(np.uint8)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    flat = images.reshape(n, -1)
    flat[:, 0] = np.arange(n) % 256
    flat[:, 1] = np.arange(n) // 256 + 100 * (seed % 2)
    return images, labels


@pytest.fixture
def mnist_folder(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny MNIST-layout folder: 60 train and 30 test 28x28 images, gzipped or raw."""

    def make(gz: bool = True, n_train: int = 60, n_test: int = 30, name: str = "mnist") -> Path:
        folder = tmp_path / name
        folder.mkdir()
        suffix = ".gz" if gz else ""
        x_tr, y_tr = tiny_images(n_train, 10, (28, 28), seed=0)
        x_te, y_te = tiny_images(n_test, 10, (28, 28), seed=1)
        write_idx(folder / f"train-images-idx3-ubyte{suffix}", x_tr)
        write_idx(folder / f"train-labels-idx1-ubyte{suffix}", y_tr)
        write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", x_te)
        write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", y_te)
        return folder

    return make


def _dump(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


@pytest.fixture
def cifar10_pickles(tmp_path: Path) -> Path:
    """A tiny cifar-10-batches-py folder: 5 training batches of 10 images and a test batch of 20."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for b in range(1, 6):
        x, y = tiny_images(10, 10, (3 * 32 * 32,), seed=b)
        _dump(folder / f"data_batch_{b}", {b"batch_label": b"training batch", b"data": x, b"labels": y.tolist()})
    x, y = tiny_images(20, 10, (3 * 32 * 32,), seed=9)
    _dump(folder / "test_batch", {b"batch_label": b"testing batch", b"data": x, b"labels": y.tolist()})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return folder


@pytest.fixture
def cifar100_pickles(tmp_path: Path) -> Path:
    """A tiny cifar-100-python folder: 200 training and 100 test images, fine label = 5 * coarse + k."""
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n, seed in (("train", 200, 3), ("test", 100, 4)):
        x, _ = tiny_images(n, 100, (3 * 32 * 32,), seed=seed)
        fine = np.arange(n) % 100
        _dump(folder / name, {b"data": x, b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()})
    _dump(
        folder / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return folder


def jet_table(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 16) on very different scales, as in the real data, and balanced labels 0..4."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(JET_CLASSES)
    scales = np.logspace(-2, 3, len(JET_FEATURES))
    x = (rng.normal(size=(n, len(JET_FEATURES))) + y[:, None]) * scales + 5.0
    return x, y


@pytest.fixture
def jets_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write the jet table as CSV (an extra leading column, quoted class letters) and return its path."""

    def make(n: int = 200, name: str = "jets.csv") -> Path:
        x, y = jet_table(n)
        lines = ["index," + ",".join(JET_FEATURES) + ",class"]
        for i, (row, label) in enumerate(zip(x, y, strict=True)):
            lines.append(f"{i}," + ",".join(repr(float(v)) for v in row) + f',"{JET_CLASSES[label]}"')
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return make


@pytest.fixture
def jets_arff(tmp_path: Path) -> Path:
    """The same jet table as an ARFF file, as OpenML serves it."""
    x, y = jet_table(200)
    lines = ["@RELATION hls4ml_lhc_jets_hlf", ""]
    lines += [f"@ATTRIBUTE {f} NUMERIC" for f in JET_FEATURES]
    lines += ["@ATTRIBUTE class {" + ",".join(JET_CLASSES) + "}", "", "@DATA"]
    for row, label in zip(x, y, strict=True):
        lines.append(",".join(repr(float(v)) for v in row) + f",{JET_CLASSES[label]}")
    path = tmp_path / "jets.arff"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rows(x) -> set[bytes]:
    arr = x.numpy().reshape(len(x), int(np.prod(x.shape[1:])))
    return {r.tobytes() for r in arr}


@pytest.fixture
def check_splits() -> Callable[..., None]:
    """Checks every DataSplits must pass: dtypes, shapes, label range, disjoint splits, JSON summary."""
    import json

    import torch

    def check(ds, *, num_classes: int, input_shape: tuple[int, ...], disjoint: bool = True) -> None:
        assert ds.num_classes == num_classes == len(ds.classes)
        assert ds.input_shape == input_shape
        for split in (ds.train, ds.val, ds.test):
            x, y = split.tensors
            assert x.dtype == torch.float32 and y.dtype == torch.int64
            assert tuple(x.shape[1:]) == input_shape
            assert len(x) == len(y)
            if len(y):
                assert int(y.min()) >= 0 and int(y.max()) < num_classes
            assert torch.isfinite(x).all()
        summary = json.loads(json.dumps(ds.summary()))
        assert summary["sizes"] == {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)}
        assert summary["input_shape"] == list(input_shape)
        assert summary["classes"] == ds.classes
        if disjoint:
            train, val, test = (_rows(s.tensors[0]) for s in (ds.train, ds.val, ds.test))
            assert not train & val and not train & test and not val & test

    return check


@pytest.fixture
def jet_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 200-row jet table the CSV/ARFF fixtures write, to compare loaded data against."""
    return jet_table(200)
