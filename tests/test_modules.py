"""Copies of parametrized models must not share generated classes with the original."""

from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from tenfold.decompose import decompose_model
from tenfold.hardware import make_config
from tenfold.models import create
from tenfold.modules import clone_module
from tenfold.quantize import quantize_model, to_float


def _decomposed():
    torch.manual_seed(0)
    model = create("lenet", in_channels=1, image_size=8, num_classes=10).eval()
    decomposed, _ = decompose_model(model, {"fc1": 4}, method="cp3", precision="fixed<8,1>", layers=["fc1"], skip=())
    return decomposed


def test_parametrizing_a_clone_leaves_the_original_working():
    original = _decomposed()
    x = torch.randn(3, 1, 8, 8)
    expected = original(x)
    copy = clone_module(original)
    parametrize.register_parametrization(copy.fc1, "bias", torch.nn.Identity())
    assert type(copy.fc1) is not type(original.fc1)
    assert torch.equal(original(x), expected)  # a shared class would raise KeyError: 'bias' here


def test_quantizing_a_decomposed_model_keeps_the_original():
    original = _decomposed()
    x = torch.randn(3, 1, 8, 8)
    expected = original(x)
    quantized = quantize_model(original, make_config(precision="fixed<16,6>"))
    plain = to_float(quantized)
    assert plain(x).shape == expected.shape
    assert torch.equal(original(x), expected)
