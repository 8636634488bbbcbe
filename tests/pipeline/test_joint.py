"""Joint compression: candidates priced per layer, one action per layer, the budget respected."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.hardware import estimate, make_config
from tenfold.pipeline.candidates import LossProbe, build_candidates, pattern_prune_masks, with_weight_precision
from tenfold.pipeline.config import JointSection
from tenfold.pipeline.joint import solve_actions
from tenfold.prune import Budget


@pytest.fixture(scope="module")
def setup():
    from tenfold.data import load_digits
    from tenfold.models import create, kwargs_for_data
    from tenfold.train import TrainConfig, fit

    splits = load_digits(seed=0)
    torch.manual_seed(0)
    model = create("jet_mlp", **kwargs_for_data("jet_mlp", splits.input_shape, splits.num_classes))
    fit(model, splits.train, splits.val, TrainConfig(epochs=6, lr=3e-3, seed=0), progress=False)
    hls = make_config(precision="fixed<16,6>", strategy="Latency")
    cost = estimate(model, splits.input_shape, hls)
    layers = [layer.name for layer in cost.layers if layer.n_weights]
    probe = LossProbe(model, splits.train, batches=2, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    candidates = build_candidates(model, splits.input_shape, hls, layers, probe, prune_levels=[0.5, 0.9],
                                  widths=[8], rank_ratios=[], bits=8)
    return splits, model, hls, cost, candidates, before


def test_candidates_leave_the_model_untouched(setup):
    _, model, _, _, _, before = setup
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_every_layer_has_keep_and_cheaper_options(setup):
    _, _, _, cost, candidates, _ = setup
    for layer, actions in candidates.items():
        kinds = [a.kind for a in actions]
        assert kinds[0] == "keep" and {"prune", "precision", "prune+precision"} <= set(kinds)
        keep = actions[0]
        assert keep.cost["dsp"] == pytest.approx(cost.layer(layer).dsp)
        prunes = sorted((a for a in actions if a.kind == "prune"), key=lambda a: a.prune_level)
        light, heavy = prunes[0], prunes[-1]
        assert light.prune_level == pytest.approx(0.5, abs=0.02) and heavy.prune_level == pytest.approx(0.9, abs=0.02)
        assert heavy.cost["dsp"] < light.cost["dsp"] < keep.cost["dsp"]
        assert heavy.loss_increase > light.loss_increase - 1e-3


def test_solution_takes_one_action_per_layer_within_budget(setup):
    _, _, _, cost, candidates, _ = setup
    params = {layer.name: layer.n_nonzero for layer in cost.layers if layer.n_weights}
    resolved = Budget.parse("dsp<=0.3x").resolve(cost, params)
    layers = list(candidates)
    fixed = {"dsp": cost.totals["dsp"] - sum(cost.layer(n).dsp for n in layers), "bram18": 0.0, "lut": 0.0,
             "ff": 0.0, "params": 0.0}
    choice = solve_actions(candidates, resolved, cost, 1.0, fixed)
    assert sorted(a.layer for a in choice) == sorted(layers)
    assert sum(a.cost["dsp"] for a in choice) + fixed["dsp"] <= 0.3 * cost.totals["dsp"] + 1e-6
    # the solver minimises the summed loss: no other feasible single swap is better
    total = sum(a.loss_increase for a in choice)
    for index, action in enumerate(choice):
        for other in candidates[action.layer]:
            swapped = [*choice[:index], other, *choice[index + 1:]]
            if sum(a.cost["dsp"] for a in swapped) + fixed["dsp"] <= 0.3 * cost.totals["dsp"]:
                assert sum(a.loss_increase for a in swapped) >= total - 1e-9


def test_impossible_budget_is_a_clear_error(setup):
    _, _, _, cost, candidates, _ = setup
    params = {layer.name: layer.n_nonzero for layer in cost.layers if layer.n_weights}
    resolved = Budget.parse("lut<=0.0001x").resolve(cost, params)
    with pytest.raises(ConfigError, match="no combination of the candidate actions fits"):
        solve_actions(candidates, resolved, cost, 1.0, dict.fromkeys(("dsp", "bram18", "lut", "ff", "params"), 0.0))


def test_prune_mask_removes_requested_share_of_patterns(setup):
    splits, model, hls, _, _, _ = setup
    share, mask = pattern_prune_masks(model, splits.input_shape, hls, "fc1", [0.75])[0.75]
    assert mask.shape == model.fc1.weight.shape
    assert share == pytest.approx(0.75, abs=0.01)
    assert 0.70 <= 1 - mask.mean().item() <= 0.80
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}


def test_prune_levels_are_shares_of_the_remaining_patterns(setup):
    """On a layer already half pruned, level 0.5 removes half of what is left (75% in all) and keeps every
    pattern that was pruned before pruned."""
    import copy

    from tenfold.prune import apply_masks

    splits, model, hls, _, _, _ = setup
    half = pattern_prune_masks(model, splits.input_shape, hls, "fc1", [0.5])[0.5][1]
    pruned = copy.deepcopy(model)
    apply_masks(pruned, {"fc1": half})
    share, mask = pattern_prune_masks(pruned, splits.input_shape, hls, "fc1", [0.5])[0.5]
    assert share == pytest.approx(0.75, abs=0.01)
    assert torch.all(mask <= half)  # nothing comes back
    # a level that would remove nothing new is not offered, and a layer always keeps a pattern
    tiny = pattern_prune_masks(pruned, splits.input_shape, hls, "fc1", [1e-6, 0.999999])
    assert 1e-6 not in tiny
    assert tiny[0.999999][1].sum() > 0


def test_prune_candidates_follow_the_given_saliency(setup):
    """With a saliency, the patterns it rates lowest go first, whatever their magnitude."""
    splits, model, hls, _, _, _ = setup
    saliency = {"fc1": torch.arange(model.fc1.weight.numel(), dtype=torch.float32).reshape(model.fc1.weight.shape)}
    by_saliency = pattern_prune_masks(model, splits.input_shape, hls, "fc1", [0.5], saliency)[0.5][1]
    by_magnitude = pattern_prune_masks(model, splits.input_shape, hls, "fc1", [0.5])[0.5][1]
    assert not torch.equal(by_saliency, by_magnitude)
    kept = saliency["fc1"][by_saliency.bool()]
    dropped = saliency["fc1"][~by_saliency.bool()]
    assert kept.mean() > dropped.mean()


def test_narrower_precision_keeps_integer_bits(setup):
    _, _, hls, _, _, _ = setup
    narrow = with_weight_precision(hls, "fc2", 8)
    assert str(narrow.layer("fc2").precision.weight) == "ap_fixed<8,6>"
    assert str(narrow.layer("fc1").precision.weight) == "ap_fixed<16,6>"


def test_narrower_precision_takes_integer_bits_from_the_weights(setup):
    _, _, hls, _, _, _ = setup
    weight = torch.tensor([[0.9, -0.3], [0.05, 0.2]])
    narrow = with_weight_precision(hls, "fc2", 8, weight)
    assert str(narrow.layer("fc2").precision.weight) == "ap_fixed<8,1>"  # |w| < 1: one sign bit, 7 fraction bits
    assert str(with_weight_precision(hls, "fc2", 8, weight * 3).layer("fc2").precision.weight) == "ap_fixed<8,3>"


@pytest.mark.parametrize(("threshold", "met", "expected_fractions", "final"), [
    (0.7, False, [0.5, 1.0, 0.75, 0.625], 0.625),  # rejected at 1.0, bisection finds 0.625
    (0.55, False, [0.5, 1.0, 0.75, 0.625], 0.5),  # every retry rejected: the last accepted round stays
    (1.0, True, [0.5, 1.0], 1.0),  # the budget is reached: no retries
    (1.0, False, [0.5, 1.0, 1.0], 1.0),  # accepted at the target but fine-tuning drifted over: one repair round
])
def test_rounds_bisect_after_a_rejected_round(setup, monkeypatch, threshold, met, expected_fractions, final):
    """A rejected round is followed by rounds between the last accepted and the rejected target, each from the
    last accepted model; the result is the last accepted model."""
    from types import SimpleNamespace

    from tenfold.pipeline import joint

    splits, model, hls, cost, _candidates, _before = setup
    seen: list[tuple[float, object]] = []

    def fake_round(ctx, start_model, start_hls, resolved, baseline, fraction, round_index):
        seen.append((fraction, start_model))
        return SimpleNamespace(fraction=fraction), start_hls, []

    def accuracy(candidate, _hls, split="val"):
        return 0.9 if getattr(candidate, "fraction", 0.0) <= threshold + 1e-9 else 0.5

    monkeypatch.setattr(joint, "_one_round", fake_round)
    monkeypatch.setattr(joint, "take_snapshot", lambda *args, **kwargs: kwargs["notes"])
    monkeypatch.setattr(joint, "_meets_budget", lambda *args: met)
    config = SimpleNamespace(budget="dsp<=0.2x", tolerance=0.01, joint=JointSection(rounds=2, retries=2),
                             decompose=SimpleNamespace(regeneration="stream"))
    ctx = SimpleNamespace(config=config, baseline_cost=cost, input_shape=splits.input_shape, accuracy=accuracy)
    result, _hls, notes = joint.joint_compress(ctx, model, hls)
    assert [round(f, 6) for f, _ in seen] == expected_fractions
    assert getattr(result, "fraction", None) == final
    last_accepted = None
    for (fraction, start), note in zip(seen, notes, strict=True):  # each round starts from the last accepted model
        assert getattr(start, "fraction", None) == last_accepted
        if note["accepted"]:
            last_accepted = fraction


@pytest.mark.parametrize("recovers", [True, False])
def test_a_round_below_the_tolerance_gets_recovery_fine_tuning(setup, monkeypatch, recovers):
    """With joint.recovery_epochs, a round that misses the tolerance is fine-tuned that many more epochs and
    judged again; it is accepted only if it then is within the tolerance."""
    from types import SimpleNamespace

    from tenfold.pipeline import joint
    from tenfold.train import TrainConfig

    splits, model, hls, cost, _candidates, _before = setup
    tuned: list[int] = []

    def fake_round(ctx, start_model, start_hls, resolved, baseline, fraction, round_index):
        return SimpleNamespace(fraction=fraction, tuned=False), start_hls, []

    def fake_finetune(ctx, candidate, config, hls):
        tuned.append(config.epochs)
        candidate.tuned = recovers

    def accuracy(candidate, _hls, split="val"):
        if not hasattr(candidate, "fraction"):
            return 0.9
        return 0.9 if candidate.fraction <= 0.5 or candidate.tuned else 0.85

    monkeypatch.setattr(joint, "_one_round", fake_round)
    monkeypatch.setattr(joint, "_float_finetune", fake_finetune)
    monkeypatch.setattr(joint, "_fit_types", lambda ctx, candidate, hls: hls)
    monkeypatch.setattr(joint, "take_snapshot", lambda *args, **kwargs: kwargs["notes"])
    monkeypatch.setattr(joint, "_meets_budget", lambda *args: True)
    config = SimpleNamespace(budget="dsp<=0.2x", tolerance=0.01, seed=0,
                             joint=JointSection(rounds=2, retries=0, recovery_epochs=3),
                             decompose=SimpleNamespace(regeneration="stream"))
    ctx = SimpleNamespace(config=config, baseline_cost=cost, input_shape=splits.input_shape, accuracy=accuracy,
                          seed=0, finetune_config=lambda judged=False: TrainConfig(epochs=1, restore_best=not judged))
    result, _hls, notes = joint.joint_compress(ctx, model, hls)
    assert tuned == [3]  # only the round at the full target missed, and it got exactly 3 more epochs
    assert [note["recovered"] for note in notes] == [False, True]
    assert [note["accepted"] for note in notes] == [True, recovers]
    assert result.fraction == (1.0 if recovers else 0.5)


def test_qat_round_falls_back_to_float_finetuning_when_qat_ends_worse(setup, monkeypatch):
    """A QAT run that ends below its starting fixed-point accuracy is not kept (here: sabotaged weights)."""
    from types import SimpleNamespace

    import tenfold.quantize as quantize_module
    from tenfold.modules import clone_module
    from tenfold.pipeline import joint
    from tenfold.train import TrainConfig, evaluate

    splits, model, hls, _cost, _candidates, _before = setup

    def sabotage(quantized, target):
        with torch.no_grad():
            for parameter in target.parameters():
                parameter.zero_()
        return target

    monkeypatch.setattr(quantize_module, "copy_trained_weights", sabotage)  # joint.qat is opt-in; tested directly
    ctx = SimpleNamespace(splits=splits, progress=False, teacher=lambda: None, input_shape=splits.input_shape,
                          config=SimpleNamespace(joint=JointSection()),
                          accuracy=lambda m, _h, split="val": evaluate(m, getattr(splits, split)).accuracy)
    start = clone_module(model)
    result = joint._quantization_aware_finetune(ctx, start, hls, TrainConfig(epochs=1, lr=1e-3, seed=0))
    assert result is not start  # the float fine-tuned copy, not the sabotaged QAT result
    assert evaluate(result, splits.val).accuracy > 0.8


def test_weight_types_are_refitted_when_fine_tuning_outgrows_them(setup):
    """A narrowed weight type that fine-tuning outgrew would wrap on the chip; the round widens its integer part
    (same width), and leaves types that still hold their weights alone."""
    import copy

    from tenfold.pipeline.candidates import quantized_weight
    from tenfold.quantize import widen_to_fit

    splits, model, hls, _, _, _ = setup
    inputs = splits.train.tensors[0][:256]

    def fit_weight_ranges(trained, config):
        return widen_to_fit(trained, config, inputs)

    narrow = with_weight_precision(hls, "fc2", 8, model.fc2.weight.detach())
    grown = copy.deepcopy(model)
    with torch.no_grad():
        grown.fc2.weight.mul_(4.0)  # what a long fine-tuning can do to a few weights
    wrapped = quantized_weight(grown.fc2.weight.detach(), narrow, "fc2")
    assert (wrapped - grown.fc2.weight).abs().max() > 1.0  # the old type wraps around
    refitted = fit_weight_ranges(grown, narrow)
    kind = refitted.layer("fc2").precision.weight
    assert kind.width == 8 and kind.integer > narrow.layer("fc2").precision.weight.integer
    assert (quantized_weight(grown.fc2.weight.detach(), refitted, "fc2") - grown.fc2.weight).abs().max() <= kind.lsb
    assert str(refitted.layer("fc1").precision.weight) == str(narrow.layer("fc1").precision.weight)
    assert fit_weight_ranges(model, narrow).layer("fc2").precision.weight == narrow.layer("fc2").precision.weight
