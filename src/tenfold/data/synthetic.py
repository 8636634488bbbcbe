"""Seeded, learnable synthetic data of any shape: for tests and benchmarks that need no files.

Each class has a random centre; samples are the centre plus unit Gaussian noise, so a small model
can learn it (accuracy well above chance) while nothing depends on downloaded data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tenfold.data.splits import DataSplits, check_fraction, fraction_count, make_splits, stratified_partition
from tenfold.errors import DataError

__all__ = ["make_synthetic"]


def make_synthetic(
    n_samples: int = 1000,
    input_shape: Sequence[int] = (16,),
    num_classes: int = 5,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    separation: float = 1.0,
) -> DataSplits:
    """Gaussian class clusters reshaped to ``input_shape``; classes are balanced and named class0...

    ``separation`` scales the distance between class centres relative to the unit noise. The data
    are standardised with training-split stats: per channel when ``input_shape`` has 2+ dimensions
    (C, ...), per feature when it is 1-D.
    """
    shape = tuple(int(d) for d in input_shape) if not isinstance(input_shape, int) else (int(input_shape),)
    if not shape or any(d < 1 for d in shape):
        raise DataError(f"input_shape must be a non-empty tuple of positive sizes, got {input_shape!r}")
    if isinstance(num_classes, bool) or int(num_classes) < 2:
        raise DataError(f"num_classes must be at least 2, got {num_classes!r}")
    num_classes = int(num_classes)
    if int(n_samples) < 3 * num_classes:
        raise DataError(f"n_samples must be at least 3 * num_classes = {3 * num_classes}, got {n_samples!r}")
    n_samples = int(n_samples)
    val_fraction = check_fraction("val_fraction", val_fraction)
    test_fraction = check_fraction("test_fraction", test_fraction, allow_zero=False)
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")

    rng = np.random.default_rng([seed, 7])
    dim = int(np.prod(shape))
    centres = rng.normal(0.0, float(separation), size=(num_classes, dim)).astype(np.float32)
    y = rng.permutation(np.arange(n_samples) % num_classes).astype(np.int64)
    x = centres[y] + rng.normal(0.0, 1.0, size=(n_samples, dim)).astype(np.float32)
    x = x.reshape((n_samples, *shape))

    test_idx, pool_idx = stratified_partition(
        y, fraction_count(n_samples, test_fraction), np.random.default_rng([seed, 0])
    )
    return make_splits(
        "synthetic",
        x[pool_idx],
        y[pool_idx],
        x[test_idx],
        y[test_idx],
        [f"class{i}" for i in range(num_classes)],
        val_fraction=val_fraction / (1.0 - test_fraction),
        seed=seed,
        normalize="dataset",
    )
