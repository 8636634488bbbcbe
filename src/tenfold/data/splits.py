"""The common result type and the split/normalise helpers every loader shares.

Keeping the splitting and normalisation in one place means every dataset gets the same guarantees:
splits are stratified and seeded (same seed, same split), validation is carved from training data
only, and normalisation statistics come from the training split alone so nothing leaks from the
validation or test sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from tenfold.errors import DataError

__all__ = [
    "DataSplits",
    "channel_stats",
    "check_fraction",
    "check_labels",
    "make_splits",
    "stratified_partition",
]


@dataclass
class DataSplits:
    """Train/validation/test tensors plus what a model builder needs to know about them.

    ``mean``/``std`` record the normalisation already applied (per channel for images, per feature
    for tabular data), so an exporter or a deployed model can reproduce the input pipeline.
    """

    name: str
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    classes: list[str]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes, i.e. the width of the classifier's output layer."""
        return len(self.classes)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable description for logs and reports (sizes, shape, classes, normalisation)."""
        return {
            "name": self.name,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "input_shape": [int(d) for d in self.input_shape],
            "num_classes": self.num_classes,
            "classes": [str(c) for c in self.classes],
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
        }


def check_fraction(name: str, value: float, *, allow_zero: bool = True) -> float:
    """Reject fractions outside [0, 1) early, with the argument's name, instead of an odd empty split."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a number in [0, 1), got {value!r}") from exc
    low_ok = v >= 0.0 if allow_zero else v > 0.0
    if not (low_ok and v < 1.0):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise DataError(f"{name} must be in {bound}, got {value!r}")
    return v


def check_labels(labels: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    """Labels as int64 in [0, num_classes); a label outside that range means a wrong or corrupt file."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"{source}: labels must be 1-D, got shape {tuple(y.shape)}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise DataError(f"{source}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(
            f"{source}: labels must be in [0, {num_classes}), found values from {int(y.min())} to {int(y.max())}"
        )
    return y


def stratified_partition(
    labels: np.ndarray, n_take: int, seed: int | np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (taken, rest) with each class represented in proportion, reproducibly.

    Written here rather than with scikit-learn because it never refuses small or unbalanced inputs
    (a class with one sample, fewer taken samples than classes): tiny quick-run subsets must work.
    Each class gets floor(share) samples and the leftover goes to the largest fractional shares.
    Both index arrays are returned sorted, so the original order of the data is kept.
    """
    y = np.asarray(labels)
    n = len(y)
    n_take = int(n_take)
    if not 0 <= n_take <= n:
        raise DataError(f"cannot take {n_take} samples from {n}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if n_take == 0 or n_take == n:
        idx = np.arange(n)
        return (idx, idx[:0]) if n_take == n else (idx[:0], idx)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = counts * (n_take / n)
    alloc = np.floor(exact).astype(np.int64)
    leftover = n_take - int(alloc.sum())
    if leftover > 0:
        frac = exact - alloc
        tie = rng.random(len(classes))
        order = np.lexsort((tie, -frac))  # largest fractional part first, random among equals
        order = [c for c in order if alloc[c] < counts[c]]
        for c in order[:leftover]:
            alloc[c] += 1
    taken = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        taken.append(rng.permutation(members)[: alloc[c]])
    take = np.sort(np.concatenate(taken))
    mask = np.ones(n, dtype=bool)
    mask[take] = False
    return take, np.flatnonzero(mask)


def fraction_count(n: int, fraction: float) -> int:
    """round(n * fraction), but at least one sample when the fraction is non-zero and n allows it."""
    if fraction <= 0 or n <= 1:
        return 0
    return min(max(1, round(n * fraction)), n - 1)


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over everything but axis 1 (channels of NCHW images, features of (N, F) tables).

    Accumulates in float64 one channel at a time, so a 50,000-image CIFAR split needs no float64 copy.
    A constant channel gets std 1 so that normalising it never divides by zero.
    """
    if len(x) == 0:
        raise DataError("cannot compute normalisation statistics on an empty training split")
    channels = x.shape[1]
    mean = np.empty(channels, dtype=np.float64)
    std = np.empty(channels, dtype=np.float64)
    for c in range(channels):
        col = x[:, c]
        mean[c] = col.mean(dtype=np.float64)
        std[c] = col.std(dtype=np.float64)
    std[~np.isfinite(std) | (std < 1e-12)] = 1.0
    return mean, std


def normalise(x: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(x - mean) / std broadcast along axis 1, returned as float32."""
    shape = (1, len(mean)) + (1,) * (x.ndim - 2)
    m = np.asarray(mean, dtype=np.float32).reshape(shape)
    s = np.asarray(std, dtype=np.float32).reshape(shape)
    return ((x.astype(np.float32, copy=False) - m) / s).astype(np.float32, copy=False)


def _tensors(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def make_splits(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    classes: Sequence[str],
    *,
    val_fraction: float,
    seed: int,
    normalize: str | tuple[Sequence[float], Sequence[float]] | None = "dataset",
    flatten: bool = False,
) -> DataSplits:
    """Carve a stratified validation split from training data, normalise, and wrap as tensors.

    ``x_*`` are float arrays already scaled to [0, 1] (images, N x C x H x W) or raw features (N x F).
    ``normalize`` is "dataset" (train-split statistics), an explicit ``(mean, std)`` pair, or None.
    Statistics are computed after the validation split is removed, so validation data never leaks
    into them. ``flatten`` reshapes each sample to 1-D after normalising per channel.
    """
    val_fraction = check_fraction("val_fraction", val_fraction)
    n_val = fraction_count(len(y_train), val_fraction)
    val_idx, train_idx = stratified_partition(y_train, n_val, seed)
    x_val, y_val = x_train[val_idx], y_train[val_idx]
    x_tr, y_tr = x_train[train_idx], y_train[train_idx]

    channels = x_tr.shape[1]
    if normalize is None:
        mean, std = np.zeros(channels), np.ones(channels)
    elif isinstance(normalize, str):
        if normalize != "dataset":
            raise DataError(f"normalize must be 'dataset', a (mean, std) pair or None, got {normalize!r}")
        mean, std = channel_stats(x_tr)
    else:
        mean, std = (np.asarray(v, dtype=np.float64) for v in normalize)
        if mean.shape != (channels,) or std.shape != (channels,):
            raise DataError(f"normalisation mean/std must have {channels} values each")

    arrays = []
    for x in (x_tr, x_val, x_test):
        out = normalise(x, mean, std) if normalize is not None else x.astype(np.float32, copy=False)
        arrays.append(out.reshape(len(out), -1) if flatten else out)
    input_shape = tuple(int(d) for d in arrays[0].shape[1:])
    return DataSplits(
        name=name,
        train=_tensors(arrays[0], y_tr),
        val=_tensors(arrays[1], y_val),
        test=_tensors(arrays[2], y_test),
        classes=[str(c) for c in classes],
        input_shape=input_shape,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )


def subsample(x: np.ndarray, y: np.ndarray, limit: int | None, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``limit`` samples, stratified and seeded, for quick runs; None keeps everything."""
    if limit is None:
        return x, y
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
        raise DataError(f"{what} must be a positive integer or None, got {limit!r}")
    if limit >= len(y):
        return x, y
    take, _ = stratified_partition(y, int(limit), seed)
    return x[take], y[take]
