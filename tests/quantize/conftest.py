"""Small trained models shared by the quantization tests (trained once per session, a few seconds)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from tenfold.data import load_digits
from tenfold.models import create
from tenfold.train import TrainConfig, fit


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Small models train ~50x faster on one thread than on two contended ones (OpenMP spin-waits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits_flat():
    return load_digits(seed=0, flatten=True)


@pytest.fixture(scope="session")
def digits_images():
    return load_digits(seed=0)


@pytest.fixture(scope="session")
def trained_mlp(digits_flat):
    """The hls4ml jet-tagger MLP (64-64-32-32-10) trained on flat digits."""
    torch.manual_seed(0)
    model = create("jet_mlp", in_features=64, num_classes=10)
    fit(model, digits_flat.train, digits_flat.val, TrainConfig(epochs=8, lr=3e-3, seed=0), progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def trained_cnn(digits_images):
    """A small CNN on 8×8 digits: conv-relu-pool-conv-relu-pool-flatten-dense."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 6, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(6, 8, 3, padding=1), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(), fc=nn.Linear(32, 10),
    ))
    fit(model, digits_images.train, digits_images.val, TrainConfig(epochs=6, lr=5e-3, seed=0), progress=False)
    return model.eval()
