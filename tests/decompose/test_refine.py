"""Data-aware refinement: decomposed layers move towards the original layers' outputs, factors stay on grid."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tenfold.decompose import decompose_model, refine_factors, requantize_
from tenfold.errors import ConfigError, ModelError


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
                         nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 4))


def images(n: int = 96) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=generator), torch.zeros(n, dtype=torch.long))


@pytest.mark.parametrize("form", ["reconstructed", "factorized"])
def test_refinement_lowers_every_layer_error_and_the_model_output_error(form):
    original = net().eval()
    decomposed, _ = decompose_model(original, {"0": 2, "3": 3, "7": 1}, method="cp", precision="fixed<6,1>",
                                    form=form, layers=["0", "3", "7"], skip=())
    x = images().tensors[0][:32]
    with torch.no_grad():
        before = float((decomposed.eval()(x) - original(x)).pow(2).mean())
    report = refine_factors(original, decomposed, images(), batches=2, batch_size=32, steps=150, lr=3e-3)
    assert set(report.error_after) == {"0", "3", "7"}
    assert all(report.error_after[k] < report.error_before[k] for k in report.error_after)
    with torch.no_grad():
        after = float((decomposed(x) - original(x)).pow(2).mean())
        snapped = decomposed(x).clone()
        requantize_(decomposed)
        assert torch.equal(decomposed(x), snapped)  # factors already on their grid
    assert after < 0.7 * before
    assert not decomposed.training  # eval mode restored (it was eval before)


def test_original_model_is_not_changed():
    original = net().eval()
    state = {k: v.clone() for k, v in original.state_dict().items()}
    decomposed, _ = decompose_model(original, {"3": 2}, method="cp3", precision="fixed<8,1>", layers=["3"], skip=())
    refine_factors(original, decomposed, images(), batches=1, steps=5)
    assert all(torch.equal(state[k], v) for k, v in original.state_dict().items())


def test_bad_arguments_are_clear_errors():
    original = net()
    decomposed, _ = decompose_model(original, {"3": 2}, method="cp", precision="fixed<8,1>", layers=["3"], skip=())
    with pytest.raises(ConfigError, match="steps"):
        refine_factors(original, decomposed, images(), steps=0)
    with pytest.raises(ModelError, match="not in the"):
        refine_factors(original, decomposed, images(), layers=["nope"])


def test_settle_refines_or_recalibrates_or_leaves_alone():
    from tenfold.decompose import settle_decomposed

    original = net().eval()
    decomposed, _ = decompose_model(original, {"3": 2}, method="cp", precision="fixed<8,1>", layers=["3"], skip=())
    state = {k: v.clone() for k, v in decomposed.state_dict().items()}
    assert settle_decomposed(original, decomposed, images(), refine_steps=0, bn_batches=0) == "unchanged"
    assert all(torch.equal(state[k], v) for k, v in decomposed.state_dict().items())
    assert settle_decomposed(original, decomposed, images(), refine_steps=0, bn_batches=1) == "BN recalibrated"
    assert not torch.equal(state["1.running_mean"], decomposed.state_dict()["1.running_mean"])
    assert settle_decomposed(original, decomposed, images(), refine_steps=5) == "refined"
