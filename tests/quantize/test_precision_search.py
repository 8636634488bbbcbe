"""Per-layer precision search: narrowest widths within tolerance, ordered by what the hardware saves."""

from __future__ import annotations

import pytest

from tenfold.errors import ConfigError
from tenfold.hardware import HLSConfig, make_config
from tenfold.quantize import quantize_model, search_precision
from tenfold.train import evaluate

WIDTHS = (16, 12, 8, 6, 4)
BASE = "ap_fixed<16,6,AP_RND,AP_SAT>"


@pytest.fixture(scope="module")
def searched(trained_mlp, digits_flat):
    steps = []
    report = search_precision(trained_mlp, make_config(precision=BASE), digits_flat.val, tolerance=0.02,
                              widths=WIDTHS, calibration_data=digits_flat.train, progress=steps.append)
    return report, steps


def test_search_stays_within_tolerance_and_narrows_the_types(searched, trained_mlp, digits_flat):
    report, _ = searched
    assert report.reference_accuracy == evaluate(trained_mlp, digits_flat.val).accuracy
    assert report.met_tolerance and report.final_accuracy >= report.reference_accuracy - 0.02
    assert report.hardware_accuracy == report.final_accuracy  # exact accumulators: fake == bit-exact
    quantized = quantize_model(trained_mlp, report.config)
    assert evaluate(quantized, digits_flat.val).accuracy == report.final_accuracy
    weight_widths = [report.widths[layer]["weight"] for layer in ("fc1", "fc2", "fc3", "output")]
    assert all(width in WIDTHS for width in weight_widths)
    assert min(weight_widths) <= 8 and sum(weight_widths) < 4 * 16
    assert report.widths["fc1"]["bias"] == report.widths["fc1"]["weight"]


def test_search_saves_hardware(searched):
    report, _ = searched
    print({k: (report.resources_before[k], report.resources_start[k], report.resources_after[k])
           for k in ("dsp", "lut", "ff")})
    assert report.resources_start["dsp"] > 0
    assert report.resources_after["dsp"] < 0.5 * report.resources_start["dsp"]  # products left the DSPs
    assert report.resources_after["ff"] < report.resources_start["ff"]
    saved = 1 - report.resources_after["dsp"] / report.resources_before["dsp"]
    assert report.reduction()["dsp"] == pytest.approx(saved)


def test_steps_are_reported_and_consistent(searched):
    report, steps = searched
    assert steps == report.steps and len(steps) == report.evaluations - 2  # + start and final evaluations
    target = report.reference_accuracy - report.tolerance
    assert all(step.accepted == (step.accuracy >= target) for step in steps)
    for step in steps:  # an accepted move was kept (later moves only narrow further)
        if step.accepted:
            assert report.widths[step.layer][step.kind] <= step.width
    markdown = report.to_markdown()
    assert "| fc1 |" in markdown and "tolerance met: True" in markdown
    assert report.to_dict()["hls_config"]["LayerName"]["fc1"]["Precision"]["weight"].startswith("fixed<")


def test_config_exports_and_round_trips_through_hls4ml_dicts(searched):
    report, _ = searched
    again = HLSConfig.from_hls4ml(report.config.to_hls4ml())
    for layer in ("fc1", "relu1", "output"):
        assert again.layer(layer).precision == report.config.layer(layer).precision
    assert again.default.precision.result == report.config.default.precision.result


def test_search_is_reproducible_and_bisect_agrees_on_the_contract(trained_mlp, digits_flat, searched):
    report, _ = searched
    repeat = search_precision(trained_mlp, make_config(precision=BASE), digits_flat.val, tolerance=0.02,
                              widths=WIDTHS, calibration_data=digits_flat.train)
    assert repeat.widths == report.widths and [s.accuracy for s in repeat.steps] == [s.accuracy for s in report.steps]
    quick = search_precision(trained_mlp, make_config(precision=BASE), digits_flat.val, tolerance=0.02,
                             widths=WIDTHS, calibration_data=digits_flat.train, bisect=True)
    assert quick.met_tolerance and quick.evaluations < report.evaluations
    assert quick.resources_after["dsp"] < quick.resources_start["dsp"]


def test_zero_tolerance_at_a_single_width_changes_nothing(trained_mlp, digits_flat):
    report = search_precision(trained_mlp, make_config(precision=BASE), digits_flat.val, tolerance=0.0,
                              widths=(16,), kinds=("weight",))
    assert report.steps == [] and report.widths["fc1"]["weight"] == 16


def test_accumulator_search_is_scored_bit_exactly(trained_mlp, digits_flat):
    report = search_precision(trained_mlp, make_config(precision=BASE), digits_flat.val, tolerance=0.02,
                              widths=(16, 12, 8), kinds=("accum",), bisect=True)
    assert report.final_accuracy == report.hardware_accuracy and report.met_tolerance
    assert {step.kind for step in report.steps} == {"accum"}
    start = quantize_model(trained_mlp, report.config)  # weights and results stayed at the widest width
    assert start.config.layer("fc1").precision.weight.width == 16
    assert all(report.widths[layer]["accum"] <= 24 for layer in ("fc1", "fc2", "fc3", "output"))
    assert any(report.widths[layer]["accum"] in (8, 12) for layer in ("fc1", "fc2", "fc3", "output"))


def test_bad_options_are_refused(trained_mlp, digits_flat):
    with pytest.raises(ConfigError, match="kinds"):
        search_precision(trained_mlp, HLSConfig(), digits_flat.val, kinds=("bias",))
    with pytest.raises(ConfigError, match="widths"):
        search_precision(trained_mlp, HLSConfig(), digits_flat.val, widths=(0, 8))
    with pytest.raises(ConfigError, match="tolerance"):
        search_precision(trained_mlp, HLSConfig(), digits_flat.val, tolerance=-0.1)
