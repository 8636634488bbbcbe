"""Split helpers, DataSplits, synthetic data and the dataset registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tenfold.data import DataSplits, list_datasets, load_dataset, make_synthetic
from tenfold.data.splits import stratified_partition
from tenfold.errors import DataError, TenfoldError


def test_stratified_partition_is_a_proportional_seeded_partition() -> None:
    y = np.repeat(np.arange(4), [40, 30, 20, 10])
    take, rest = stratified_partition(y, 25, seed=3)
    assert len(take) == 25 and len(rest) == 75
    assert np.array_equal(np.sort(np.concatenate([take, rest])), np.arange(100))
    per_class = np.bincount(y[take], minlength=4)
    assert np.abs(per_class - np.array([10, 7.5, 5, 2.5])).max() <= 0.5  # floor + largest remainder
    again_take, _ = stratified_partition(y, 25, seed=3)
    other_take, _ = stratified_partition(y, 25, seed=4)
    assert np.array_equal(take, again_take)
    assert not np.array_equal(take, other_take)


def test_stratified_partition_handles_tiny_and_unbalanced_inputs() -> None:
    y = np.array([0, 1, 1, 2, 2, 2, 3])  # class 0 and 3 have a single sample
    take, rest = stratified_partition(y, 2, seed=0)
    assert len(take) == 2 and len(rest) == 5
    assert stratified_partition(y, 0, seed=0)[0].size == 0
    assert stratified_partition(y, 7, seed=0)[1].size == 0
    with pytest.raises(DataError):
        stratified_partition(y, 8, seed=0)


def test_synthetic_shapes_normalisation_and_classes(check_splits) -> None:
    ds = make_synthetic(500, (16,), 5, seed=1)
    assert isinstance(ds, DataSplits)
    check_splits(ds, num_classes=5, input_shape=(16,))
    assert ds.classes == ["class0", "class1", "class2", "class3", "class4"]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (350, 50, 100)
    x = ds.train.tensors[0]
    assert torch.allclose(x.mean(0), torch.zeros(16), atol=1e-4)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(16), atol=1e-4)
    assert len(ds.mean) == len(ds.std) == 16  # per feature for tabular data
    assert np.array_equal(np.bincount(ds.test.tensors[1].numpy()), [20] * 5)  # stratified


def test_synthetic_image_shape_uses_per_channel_stats(check_splits) -> None:
    ds = make_synthetic(300, (3, 4, 4), 3, seed=0)
    check_splits(ds, num_classes=3, input_shape=(3, 4, 4))
    assert len(ds.mean) == 3
    x = ds.train.tensors[0]
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)


def test_synthetic_is_seeded_and_learnable() -> None:
    a, b, c = make_synthetic(seed=0), make_synthetic(seed=0), make_synthetic(seed=1)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    # Nearest class centroid from the training split classifies the test split far above chance (20%).
    x, y = a.train.tensors
    centroids = torch.stack([x[y == k].mean(0) for k in range(a.num_classes)])
    xt, yt = a.test.tensors
    accuracy = (torch.cdist(xt, centroids).argmin(1) == yt).float().mean().item()
    assert accuracy > 0.8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 1},
        {"n_samples": 5},
        {"input_shape": (0, 3)},
        {"input_shape": ()},
        {"val_fraction": 1.0},
        {"test_fraction": 0.0},
        {"val_fraction": 0.5, "test_fraction": 0.5},
        {"val_fraction": "lots"},
    ],
)
def test_synthetic_rejects_bad_arguments(kwargs) -> None:
    with pytest.raises(DataError):
        make_synthetic(**kwargs)


def test_registry_lists_and_dispatches(jets_csv) -> None:
    names = list_datasets()
    assert names == ["digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "jets", "synthetic"]
    ds = load_dataset("synthetic", n_samples=100, num_classes=2)
    assert ds.name == "synthetic" and ds.num_classes == 2
    jets = load_dataset("LHC-Jets", jets_csv())
    assert jets.name == "jets" and jets.input_shape == (16,)


def test_registry_unknown_name_lists_known_ones() -> None:
    with pytest.raises(DataError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    for name in list_datasets():
        assert name in message
    assert isinstance(info.value, TenfoldError)


def test_registry_rejects_bad_options_and_paths() -> None:
    with pytest.raises(DataError, match="bad option"):
        load_dataset("synthetic", colour="blue")
    with pytest.raises(DataError, match="takes no path"):
        load_dataset("digits", "/some/where")
    with pytest.raises(DataError, match="no data path"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="no data path"):
        load_dataset("cifar10")
    with pytest.raises(DataError, match="no data path"):
        load_dataset("cifar100")
