"""Shift-add constants stay shift-add through fine-tuning (Latency strategy), so pruned DSP counts hold."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize

from tenfold.errors import ConfigError, ModelError
from tenfold.hardware import estimate, make_config
from tenfold.hardware.arith import csd_digit_counts
from tenfold.hardware.cost import CostParams, weight_codes
from tenfold.hardware.fixed_point import FixedPoint
from tenfold.prune import MaskedFinetune, PruneConfig, Pruner, apply_masks
from tenfold.prune.constants import cheap_codes, dear_codes, shift_add_lock, snap_to_table
from tenfold.train import TrainConfig, fit

pytest.importorskip("tenfold.knapsack")


@settings(max_examples=40, deadline=None)
@given(width=st.integers(2, 12), integer=st.integers(-2, 8), digits=st.integers(0, 3))
def test_cheap_codes_are_exactly_the_codes_with_few_csd_digits(width, integer, digits):
    precision = FixedPoint(width, integer)
    every = np.arange(precision.min_code, precision.max_code + 1)
    assert np.array_equal(cheap_codes(precision, digits), every[csd_digit_counts(every) <= digits])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=30))
def test_snap_picks_the_nearest_table_entry(values):
    table = torch.tensor([-8.0, -1.0, 0.0, 0.5, 2.0, 16.0], dtype=torch.float64)
    x = torch.tensor(values, dtype=torch.float64)
    snapped = snap_to_table(x, table)
    nearest = (x[:, None] - table[None, :]).abs().min(dim=1).values
    assert torch.allclose((x - snapped).abs(), nearest)
    assert all(v in table.tolist() for v in snapped.tolist())
    assert torch.equal(snap_to_table(x, torch.zeros(1, dtype=torch.float64)), torch.zeros_like(x))


@pytest.fixture(scope="module")
def digits_mlp(trained_digits_mlp):
    return trained_digits_mlp


def _masked(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    apply_masks(model, {name: torch.ones_like(m.weight) for name, m in model.named_modules()
                        if isinstance(m, nn.Linear)})
    return model


def _finetune(model, splits, lock: bool):
    hls = make_config(strategy="Latency", reuse_factor=1)
    callbacks = [MaskedFinetune(model)]
    locker = shift_add_lock(model, (64,), hls) if lock else None
    if locker is not None:
        callbacks.append(locker)
    fit(model, splits.train, splits.val, TrainConfig(epochs=4, lr=1e-2, seed=1), callbacks=callbacks,
        progress=False)
    return estimate(model, (64,), hls).totals["dsp"], locker


def test_fine_tuning_revives_dsps_unless_the_cheap_constants_are_locked(digits_mlp):
    model, splits = digits_mlp
    hls = make_config(strategy="Latency", reuse_factor=1)
    before = estimate(model, (64,), hls).totals["dsp"]
    free, _ = _finetune(_masked(model), splits, lock=False)
    locked_model = _masked(model)
    locked, locker = _finetune(locked_model, splits, lock=True)
    assert free > before  # the failure the lock exists for: cheap constants drift into DSP products
    assert locked <= before
    assert locker is not None and locker.n_locked > 0
    threshold = CostParams().csd_dsp_threshold
    precision = hls.default.precision.weight
    for module, [(mask, _)] in locker.locks.items():
        codes = weight_codes(module.weight, precision)
        assert np.all(csd_digit_counts(codes[mask.numpy()]) < threshold)
        assert torch.equal(module.weight, module.weight_orig * module.weight_mask)  # released and refreshed


def test_locked_forward_sees_snapped_weights_and_gradients_pass_through(digits_mlp):
    model, _ = digits_mlp
    hls = make_config(strategy="Latency", reuse_factor=1)
    masked = _masked(model)
    locker = shift_add_lock(masked, (64,), hls)
    module, [(mask, table)] = next(iter(locker.locks.items()))
    locker.attach()
    clone = copy.deepcopy(masked)  # hooks survive a deep copy (they are bound per module, not to the lock)
    x = torch.randn(5, 64)
    clone(x)
    out = masked(x).sum()
    expected = torch.where(mask, snap_to_table(module.weight_orig.detach(), table.float()), module.weight_orig)
    assert torch.equal(module.weight.detach(), expected)
    out.backward()
    assert module.weight_orig.grad is not None and module.weight_orig.grad[mask].abs().sum() > 0
    locker.release()
    locker.release()  # idempotent


@settings(max_examples=20, deadline=None)
@given(width=st.integers(2, 12), integer=st.integers(-2, 8), digits=st.integers(1, 4))
def test_dear_codes_complement_the_cheap_ones(width, integer, digits):
    precision = FixedPoint(width, integer)
    every = np.arange(precision.min_code, precision.max_code + 1)
    both = np.sort(np.concatenate([cheap_codes(precision, digits - 1), dear_codes(precision, digits)]))
    assert np.array_equal(both, every)


def test_both_ways_keeps_every_weight_in_its_cost_class(digits_mlp):
    model, splits = digits_mlp
    hls = make_config(strategy="Latency", reuse_factor=1)
    masked = _masked(model)
    threshold = CostParams().csd_dsp_threshold
    precision = hls.default.precision.weight
    classes_before = {name: csd_digit_counts(weight_codes(m.weight, precision)) >= threshold
                      for name, m in masked.named_modules() if isinstance(m, nn.Linear)}
    cost_before = estimate(masked, (64,), hls).totals
    locker = shift_add_lock(masked, (64,), hls, both_ways=True)
    fit(masked, splits.train, splits.val, TrainConfig(epochs=3, lr=1e-2, seed=1),
        callbacks=[MaskedFinetune(masked), locker], progress=False)
    for name, m in masked.named_modules():
        if isinstance(m, nn.Linear):
            after = csd_digit_counts(weight_codes(m.weight, precision)) >= threshold
            assert np.array_equal(after, classes_before[name]), name
    assert estimate(masked, (64,), hls).totals["dsp"] == cost_before["dsp"]


def test_no_lock_for_resource_layers(digits_mlp):
    model, _ = digits_mlp
    assert shift_add_lock(_masked(model), (64,), make_config(strategy="Resource", reuse_factor=8)) is None


def test_bad_lock_requests_are_named(digits_mlp):
    model, _ = digits_mlp
    hls = make_config(strategy="Latency", reuse_factor=1)
    with pytest.raises(ConfigError, match=r"unknown layer.*fc9"):
        shift_add_lock(_masked(model), (64,), hls, layers=["fc1", "fc9"])
    with pytest.raises(ModelError, match="inputs of shape"):
        shift_add_lock(_masked(model), (63,), hls)
    with pytest.raises(ConfigError, match="max_digits"):
        cheap_codes(FixedPoint(16, 6), -1)


def test_unpruned_layers_are_locked_through_a_parametrization(digits_mlp):
    model, splits = digits_mlp
    hls = make_config(strategy="Latency", reuse_factor=1)
    plain = copy.deepcopy(model)
    before = estimate(plain, (64,), hls).totals["dsp"]
    locker = shift_add_lock(plain, (64,), hls)
    assert locker is not None
    fit(plain, splits.train, splits.val, TrainConfig(epochs=3, lr=1e-2, seed=1), callbacks=[locker], progress=False)
    assert estimate(plain, (64,), hls).totals["dsp"] <= before
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())  # released: plain parameters again
    assert all(isinstance(m.weight, nn.Parameter) for m in plain.modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("budget", ["dsp<=0.3x", "dsp<=0.3x,lut<=0.5x"])
def test_latency_pruning_steps_stay_within_their_targets(digits_mlp, budget):
    """DSP only: the lock keeps cheap constants cheap; with a LUT cap it holds both ways, so LUTs hold too."""
    model, splits = digits_mlp
    hls = make_config(strategy="Latency", reuse_factor=1)
    config = PruneConfig(budget=budget, structure="pattern", steps=3, tolerance=0.5,
                         finetune=TrainConfig(epochs=2, lr=1e-2, seed=0), repair=False)
    result = Pruner(config, hls, (64,)).fit(model, splits.train, splits.val, progress=False)
    for step in result.report.steps:
        assert step.resources["dsp"] <= step.targets["dsp<=0.3x"] + 1e-6, step
        if "lut<=0.5x" in step.targets:
            # every weight keeps its cost class and digit count; only biases (not locked) may add an adder
            assert step.resources["lut"] <= 1.02 * step.targets["lut<=0.5x"], step
    if budget == "dsp<=0.3x":
        assert result.report.met_budget
