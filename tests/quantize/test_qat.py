"""Quantization-aware training: at a harsh precision it must recover accuracy that rounding loses."""

from __future__ import annotations

import pytest
import torch

from tenfold.hardware import make_config
from tenfold.quantize import PrecisionOverflowError, hardware_accuracy, post_training_quantize, qat, to_float
from tenfold.train import TrainConfig, evaluate


@pytest.mark.parametrize("precision", ["ap_fixed<4,2,AP_RND,AP_SAT>", "ap_fixed<5,2,AP_RND,AP_SAT>"])
def test_qat_beats_ptq_at_the_same_harsh_precision(precision, trained_mlp, digits_flat):
    ptq = post_training_quantize(trained_mlp, make_config(precision=precision), digits_flat.train)
    result = qat(trained_mlp, ptq.config, digits_flat.train, digits_flat.val,
                 TrainConfig(epochs=6, lr=1e-3, seed=0), progress=False)
    float_test = evaluate(trained_mlp, digits_flat.test).accuracy
    ptq_test = hardware_accuracy(ptq.model, digits_flat.test)
    qat_test = hardware_accuracy(result.model, digits_flat.test)
    print(f"{precision} per layer: float {float_test:.4f}, PTQ {ptq_test:.4f}, QAT {qat_test:.4f} (test, bit-exact)")
    assert qat_test > ptq_test
    assert result.report.final_accuracy > result.report.initial_accuracy
    assert result.model.config.layer("fc1").precision == ptq.config.layer("fc1").precision  # same types
    # exact accumulators: the fake-quantized accuracy is the hardware's
    assert evaluate(result.model, digits_flat.test).accuracy == qat_test
    assert result.report.hardware_accuracy == hardware_accuracy(result.model, digits_flat.val)


def test_qat_report_and_inputs(trained_mlp, digits_flat):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    config = make_config(precision="ap_fixed<8,4,AP_RND,AP_SAT>")
    result = qat(trained_mlp, config, digits_flat.train, digits_flat.val, TrainConfig(epochs=1, seed=0),
                 progress=False)
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    report = result.report
    assert len(report.train.history) == 1
    assert report.float_accuracy == evaluate(trained_mlp, digits_flat.val).accuracy
    assert report.hls_config["Model"]["Precision"]["weight"] == "fixed<8,4,RND,SAT>"
    assert set(report.to_dict()) >= {"float_accuracy", "initial_accuracy", "final_accuracy", "train"}
    plain = to_float(result.model)  # ready for export: weights on their grid
    weight_type = config.layer("fc1").precision.weight
    assert torch.equal(plain.fc1.weight, weight_type.quantize(plain.fc1.weight))


def test_qat_refuses_a_wrapping_type_that_overflows(trained_mlp, digits_flat):
    with pytest.raises(PrecisionOverflowError, match="integer bits"):
        qat(trained_mlp, make_config(precision="ap_fixed<6,1>"), digits_flat.train, digits_flat.val,
            TrainConfig(epochs=1), progress=False)


def test_qat_never_returns_a_worse_model_than_it_started_from(trained_mlp, digits_flat):
    config = make_config(precision="ap_fixed<8,3,AP_RND,AP_SAT>")
    result = qat(trained_mlp, config, digits_flat.train, digits_flat.val, TrainConfig(epochs=1, lr=5.0, seed=0),
                 progress=False, measure_hardware=False)  # a learning rate that wrecks the weights
    report = result.report
    assert report.kept_initial and report.final_accuracy == report.initial_accuracy
    assert report.train.history[0].val_accuracy < report.initial_accuracy
    assert torch.equal(result.model.model.fc1.parametrizations.weight.original, trained_mlp.fc1.weight)
