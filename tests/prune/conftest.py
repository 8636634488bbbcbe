"""Shared fixtures of the pruning tests."""

from __future__ import annotations

import pytest
import torch

from tenfold.data import load_digits
from tenfold.models import create
from tenfold.train import TrainConfig, fit


@pytest.fixture(scope="session")
def trained_digits_mlp():
    """The jet-tagger MLP architecture trained on scikit-learn digits (flattened 8x8), with its splits.

    Session-scoped and shared: tests must not modify it (the pruner never touches its input; copy otherwise).
    """
    splits = load_digits(seed=0, flatten=True)
    torch.manual_seed(0)
    model = create("jet_mlp", in_features=64, num_classes=10)
    fit(model, splits.train, splits.val, TrainConfig(epochs=25, lr=3e-3, seed=0), progress=False)
    return model, splits
