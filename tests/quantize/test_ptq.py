"""Post-training quantization: integer bits from calibration ranges, no overflow, exact accumulators."""

from __future__ import annotations

import math

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.hardware import FixedPoint, HLSConfig, make_config
from tenfold.quantize import (
    PrecisionOverflowError,
    emulate,
    find_overflows,
    integer_bits_for,
    observe_ranges,
    post_training_quantize,
    quantize_model,
    raise_on_overflow,
)
from tenfold.train import evaluate


@pytest.fixture(scope="module")
def ptq8(trained_mlp, digits_flat):
    return post_training_quantize(trained_mlp, make_config(precision="ap_fixed<8,3,AP_RND,AP_SAT>"),
                                  digits_flat.train)


def test_integer_bits_are_the_fewest_that_hold_the_range():
    base = FixedPoint.parse("ap_fixed<8,0,AP_RND,AP_SAT>")
    assert integer_bits_for(base, -0.3, 0.45) == 0  # [-0.5, 0.49]
    assert integer_bits_for(base, -0.3, 0.5) == 1  # 0.5 needs the next power of two
    assert integer_bits_for(base, 0.0, 5.2) == 4  # [-8, 7.9]
    assert integer_bits_for(base, -0.01, 0.01) == -5  # negative integer bits: all width goes to resolution
    trn = FixedPoint.parse("ap_fixed<4,0>")  # truncation never rounds up: 0.49 fits at I = 0
    assert integer_bits_for(trn, 0.0, 0.49) == 0
    with pytest.raises(ConfigError, match="unsigned"):
        integer_bits_for(FixedPoint.parse("ap_ufixed<8,3>"), -2.0, 1.0)


def test_ptq_types_fit_the_calibration_ranges(ptq8, trained_mlp):
    ranges = ptq8.ranges
    fc1 = ptq8.config.layer("fc1").precision
    assert fc1.weight.width == 8 and fc1.result.width == 8
    assert fc1.weight.rounding.value == "AP_RND" and fc1.weight.overflow.value == "AP_SAT"
    largest = float(trained_mlp.fc1.weight.detach().abs().max())
    assert fc1.weight.max_value >= largest * (1 - 2**-7)
    assert fc1.weight.integer == integer_bits_for(fc1.weight, *sorted([ranges[("fc1", "weight")].low,
                                                                        ranges[("fc1", "weight")].high]))
    result_range = ranges[("fc1", "result")]
    assert fc1.result.max_value >= 1.1 * result_range.high - fc1.result.lsb  # the 10% margin
    narrower = FixedPoint(8, fc1.result.integer - 1, True, "RND", "SAT")
    assert narrower.max_value < 1.1 * max(abs(result_range.low), result_range.high)  # and no more than needed
    assert ptq8.config.default.precision.result.width == 8  # the model input type is calibrated too
    assert ptq8.precisions()["input"]["result"] == ptq8.config.default.precision.result.to_cpp()


def test_nothing_overflows_on_the_calibration_data(ptq8, digits_flat):
    assert find_overflows(ptq8.model, digits_flat.train, max_batches=None, wrapping_only=False) == []
    uniform = quantize_model(ptq8.model.model, make_config(precision="ap_fixed<8,1,AP_RND,AP_SAT>"))
    assert find_overflows(uniform, digits_flat.train, wrapping_only=False)  # the check can fail


def test_accumulators_are_exact_so_fake_quantization_is_the_hardware(ptq8, trained_mlp, digits_flat):
    config = ptq8.config
    for layer in ("fc1", "fc2", "output"):
        accum = config.layer(layer).precision.accum
        weight = config.layer(layer).precision.weight
        assert accum.overflow.value == "AP_WRAP"
        assert accum.fractional >= weight.fractional  # products lose nothing
    assert config.layer("fc1").precision.accum.fractional == (config.default.precision.result.fractional
                                                              + config.layer("fc1").precision.weight.fractional)
    inputs = digits_flat.test.tensors[0]
    with torch.no_grad():
        fake = ptq8.model(inputs).double()
    exact = emulate(trained_mlp, inputs, config)
    assert torch.equal(fake.argmax(1), exact.argmax(1))
    assert float((fake - exact).abs().max()) <= config.layer("output").precision.result.lsb


def test_ptq_beats_a_uniform_type_of_the_same_width(ptq8, trained_mlp, digits_flat):
    uniform = quantize_model(trained_mlp, make_config(precision="ap_fixed<8,3,AP_RND,AP_SAT>"))
    calibrated = evaluate(ptq8.model, digits_flat.test).accuracy
    baseline = evaluate(uniform, digits_flat.test).accuracy
    print(f"8-bit test accuracy: uniform ap_fixed<8,3> {baseline:.4f}, per-layer PTQ {calibrated:.4f}")
    assert calibrated > baseline
    assert calibrated >= evaluate(trained_mlp, digits_flat.test).accuracy - 0.03


def test_width_and_accum_width_override_the_config(trained_mlp, digits_flat):
    result = post_training_quantize(trained_mlp, HLSConfig(), digits_flat.train, width=6, accum_width=12,
                                    max_batches=2)
    for layer in ("fc1", "relu1", "output"):
        assert result.config.layer(layer).precision.result.width == 6
    assert result.config.layer("fc2").precision.accum.width == 12
    assert result.config.layer("fc2").precision.weight.width == 6


def test_ranges_are_observed_in_execution_order(trained_mlp, digits_flat):
    quantized = quantize_model(trained_mlp, HLSConfig()).quantization_enabled(False)
    ranges = observe_ranges(quantized, digits_flat.val.tensors[0])
    keys = list(ranges)
    assert keys[0] == ("input", "result") and keys.index(("fc1", "result")) < keys.index(("fc2", "weight"))
    relu = ranges[("relu1", "result")]
    assert relu.low == 0.0 and relu.high > 0
    x = digits_flat.val.tensors[0]
    assert math.isclose(ranges[("input", "result")].high, float(x.max()))


def test_model_is_not_changed_and_wrapping_overflow_is_named(trained_mlp, digits_flat):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    post_training_quantize(trained_mlp, HLSConfig(), digits_flat.train, width=4, max_batches=1)
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    narrow = quantize_model(trained_mlp, make_config(precision="ap_fixed<8,1>"))
    with pytest.raises(PrecisionOverflowError, match=r"model input overflows ap_fixed<8,1>.*at least 2 integer bits"):
        raise_on_overflow(narrow, digits_flat.train)


@pytest.mark.slow
def test_ptq_config_exports_and_hls4ml_c_simulation_equals_fake_quantization(trained_mlp, digits_flat, tmp_path):
    """The calibrated types (negative integer bits included) survive hls4ml, and C simulation == fake quant."""
    import shutil

    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed to compile hls4ml's C simulation")
    from tenfold.export import check_bit_exact, export_hls4ml
    from tenfold.quantize import to_float

    ptq = post_training_quantize(trained_mlp, make_config(precision="ap_fixed<6,2,AP_RND,AP_SAT>"), digits_flat.train)
    project, exported = export_hls4ml(to_float(ptq.model), ptq.config, (64,), tmp_path / "prj")
    inputs = digits_flat.test.tensors[0][:300]
    assert check_bit_exact(project, exported, ptq.config, inputs).bit_exact
    with torch.no_grad():
        fake = ptq.model(inputs).double().numpy()
    assert (fake == project.predict(inputs.numpy())).all()


def test_widen_to_fit_undoes_overflow_and_changes_nothing_else():
    """Logits that outgrow ap_fixed<16,6> wrap; widening the types that overflow restores the float answer,
    keeps every width, and leaves a config that already fits untouched."""
    import torch
    from torch import nn

    from tenfold.hardware import make_config
    from tenfold.quantize import quantize_model, widen_to_fit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    inputs = torch.randn(256, 4)
    config = make_config(precision="fixed<16,6>")
    assert widen_to_fit(model, config, inputs) == config  # small values: nothing to do
    with torch.no_grad():
        model[2].weight.fill_(8.0)  # logits beyond 32 (up to ~43); hidden values stay small
    reference = model(inputs)
    hidden = model[1](model[0](inputs))
    assert reference.abs().max() > 40 and hidden.abs().max() < 20
    wrapped = quantize_model(model, config)(inputs)
    assert (wrapped - reference).abs().max() > 10
    wider = widen_to_fit(model, config, inputs)
    result = wider.layer("2").precision.result
    assert result.width == 16 and result.integer > 6
    assert (quantize_model(model, wider)(inputs) - reference).abs().max() < 0.5
    assert wider.layer("0").precision.result == config.layer("0").precision.result


def test_calibration_data_of_the_wrong_shape_is_a_clear_error():
    import torch
    from torch import nn

    from tenfold.errors import DataError
    from tenfold.hardware import make_config
    from tenfold.quantize import widen_to_fit

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(DataError, match=r"calibration data does not fit the model: inputs of shape \(10, 5\)"):
        widen_to_fit(model, make_config(), torch.randn(10, 5))
