"""IDX parsing, MNIST and Fashion-MNIST: tiny files written here, the shared MNIST folder, Debian's package."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import tenfold.data.mnist as mnist_module
from tenfold.data import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEFAULT_PATH,
    load_dataset,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    write_idx,
)
from tenfold.errors import DataError

# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, suffix: str, dtype) -> None:
    arr = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / f"a-idx3-ubyte{suffix}", arr)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert np.array_equal(out, arr)


def test_idx_header_is_big_endian(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels", np.array([1, 2, 3], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])


def test_idx_reads_gzip_without_gz_suffix(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9])))
    assert read_idx(path).tolist() == [7, 9]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"\x00\x00", "only 2 bytes"),
        (b"<html>not found</html>", "bad IDX magic"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "bad IDX magic"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 1]), "truncated IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "trailing bytes"),
    ],
)
def test_idx_rejects_bad_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read_idx(path)
    assert "bad-idx1-ubyte" in str(info.value)


def test_idx_rejects_corrupt_and_truncated_gzip(tmp_path: Path) -> None:
    good = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4]) * 50)
    truncated = tmp_path / "t-idx1-ubyte.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="gzip") as info:
        read_idx(truncated)
    assert "t-idx1-ubyte.gz" in str(info.value)
    garbage = tmp_path / "g-idx1-ubyte.gz"
    garbage.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataError, match="gzip"):
        read_idx(garbage)


def test_idx_rank_check_and_missing_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="2 dimensions, expected 3"):
        read_idx(path, ndim=3)
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="cannot store"):
        write_idx(tmp_path / "y", np.zeros(2, dtype=np.uint64))


# ---------------------------------------------------------------- MNIST from tiny files


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_tiny_idx_files(mnist_folder, check_splits, gz: bool) -> None:
    ds = load_mnist(mnist_folder(gz=gz))
    check_splits(ds, num_classes=10, input_shape=(1, 28, 28))
    assert ds.name == "mnist" and ds.classes == [str(d) for d in range(10)]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54, 6, 30)
    assert np.bincount(ds.val.tensors[1].numpy(), minlength=10).max() == 1  # stratified: 6 distinct classes
    x = ds.train.tensors[0]
    assert abs(x.mean().item()) < 1e-4 and abs(x.std(unbiased=False).item() - 1) < 1e-4
    assert len(ds.mean) == 1 and 0 < ds.mean[0] < 1  # pixels were scaled to [0, 1] first


def test_mnist_stats_come_from_train_split_only(mnist_folder) -> None:
    folder = mnist_folder()
    ds = load_mnist(folder)
    x_raw = read_idx(folder / "train-images-idx3-ubyte.gz").astype(np.float64) / 255.0
    # Recover which raw images became training images, then recompute their stats.
    ids = np.round((ds.train.tensors[0][:, 0, 0, 0].double().numpy() * ds.std[0] + ds.mean[0]) * 255).astype(int)
    assert np.isclose(ds.mean[0], x_raw[ids].mean()) and np.isclose(ds.std[0], x_raw[ids].std())
    assert not np.isclose(ds.mean[0], x_raw.mean(), rtol=0, atol=1e-9)


def test_mnist_seed_flatten_and_limits(mnist_folder) -> None:
    folder = mnist_folder()
    a, b, c = load_mnist(folder, seed=0), load_mnist(folder, seed=0), load_mnist(folder, seed=5)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])
    flat = load_mnist(folder, flatten=True)
    assert flat.input_shape == (784,) and flat.train.tensors[0].shape == (54, 784)
    small = load_mnist(folder, max_train=20, max_test=10, val_fraction=0.5)
    assert (len(small.train), len(small.val), len(small.test)) == (10, 10, 10)
    assert np.array_equal(np.bincount(small.test.tensors[1].numpy(), minlength=10), [1] * 10)
    with pytest.raises(DataError, match="max_train"):
        load_mnist(folder, max_train=0)


def test_mnist_accepts_dotted_names_and_raw_subfolder(tmp_path: Path, mnist_folder) -> None:
    folder = mnist_folder(gz=False)
    dotted = tmp_path / "dotted"
    dotted.mkdir()
    for f in folder.iterdir():
        shutil.copy(f, dotted / f.name.replace("-idx", ".idx"))
    assert len(load_mnist(dotted).test) == 30
    parent = tmp_path / "MNIST"
    shutil.copytree(folder, parent / "raw")
    assert len(load_mnist(parent).test) == 30


def test_mnist_trains_from_npz_when_train_images_absent(mnist_folder) -> None:
    folder = mnist_folder()
    (folder / "train-images-idx3-ubyte.gz").unlink()
    images = np.random.default_rng(0).integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 4)  # class-sorted, like the shared file
    np.savez(folder / "first_40.npz", images=images, labels=labels)
    ds = load_mnist(folder)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (36, 4, 30)
    # val is stratified even though the npz is sorted by class
    assert len(set(ds.val.tensors[1].tolist())) == 4


def test_mnist_missing_folder_and_files(tmp_path: Path, mnist_folder) -> None:
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path / "absent")
    folder = mnist_folder()
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_mnist(folder)


def test_mnist_train_images_without_labels(mnist_folder) -> None:
    folder = mnist_folder()
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-labels"):
        load_mnist(folder)


def test_mnist_no_training_data_at_all(mnist_folder) -> None:
    folder = mnist_folder()
    (folder / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="no training images"):
        load_mnist(folder)


def test_mnist_label_count_and_range_mismatch(mnist_folder) -> None:
    folder = mnist_folder()
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(59, dtype=np.uint8))
    with pytest.raises(DataError, match="60 images but 59 labels"):
        load_mnist(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(60, 12, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels must be in \[0, 10\)"):
        load_mnist(folder)


def test_mnist_shape_mismatch_and_wrong_rank(mnist_folder) -> None:
    folder = mnist_folder()
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((30, 14, 14), dtype=np.uint8))
    with pytest.raises(DataError, match="test images"):
        load_mnist(folder)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((30, 784), dtype=np.uint8))
    with pytest.raises(DataError, match="expected 3"):
        load_mnist(folder)


def test_mnist_corrupt_gzip_and_bad_magic_in_folder(mnist_folder) -> None:
    folder = mnist_folder()
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz.*gzip"):
        load_mnist(folder)
    path.write_bytes(gzip.compress(b"\x08\x03\x00\x00" + bytes(100)))
    with pytest.raises(DataError, match="bad IDX magic"):
        load_mnist(folder)


def test_mnist_corrupt_and_misshapen_npz(mnist_folder) -> None:
    folder = mnist_folder()
    (folder / "train-images-idx3-ubyte.gz").unlink()
    bad = folder / "train_10k.npz"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match=r"train_10k\.npz"):
        load_mnist(folder)
    np.savez(bad, images=np.zeros((4, 28 * 28), dtype=np.uint8), labels=np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        load_mnist(folder)
    np.savez(bad, images=np.zeros((4, 28, 28), dtype=np.uint8), labels=np.zeros(3, dtype=np.uint8))
    with pytest.raises(DataError, match="4 images but 3 labels"):
        load_mnist(folder)


# ---------------------------------------------------------------- the shared MNIST folder


@pytest.mark.shared_data
def test_mnist_from_shared_folder(shared_data, check_splits) -> None:
    folder = shared_data("mnist")
    ds = load_mnist(folder)
    check_splits(ds, num_classes=10, input_shape=(1, 28, 28), disjoint=False)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (9000, 1000, 10000)
    assert np.bincount(ds.val.tensors[1].numpy(), minlength=10).min() >= 80  # stratified despite sorted npz
    x = ds.train.tensors[0]
    assert abs(x.mean().item()) < 1e-3 and abs(x.std().item() - 1) < 1e-3
    assert 0.12 < ds.mean[0] < 0.14 and 0.30 < ds.std[0] < 0.32  # the well-known MNIST statistics
    # The npz's labels agree with the official train labels as a multiset (the npz is class-sorted).
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    together = torch.cat([ds.train.tensors[1], ds.val.tensors[1]]).numpy()
    assert np.array_equal(np.bincount(together, minlength=10), np.bincount(labels[:10000], minlength=10))
    assert load_dataset("mnist", folder, max_train=500, max_test=100).summary()["sizes"]["test"] == 100


# ---------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_from_tiny_files(mnist_folder, check_splits) -> None:
    folder = mnist_folder(name="fashion")
    ds = load_fashion_mnist(folder)
    check_splits(ds, num_classes=10, input_shape=(1, 28, 28))
    assert ds.name == "fashion-mnist"
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.classes == list(FASHION_MNIST_CLASSES)
    assert load_dataset("fashion_mnist", folder).name == "fashion-mnist"


def test_fashion_mnist_missing_default_folder_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(mnist_module, "FASHION_MNIST_DEFAULT_PATH", tmp_path / "absent")
    with pytest.raises(DataError) as info:
        load_fashion_mnist()
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message and "--data PATH" in message
    assert "train-images-idx3-ubyte" in message


@pytest.mark.skipif(
    not (FASHION_MNIST_DEFAULT_PATH / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_DEFAULT_PATH} (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_debian_package() -> None:
    ds = load_fashion_mnist()
    assert (len(ds.train), len(ds.val), len(ds.test)) == (54000, 6000, 10000)
    assert ds.input_shape == (1, 28, 28) and ds.classes == list(FASHION_MNIST_CLASSES)
    assert np.array_equal(np.bincount(ds.test.tensors[1].numpy()), [1000] * 10)
    assert np.array_equal(np.bincount(ds.val.tensors[1].numpy()), [600] * 10)
    assert 0.28 < ds.mean[0] < 0.29 and 0.35 < ds.std[0] < 0.36
