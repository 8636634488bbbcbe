"""CIFAR-10 (npz and python pickles) and CIFAR-100 (fine and coarse)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tenfold.data import (
    CIFAR10_CLASSES,
    CIFAR_PRETRAINED_MEAN,
    CIFAR_PRETRAINED_STD,
    load_cifar10,
    load_cifar100,
    load_dataset,
)
from tenfold.errors import DataError

# ---------------------------------------------------------------- shared npz layout


@pytest.mark.shared_data
def test_cifar10_npz_from_shared_folder(shared_data, check_splits) -> None:
    folder = shared_data("cifar10-jpeg")
    ds = load_cifar10(folder, max_train=1000, max_test=200)
    check_splits(ds, num_classes=10, input_shape=(3, 32, 32))
    assert ds.classes == list(CIFAR10_CLASSES)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (900, 100, 200)
    assert np.array_equal(np.bincount(ds.test.tensors[1].numpy()), [20] * 10)
    assert np.array_equal(np.bincount(ds.val.tensors[1].numpy()), [10] * 10)
    assert ds.mean == CIFAR_PRETRAINED_MEAN and ds.std == CIFAR_PRETRAINED_STD
    # pretrained normalisation maps [0, 1] to [-mean/std, (1-mean)/std] per channel
    x = ds.train.tensors[0]
    low = -torch.tensor(CIFAR_PRETRAINED_MEAN) / torch.tensor(CIFAR_PRETRAINED_STD)
    assert torch.all(x.amin(dim=(0, 2, 3)) >= low - 1e-5)


@pytest.mark.shared_data
def test_cifar10_npz_dataset_stats_and_raw(shared_data) -> None:
    folder = shared_data("cifar10-jpeg")
    ds = load_cifar10(folder, normalize="dataset", max_train=1000, max_test=100)
    x = ds.train.tensors[0]
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert all(0.4 < m < 0.55 for m in ds.mean)
    raw = load_cifar10(folder, normalize=None, max_train=200, max_test=100, seed=1)
    assert raw.mean == (0.0, 0.0, 0.0) and raw.std == (1.0, 1.0, 1.0)
    assert raw.train.tensors[0].min().item() >= 0.0 and raw.train.tensors[0].max().item() <= 1.0
    again = load_dataset("cifar-10", folder, normalize=None, max_train=200, max_test=100, seed=1)
    assert torch.equal(raw.val.tensors[0], again.val.tensors[0])


# ---------------------------------------------------------------- tiny npz layout


def _write_npz_folder(folder: Path, n_train: int = 40, n_test: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("train_small.npz", n_train), ("test.npz", n_test)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        np.savez(folder / name, images=images, labels=np.arange(n) % 10, classes=np.array(CIFAR10_CLASSES))
    return folder


def test_cifar10_npz_layout_is_nhwc_to_nchw(tmp_path: Path) -> None:
    folder = _write_npz_folder(tmp_path / "c10")
    with np.load(folder / "test.npz") as z:
        images = z["images"]
    ds = load_cifar10(folder, normalize=None, val_fraction=0.0)
    assert ds.input_shape == (3, 32, 32)
    assert torch.allclose(ds.test.tensors[0], torch.from_numpy(images.transpose(0, 3, 1, 2) / 255.0).float())


def test_cifar10_npz_bad_shapes_and_corruption(tmp_path: Path) -> None:
    folder = _write_npz_folder(tmp_path / "c10")
    np.savez(folder / "test.npz", images=np.zeros((5, 3, 32, 32), dtype=np.uint8), labels=np.zeros(5))
    with pytest.raises(DataError, match=r"test\.npz.*\(N, 32, 32, 3\)"):
        load_cifar10(folder)
    np.savez(folder / "test.npz", images=np.zeros((5, 32, 32, 3), dtype=np.uint8), labels=np.zeros(4))
    with pytest.raises(DataError, match=r"test\.npz.*'labels' must be \(N,\)"):
        load_cifar10(folder)
    np.savez(folder / "test.npz", pictures=np.zeros((5, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="missing array"):
        load_cifar10(folder)
    (folder / "test.npz").write_bytes(b"garbage, not a zip")
    with pytest.raises(DataError, match=r"test\.npz"):
        load_cifar10(folder)
    (folder / "test.npz").unlink()
    with pytest.raises(DataError, match="needs both"):
        load_cifar10(folder)


def test_cifar10_npz_labels_out_of_range(tmp_path: Path) -> None:
    folder = _write_npz_folder(tmp_path / "c10")
    np.savez(folder / "test.npz", images=np.zeros((3, 32, 32, 3), dtype=np.uint8), labels=np.array([0, 1, 10]))
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        load_cifar10(folder)


# ---------------------------------------------------------------- cifar-10-batches-py


def test_cifar10_pickles_folder_and_parent(cifar10_pickles: Path, check_splits) -> None:
    ds = load_cifar10(cifar10_pickles, normalize="dataset")
    check_splits(ds, num_classes=10, input_shape=(3, 32, 32))
    assert ds.classes == list(CIFAR10_CLASSES)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 20)
    x = ds.train.tensors[0]
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    parent = load_cifar10(cifar10_pickles.parent, normalize="dataset")
    assert torch.equal(parent.train.tensors[0], ds.train.tensors[0])


def test_cifar10_pickle_rows_are_chw(cifar10_pickles: Path) -> None:
    with (cifar10_pickles / "test_batch").open("rb") as f:
        batch = pickle.load(f, encoding="bytes")
    ds = load_cifar10(cifar10_pickles, normalize=None)
    expected = batch[b"data"].reshape(-1, 3, 32, 32) / 255.0
    assert torch.allclose(ds.test.tensors[0], torch.from_numpy(expected).float())
    assert ds.test.tensors[1].tolist() == batch[b"labels"]


def test_cifar10_corrupt_pickle_names_the_file(cifar10_pickles: Path) -> None:
    path = cifar10_pickles / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(cifar10_pickles)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(cifar10_pickles)


def test_cifar10_pickle_refuses_code(cifar10_pickles: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, ("/definitely/not/here",))

    with (cifar10_pickles / "test_batch").open("wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match=r"test_batch.*refusing to load shutil\.rmtree"):
        load_cifar10(cifar10_pickles)


def test_cifar10_pickle_bad_shape_and_missing_key(cifar10_pickles: Path) -> None:
    with (cifar10_pickles / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((4, 1024), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, f)
    with pytest.raises(DataError, match=r"test_batch.*\(N, 3072\)"):
        load_cifar10(cifar10_pickles)
    with (cifar10_pickles / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), dtype=np.uint8)}, f)
    with pytest.raises(DataError, match="missing key 'labels'"):
        load_cifar10(cifar10_pickles)
    with (cifar10_pickles / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((4, 3072), dtype=np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="4 images but 2 labels"):
        load_cifar10(cifar10_pickles)
    with (cifar10_pickles / "test_batch").open("wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(DataError, match="expected a pickled dict"):
        load_cifar10(cifar10_pickles)


def test_cifar10_bad_paths_and_options(tmp_path: Path, cifar10_pickles: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_cifar10(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_cifar10(empty)
    with pytest.raises(DataError, match="normalize"):
        load_cifar10(cifar10_pickles, normalize="imagenet")
    for f in cifar10_pickles.glob("data_batch_*"):
        f.unlink()
    with pytest.raises(DataError, match="data_batch"):
        load_cifar10(cifar10_pickles)


# ---------------------------------------------------------------- CIFAR-100


def test_cifar100_fine_and_coarse(cifar100_pickles: Path, check_splits) -> None:
    fine = load_cifar100(cifar100_pickles, val_fraction=0.0)
    check_splits(fine, num_classes=100, input_shape=(3, 32, 32))
    assert fine.classes[:2] == ["fine0", "fine1"] and fine.name == "cifar100"
    coarse = load_cifar100(cifar100_pickles.parent, label_mode="coarse", val_fraction=0.0)
    check_splits(coarse, num_classes=20, input_shape=(3, 32, 32))
    assert coarse.classes[-1] == "coarse19"
    assert torch.equal(coarse.train.tensors[1], fine.train.tensors[1] // 5)
    assert torch.equal(coarse.train.tensors[0], fine.train.tensors[0])
    with_val = load_dataset("cifar100", cifar100_pickles, label_mode="coarse", seed=2)
    assert (len(with_val.train), len(with_val.val), len(with_val.test)) == (180, 20, 100)
    assert np.array_equal(np.bincount(with_val.val.tensors[1].numpy()), [1] * 20)


def test_cifar100_errors(tmp_path: Path, cifar100_pickles: Path) -> None:
    with pytest.raises(DataError, match="label_mode"):
        load_cifar100(cifar100_pickles, label_mode="medium")
    with pytest.raises(DataError, match="cifar-100-python"):
        load_cifar100(tmp_path / "absent")
    (cifar100_pickles / "meta").write_bytes(b"\x80\x02not really")
    with pytest.raises(DataError, match="meta"):
        load_cifar100(cifar100_pickles)
    with (cifar100_pickles / "meta").open("wb") as f:
        pickle.dump({b"fine_label_names": [b"a"] * 100}, f)
    with pytest.raises(DataError, match="coarse_label_names"):
        load_cifar100(cifar100_pickles, label_mode="coarse")
