"""QAT on a fake-quantized copy, trained weights written back into the masked / decomposed source model."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tenfold.decompose import decompose_model
from tenfold.errors import ModelError
from tenfold.hardware import make_config
from tenfold.prune import apply_masks
from tenfold.quantize import copy_trained_weights, quantize_model
from tenfold.train import TrainConfig, fit


def data() -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 12, generator=generator)
    return TensorDataset(x, (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long())


def source_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(),
                          nn.Linear(16, 3))
    apply_masks(model, {"0": (torch.rand(16, 12, generator=torch.Generator().manual_seed(1)) > 0.5).float()})
    model, _ = decompose_model(model, {"2": 4}, method="cp", precision="fixed<8,1>", layers=["2"], skip=())
    return model


def test_trained_weights_land_in_the_source_model_and_masks_hold():
    model = source_model()
    hls = make_config(precision="fixed<10,4>")
    quantized = quantize_model(model, hls)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fit(quantized, data(), None, TrainConfig(epochs=2, lr=1e-2), progress=False)
    quantized.eval()
    copy_trained_weights(quantized, model)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("0.weight_orig") for k in changed)  # the masked layer
    assert any(k.startswith("2.parametrizations.weight.original") for k in changed)  # the factors
    assert "3.running_mean" in changed and "5.weight" in changed
    mask = model[0].weight_mask
    assert torch.all(model[0].weight_orig[mask == 0] == 0) and torch.all(model[0].weight[mask == 0] == 0)
    x = data().tensors[0][:64]
    model.eval()
    assert torch.equal(quantize_model(model, hls).eval()(x), quantized(x))  # same function as what was trained


def test_a_foreign_quantized_model_is_refused():
    other = quantize_model(nn.Sequential(nn.Linear(12, 5)), make_config())
    with pytest.raises(ModelError, match="cannot place"):
        copy_trained_weights(other, source_model())
