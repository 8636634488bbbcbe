"""hls4ml export: the C simulation (compiled with g++) must equal tenfold's bit-exact emulation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from tenfold.data import load_digits
from tenfold.export import ExportError, check_bit_exact, export_hls4ml, hls4ml_config
from tenfold.hardware import make_config
from tenfold.models import create
from tenfold.train import TrainConfig, fit

pytest.importorskip("hls4ml")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed to compile hls4ml's C simulation")


@pytest.fixture(scope="module")
def digits():
    return load_digits(seed=0, flatten=True), load_digits(seed=0)


@pytest.fixture(scope="module")
def trained_mlp(digits):
    flat, _ = digits
    torch.manual_seed(0)
    model = create("jet_mlp", in_features=64, num_classes=10)
    fit(model, flat.train, flat.val, TrainConfig(epochs=8, lr=3e-3), progress=False)
    return model.eval()


@needs_gxx
@pytest.mark.parametrize(
    "options",
    [
        {"precision": "fixed<16,6>"},
        {"precision": "fixed<10,4>"},  # narrow accumulator: products and sums wrap
        {"precision": "fixed<16,6>", "strategy": "Resource", "reuse_factor": 4},
    ],
)
def test_mlp_c_simulation_is_bit_exact(trained_mlp, digits, tmp_path, options):
    flat, _ = digits
    config = make_config(**options)
    project, quantized = export_hls4ml(trained_mlp, config, (64,), tmp_path / "prj")
    report = check_bit_exact(project, quantized, config, flat.test.tensors[0][:300])
    assert report.samples == 300
    assert report.bit_exact, report


@needs_gxx
def test_pruned_cnn_c_simulation_is_bit_exact(digits, tmp_path):
    from tenfold.prune import apply_masks, build_structures, structure_masks

    _, images = digits
    torch.manual_seed(0)
    model = create("lenet", in_channels=1, image_size=8, num_classes=10)
    fit(model, images.train, images.val, TrainConfig(epochs=3, lr=3e-3), progress=False)
    config = make_config(precision="fixed<14,5>")
    structures = build_structures(model, (1, 8, 8), config, "weight")
    keep = np.random.default_rng(0).random(structures.n_items) > 0.5
    apply_masks(model, structure_masks(structures, keep.astype(float), model))
    project, quantized = export_hls4ml(model.eval(), config, (1, 8, 8), tmp_path / "prj")
    report = check_bit_exact(project, quantized, config, images.test.tensors[0][:200])
    assert report.bit_exact, report


def test_config_is_explicit_for_every_layer(trained_mlp):
    config = make_config(precision="fixed<12,4>", strategy="Resource", reuse_factor=8)
    generated = hls4ml_config(trained_mlp, config, (64,))
    assert generated["Model"]["ChannelsLastConversion"] == "full"
    fc1 = generated["LayerName"]["fc1"]
    assert fc1["ReuseFactor"] == 8 and fc1["Strategy"] == "Resource"
    assert set(fc1["Precision"]) == {"weight", "bias", "accum", "result"}
    assert generated["LayerName"]["relu1"]["Precision"]["result"] == "fixed<12,4>"


def test_unsupported_layer_and_missing_compiler(trained_mlp, tmp_path, monkeypatch):
    class WithLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.rnn = nn.LSTM(4, 4)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ExportError, match=r"'rnn' \(LSTM\)"):
        export_hls4ml(WithLSTM(), make_config(), (4,), tmp_path / "a", compile=False)
    project, _ = export_hls4ml(trained_mlp, make_config(), (64,), tmp_path / "b", compile=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ExportError, match="g\\+\\+"):
        project.compile()


@needs_gxx
def test_mlp_on_image_inputs_is_bit_exact(digits, tmp_path):
    _, images = digits
    torch.manual_seed(0)
    model = create("jet_mlp", in_features=64, num_classes=10, flatten=True)
    fit(model, images.train, images.val, TrainConfig(epochs=3, lr=3e-3), progress=False)
    config = make_config()
    project, quantized = export_hls4ml(model.eval(), config, (1, 8, 8), tmp_path / "prj")
    assert project.input_shape == (64,)  # the leading Flatten runs before the chip
    assert check_bit_exact(project, quantized, config, images.test.tensors[0][:200]).bit_exact


@needs_gxx
def test_mixed_result_types_stay_bit_exact_through_inserted_layers(digits, tmp_path):
    """hls4ml types the flatten/transpose layers it inserts with the model default; tenfold makes that lossless."""
    import dataclasses

    from tenfold.hardware import FixedPoint

    _, images = digits
    torch.manual_seed(0)
    model = create("lenet", in_channels=1, image_size=8, num_classes=10).eval()
    config = make_config(precision="fixed<16,6,RND,SAT>")
    narrow_input = dataclasses.replace(config.default.precision, result=FixedPoint.parse("fixed<5,3,RND,SAT>"))
    config = dataclasses.replace(config, default=dataclasses.replace(config.default, precision=narrow_input))
    for name in ("relu2", "pool2"):  # wider than the model default: a lossy inserted flatten would round them
        wide = dataclasses.replace(config.layer(name).precision, result=FixedPoint.parse("fixed<12,6,RND,SAT>"))
        config = config.with_layer(name, precision=wide)
    assert hls4ml_config(model, config, (1, 8, 8))["Model"]["Precision"]["default"] == "fixed<12,6>"
    project, quantized = export_hls4ml(model, config, (1, 8, 8), tmp_path / "prj")
    report = check_bit_exact(project, quantized, config, images.test.tensors[0][:100])
    assert report.bit_exact, report
