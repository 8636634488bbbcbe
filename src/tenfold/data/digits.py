"""scikit-learn's 8x8 digits: the one real image dataset that is always available offline.

It ships inside scikit-learn, so it is the default for smoke tests, examples and CI runs that must
not depend on downloaded files.
"""

from __future__ import annotations

import numpy as np

from tenfold.data.splits import DataSplits, check_fraction, fraction_count, make_splits, stratified_partition
from tenfold.errors import DataError

__all__ = ["DIGITS_CLASSES", "load_digits"]

DIGITS_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))


def load_digits(
    *, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0, flatten: bool = False
) -> DataSplits:
    """The 1,797 sklearn digits as (N, 1, 8, 8) float32 images (or (N, 64) with ``flatten``).

    Pixel values 0..16 are scaled to [0, 1] and then normalised with the training split's mean/std.
    The test split is drawn from all the data, then validation from the rest; both stratified and
    seeded. ``val_fraction`` and ``test_fraction`` are fractions of the whole dataset.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    val_fraction = check_fraction("val_fraction", val_fraction)
    test_fraction = check_fraction("test_fraction", test_fraction, allow_zero=False)
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    bunch = sk_load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None]  # (N, 1, 8, 8)
    y = np.asarray(bunch.target, dtype=np.int64)
    n = len(y)
    test_idx, pool_idx = stratified_partition(y, fraction_count(n, test_fraction), np.random.default_rng([seed, 0]))
    # val_fraction is of the whole dataset; make_splits applies it to the remaining pool.
    pool_val_fraction = val_fraction / (1.0 - test_fraction)
    return make_splits(
        "digits",
        x[pool_idx],
        y[pool_idx],
        x[test_idx],
        y[test_idx],
        DIGITS_CLASSES,
        val_fraction=pool_val_fraction,
        seed=seed,
        normalize="dataset",
        flatten=flatten,
    )
