"""The cost model: what hls4ml's implementation makes each weight, pattern and layer cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.arith import bram18_for_rom, csd_digit_counts, dsps_per_product
from tenfold.hardware.cost import multiplier_patterns
from tenfold.hardware.estimate import estimate, make_config
from tenfold.hardware.layers import extract_layers


def reference_csd(k: int) -> int:
    k, digits = abs(int(k)), 0
    while k:
        if k & 1:
            digits += 1
            k = k + 1 if (k & 3) == 3 else k - 1
        k >>= 1
    return digits


def test_csd_digits_match_the_textbook_algorithm():
    codes = np.random.default_rng(0).integers(-(2**40), 2**40, 20000)
    assert np.array_equal(csd_digit_counts(codes), [reference_csd(k) for k in codes])
    assert list(csd_digit_counts(np.array([0, 1, 2, 3, 7, 11]))) == [0, 1, 1, 2, 2, 3]


def test_dsp_tiling_and_bram_shapes():
    assert dsps_per_product(16, 16) == 1
    assert dsps_per_product(27, 18) == 1 and dsps_per_product(27, 18, "DSP48E1") == 2
    assert dsps_per_product(32, 32) == 4
    assert int(bram18_for_rom(512, 36)) == 1
    assert int(bram18_for_rom(512, 48)) == 2  # a 16-bit weight width still packs: 3 lanes over 2 BRAM18
    assert int(bram18_for_rom(1024, 48)) == 3
    assert int(bram18_for_rom(2048, 9)) == 1 and int(bram18_for_rom(0, 9)) == 0


def linear(n_in: int, n_out: int, values: torch.Tensor | None = None) -> nn.Module:
    layer = nn.Linear(n_in, n_out, bias=False)
    with torch.no_grad():
        layer.weight.copy_(values if values is not None else torch.full((n_out, n_in), 0.6875))  # 0b0.1011: 3 CSD
    return nn.Sequential(layer)


def test_latency_strategy_folds_zero_and_simple_constants():
    weights = torch.full((4, 8), 0.6875)  # 11/16 → code 704 = 0b1011000000, 3 CSD digits → DSP
    weights[0, :4] = 0.0  # zero → nothing
    weights[1, :4] = 0.5  # power of two → wiring
    weights[2, :4] = 0.75  # 0b11 → 2 CSD digits → one LUT adder
    cost = estimate(linear(8, 4, weights), (8,), make_config(precision="fixed<16,6>"))
    layer = cost.layer("0")
    assert layer.dsp == 32 - 12
    assert layer.details["shift_add_products"] == 8
    assert layer.n_nonzero == 28


def test_resource_strategy_saves_a_multiplier_only_for_an_all_zero_pattern():
    n_in, n_out, rf = 16, 4, 8
    config = make_config(strategy="Resource", reuse_factor=rf)
    base = estimate(linear(n_in, n_out), (n_in,), config).layer("0")
    assert base.dsp == n_in * n_out // rf == base.multipliers
    weights = torch.full((n_out, n_in), 0.6875)
    weights.view(-1)[:rf] = 0.0  # exactly the first multiplier's pattern
    weights.view(-1)[rf + 1 : rf + 7] = 0.0  # most, but not all, of the second pattern
    pruned = estimate(linear(n_in, n_out, weights), (n_in,), config).layer("0")
    assert pruned.dsp == base.dsp - 1
    patterns = multiplier_patterns(weights.numpy() != 0, rf)
    assert patterns.shape == (n_in * n_out // rf, rf) and int(patterns.any(axis=1).sum()) == pruned.dsp


def test_resource_bram_follows_active_lanes_for_any_width():
    n_in, n_out, rf = 64, 32, 512  # 4 multipliers, ROM depth 512
    weights = torch.full((n_out, n_in), 0.6875)
    for width, expected in ((16, 2), (18, 2), (12, 2), (9, 1)):
        config = make_config(strategy="Resource", reuse_factor=rf, precision=f"fixed<{width},4>")
        layer = estimate(linear(n_in, n_out, weights), (n_in,), config).layer("0")
        assert layer.bram18 == expected, width  # ceil(4·W / 36)
    pruned = weights.clone()
    pruned.view(-1)[: 2 * rf] = 0.0  # two whole patterns gone → 2 lanes × 16 bits = 1 BRAM18
    config = make_config(strategy="Resource", reuse_factor=rf, precision="fixed<16,6>")
    assert estimate(linear(n_in, n_out, pruned), (n_in,), config).layer("0").bram18 == 1


def test_narrow_products_use_luts_and_wide_ones_several_dsps():
    model = linear(8, 4)
    narrow = estimate(model, (8,), make_config(precision="fixed<8,3>", strategy="Resource", reuse_factor=4))
    assert narrow.layer("0").dsp == 0 and narrow.layer("0").lut > 0
    wide = estimate(model, (8,), make_config(precision="fixed<32,8>", strategy="Resource", reuse_factor=4))
    assert wide.layer("0").dsp == 8 * 4 // 4 * 4


def test_torch_prune_masks_are_honoured():
    model = linear(16, 8)
    config = make_config(strategy="Resource", reuse_factor=4)
    before = estimate(model, (16,), config).totals["dsp"]
    mask = torch.ones(8, 16)
    mask.view(-1)[:8] = 0  # two whole patterns of 4
    prune.custom_from_mask(model[0], "weight", mask)
    assert estimate(model, (16,), config).totals["dsp"] == before - 2


def test_conv_layers_reuse_one_kernel_over_positions():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(128, 4))
    config = make_config(strategy="Resource", reuse_factor=9).with_layer("4", reuse_factor=8)
    specs = extract_layers(model, (3, 8, 8))
    assert [s.kind for s in specs] == ["conv2d", "activation", "pooling", "free", "dense"]
    conv = specs[0]
    assert (conv.n_in, conv.n_out, conv.positions) == (27, 8, 64)
    cost = estimate(model, (3, 8, 8), config)
    assert cost.layer("0").latency_cycles >= 64 * 9
    faster = config.with_layer("0", parallelization_factor=4)
    fast_cost = estimate(model, (3, 8, 8), faster)
    assert fast_cost.layer("0").dsp == 4 * cost.layer("0").dsp
    assert fast_cost.layer("0").latency_cycles < cost.layer("0").latency_cycles
    assert cost.ii_cycles == max(layer.ii_cycles for layer in cost.layers)


def test_bad_inputs_are_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 4))

        def forward(self, x):
            return self.body(x)

    with pytest.raises(ModelError, match=r"body\.1.*LSTM"):
        estimate(Odd(), (4,))
    model = linear(16, 8)
    with pytest.raises(ConfigError, match=r"ReuseFactor 5 .* '0'|ReuseFactor 5 is not valid for 0"):
        estimate(model, (16,), make_config(strategy="Resource", reuse_factor=5))
    with pytest.raises(ModelError, match="input"):
        estimate(model, (15,))
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        estimate(model, (16,))


def test_utilization_and_over_budget():
    model = linear(64, 64)
    cost = estimate(model, (64,), make_config(device="xc7z020"))
    assert cost.totals["dsp"] == 64 * 64
    assert "dsp" in cost.over_budget() and cost.utilization()["dsp"] == pytest.approx(4096 / 220)


def _layer_setup(strategy: str, rf: int, seed: int, zero_fraction: float = 0.3):
    from tenfold.hardware.cost import CostModel
    from tenfold.hardware.devices import get_device
    from tenfold.hardware.fixed_point import FixedPoint

    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(8, 16, generator=generator) * 0.5
    weights[torch.rand(8, 16, generator=generator) < zero_fraction] = 0.0
    model = linear(16, 8, weights)
    config = make_config(strategy=strategy, reuse_factor=rf)
    spec = extract_layers(model, (16,))[0]
    kwargs = {"data_precision": FixedPoint.parse("fixed<16,6>"), "device": get_device("xcvu13p")}
    return CostModel(), model, config, spec, kwargs


@pytest.mark.parametrize("seed", range(4))
def test_pattern_savings_equal_the_change_in_estimated_dsp(seed):
    cost_model, model, config, spec, kwargs = _layer_setup("Resource", 8, seed)
    savings = cost_model.savings(spec, config.layer("0"), granularity="pattern", **kwargs)
    assert savings.shape == (16, 4)
    before = estimate(model, (16,), config).layer("0").dsp
    for j in range(savings.shape[0]):
        pruned = model[0].weight.detach().clone()
        pruned.view(-1)[j * 8 : (j + 1) * 8] = 0.0
        after = estimate(linear(16, 8, pruned), (16,), config).layer("0").dsp
        assert before - after == savings[j, 0]


def test_weight_savings_sum_to_the_layer_cost_under_latency_strategy():
    cost_model, model, config, spec, kwargs = _layer_setup("Latency", 1, 0)
    savings = cost_model.savings(spec, config.layer("0"), granularity="weight", **kwargs)
    layer = estimate(model, (16,), config).layer("0")
    assert savings[:, 0].sum() == pytest.approx(layer.dsp)
    zero = (model[0].weight.detach().reshape(-1) == 0).numpy()
    assert np.all(savings[zero] == 0)
    with pytest.raises(ConfigError, match="granularity"):
        cost_model.savings(spec, config.layer("0"), granularity="block", **kwargs)


def test_rom_weight_saves_a_multiplier_only_when_last_in_its_pattern():
    cost_model, model, config, spec, kwargs = _layer_setup("Resource", 8, 1, zero_fraction=0.0)
    with torch.no_grad():
        model[0].weight.view(-1)[1:8] = 0.0  # pattern 0 keeps a single non-zero weight
    spec = extract_layers(model, (16,))[0]
    savings = cost_model.savings(spec, config.layer("0"), granularity="weight", **kwargs)
    assert savings[0, 0] == 1 and np.all(savings[8:, 0] == 0)
