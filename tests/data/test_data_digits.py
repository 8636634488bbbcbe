"""scikit-learn's digits: the always-available image dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from tenfold.data import load_dataset, load_digits
from tenfold.errors import DataError


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_shapes_sizes_and_classes(digits, check_splits) -> None:
    # sklearn's digits contain a few duplicate images, so disjointness is checked by partition below.
    check_splits(digits, num_classes=10, input_shape=(1, 8, 8), disjoint=False)
    assert digits.name == "digits"
    assert digits.classes == [str(d) for d in range(10)]
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797
    assert len(digits.test) == round(0.2 * 1797)
    assert len(digits.val) == round(0.1 * 1797)


def test_digits_normalised_with_train_stats(digits) -> None:
    x = digits.train.tensors[0]
    assert abs(x.mean().item()) < 1e-4
    assert abs(x.std(unbiased=False).item() - 1.0) < 1e-4
    assert len(digits.mean) == len(digits.std) == 1
    assert 0.0 < digits.mean[0] < 1.0  # stats are of pixels already scaled to [0, 1]


def test_digits_splits_partition_the_dataset_stratified(digits) -> None:
    raw = sk_load_digits()
    scaled = raw.images.reshape(len(raw.images), -1) / 16.0
    parts = []
    for split in (digits.train, digits.val, digits.test):
        x = split.tensors[0].numpy().reshape(len(split), -1) * digits.std[0] + digits.mean[0]
        parts.append(np.round(x * 16).astype(int))
    together = np.concatenate(parts)
    original = np.round(scaled * 16).astype(int)
    assert sorted(map(bytes, together.astype(np.int8))) == sorted(map(bytes, original.astype(np.int8)))
    overall = np.bincount(raw.target, minlength=10) / len(raw.target)
    for split in (digits.train, digits.val, digits.test):
        share = np.bincount(split.tensors[1].numpy(), minlength=10) / len(split)
        assert np.abs(share - overall).max() < 0.02


def test_digits_flatten_and_seeds() -> None:
    flat = load_digits(flatten=True)
    assert flat.input_shape == (64,) and flat.train.tensors[0].shape[1:] == (64,)
    assert len(flat.mean) == 1  # still per-channel image statistics
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0]) and torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.test.tensors[0], c.test.tensors[0])
    assert load_dataset("digits", flatten=True).input_shape == (64,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_fraction": -0.1},
        {"test_fraction": 0.0},
        {"test_fraction": 1.2},
        {"val_fraction": 0.5, "test_fraction": 0.6},
    ],
)
def test_digits_rejects_bad_fractions(kwargs) -> None:
    with pytest.raises(DataError):
        load_digits(**kwargs)


def test_digits_without_validation() -> None:
    ds = load_digits(val_fraction=0.0)
    assert len(ds.val) == 0 and ds.val.tensors[0].shape[1:] == (1, 8, 8)
