"""tenfold's weight order must be hls4ml's: a multiplier's pattern is only right if the layout is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tenfold.hardware.layers import extract_layers

hls4ml = pytest.importorskip("hls4ml")


def hls4ml_resource_weights(model: nn.Module, input_shape: tuple[int, ...], tmp_path) -> dict[str, np.ndarray]:
    """Convert with hls4ml (no compilation) under the Resource strategy and read back its weight arrays."""
    config = hls4ml.utils.config_from_pytorch_model(model, input_shape, granularity="name", default_reuse_factor=2)
    config["Model"]["Strategy"] = "Resource"
    for section in config["LayerName"].values():
        section["Strategy"] = "Resource"
    converted = hls4ml.converters.convert_from_pytorch_model(
        model, hls_config=config, output_dir=str(tmp_path / "prj"), backend="Vitis", io_type="io_parallel"
    )
    return {layer.name.lstrip("_"): layer.weights["weight"].data for layer in converted.get_layers()
            if "weight" in layer.weights}


@pytest.mark.parametrize(
    ("model", "input_shape"),
    [
        (nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 5)), (16,)),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5)), (3, 6, 6)),
        (nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3)), (2, 8)),
    ],
)
def test_weight_matrix_matches_hls4ml_resource_layout(model, input_shape, tmp_path):
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            nn.init.normal_(module.weight)
    theirs = hls4ml_resource_weights(model, input_shape, tmp_path)
    specs = {spec.name: spec for spec in extract_layers(model, input_shape) if spec.has_weights}
    assert set(theirs) == set(specs)
    for name, spec in specs.items():
        ours = spec.weight_matrix().numpy().reshape(-1)
        assert np.array_equal(ours, theirs[name].reshape(-1).astype(ours.dtype)), name
        torch_flat = spec.weight.numpy().reshape(-1)
        assert np.array_equal(torch_flat[spec.hls_order().numpy()], ours), name
