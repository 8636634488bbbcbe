"""The iterative pruner end to end, on small real data (scikit-learn digits)."""

from __future__ import annotations

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.hardware import estimate, make_config
from tenfold.prune import BudgetInfeasible, PruneConfig, Pruner, current_masks
from tenfold.prune import pruner as pruner_module
from tenfold.train import TrainConfig

pytest.importorskip("tenfold.knapsack")


@pytest.fixture(scope="module")
def trained(trained_digits_mlp):
    return trained_digits_mlp


def resource_config():
    return make_config(strategy="Resource", reuse_factor=16).with_layer("output", reuse_factor=16)


def test_pattern_pruning_meets_a_dsp_budget_and_keeps_accuracy(trained):
    model, splits = trained
    hls = resource_config()
    config = PruneConfig(budget="dsp<=0.5x", structure="pattern", steps=2, tolerance=0.05,
                         finetune=TrainConfig(epochs=3, lr=3e-3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = Pruner(config, hls, (64,)).fit(model, splits.train, splits.val, progress=False)
    report = result.report
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched
    assert report.met_budget and report.final_resources["dsp"] <= 0.5 * report.baseline_resources["dsp"] + 1e-6
    assert report.final_accuracy >= report.baseline_accuracy - 0.05
    assert len(report.steps) == 2 and all(step.solver for step in report.steps)
    cost = estimate(result.model, (64,), hls)
    assert cost.totals["dsp"] == pytest.approx(report.final_resources["dsp"])
    for name, mask in current_masks(result.model).items():  # pruned weights are exactly zero
        module = result.model.get_submodule(name.split(":")[0])
        assert torch.all(module.weight[mask == 0] == 0)


@pytest.mark.parametrize("permute", [False, True])
def test_interrupted_run_resumes_to_the_same_result(trained, tmp_path, monkeypatch, permute):
    model, splits = trained
    hls = resource_config()
    config = PruneConfig(budget="dsp<=0.5x", structure="pattern", steps=3, tolerance=0.1, permute=permute,
                         finetune=TrainConfig(epochs=1, lr=1e-3))
    reference = Pruner(config, hls, (64,)).fit(model, splits.train, splits.val, progress=False)

    original_step = Pruner._step
    calls = {"n": 0}

    def flaky_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(Pruner, "_step", flaky_step)
    with pytest.raises(KeyboardInterrupt):
        Pruner(config, hls, (64,)).fit(model, splits.train, splits.val, checkpoint_dir=tmp_path, progress=False)
    monkeypatch.setattr(Pruner, "_step", original_step)
    if permute:  # the resumed run reuses the channel order it saved instead of choosing again
        monkeypatch.setattr("tenfold.prune.pruner.choose_orders", lambda *a, **k: pytest.fail("orders re-chosen"))
    resumed = Pruner(config, hls, (64,)).fit(model, splits.train, splits.val, checkpoint_dir=tmp_path,
                                              resume=True, progress=False)
    assert len(resumed.report.steps) == len(reference.report.steps)
    assert resumed.report.permutation == reference.report.permutation and bool(permute) == bool(
        reference.report.permutation)
    for key, value in reference.model.state_dict().items():
        assert torch.allclose(value, resumed.model.state_dict()[key], atol=1e-6), key


def test_infeasible_budget_names_the_smallest_achievable_use(trained):
    model, splits = trained
    config = PruneConfig(budget="lut<=10", structure="pattern", steps=1)
    with pytest.raises(BudgetInfeasible, match="smallest achievable lut"):
        Pruner(config, resource_config(), (64,)).fit(model, splits.train, splits.val, progress=False)
    config = PruneConfig(budget="dsp<=0.01x", structure="neuron", steps=1)  # one neuron per layer costs more
    with pytest.raises(BudgetInfeasible, match="keep at least one structure"):
        Pruner(config, make_config(), (64,)).fit(model, splits.train, splits.val, progress=False)


def test_rejected_steps_keep_the_best_accepted_model(trained):
    model, splits = trained
    config = PruneConfig(budget="dsp<=0.1x", structure="neuron", schedule="binary", steps=3, tolerance=0.0,
                         finetune=TrainConfig(epochs=1, lr=1e-3))
    result = Pruner(config, make_config(), (64,)).fit(model, splits.train, splits.val, progress=False)
    report = result.report
    assert any(not step.accepted for step in report.steps)
    assert report.final_accuracy >= report.baseline_accuracy  # tolerance 0: only lossless steps survive


@pytest.mark.parametrize("repair", [True, False])
def test_a_full_budget_model_over_budget_after_fine_tuning_gets_one_repair_step(trained, tmp_path, monkeypatch, repair):
    """Fine-tuning can move an accepted full-budget model back over the budget (Latency: which multiplications
    need a DSP depends on the weights); the pruner then takes one more step at the full budget, once, and a
    resumed run does not take it again."""
    model, splits = trained
    config = PruneConfig(budget="dsp<=0.5x", structure="pattern", steps=2, tolerance=0.1, repair=repair,
                         finetune=TrainConfig(epochs=1, lr=1e-3))
    real = Pruner._meets_budget
    calls = {"n": 0}

    def drifted_once(self, *args, **kwargs):  # the first check after the schedule sees a drifted model
        calls["n"] += 1
        return False if calls["n"] == 1 else real(self, *args, **kwargs)

    monkeypatch.setattr(Pruner, "_meets_budget", drifted_once)
    result = Pruner(config, resource_config(), (64,)).fit(model, splits.train, splits.val, checkpoint_dir=tmp_path,
                                                         progress=False)
    steps = result.report.steps
    if not repair:
        assert len(steps) == 2 and not any(step.repair for step in steps)
        return
    assert len(steps) == 3 and steps[-1].repair and steps[-1].fraction == 1.0
    assert [step.repair for step in steps[:2]] == [False, False]
    calls["n"] = 0
    resumed = Pruner(config, resource_config(), (64,)).fit(model, splits.train, splits.val, checkpoint_dir=tmp_path,
                                                          resume=True, progress=False)
    assert len(resumed.report.steps) == 3
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_step_below_the_tolerance_gets_recovery_fine_tuning_before_it_is_judged(trained, monkeypatch):
    """With recovery_epochs, a step that misses the tolerance is fine-tuned once more (for that many epochs) and
    judged on the accuracy after it; steps within the tolerance are not."""
    from tenfold.prune import pruner as pruner_module

    model, splits = trained
    calls: list[int] = []
    real_fit = pruner_module.fit

    def counting_fit(model, train, val, config, **kwargs):
        calls.append(config.epochs)
        return real_fit(model, train, val, config, **kwargs)

    monkeypatch.setattr(pruner_module, "fit", counting_fit)
    config = PruneConfig(budget="dsp<=0.1x", structure="pattern", steps=2, retries=1, tolerance=0.0,
                         recovery_epochs=2, finetune=TrainConfig(epochs=1, lr=1e-3))
    report = Pruner(config, resource_config(), (64,)).fit(model, splits.train, splits.val, progress=False).report
    recovered = [step for step in report.steps if step.recovered]
    assert recovered, "a 90% DSP cut at tolerance 0 should miss after one epoch"
    assert calls.count(2) == len(recovered) and calls.count(1) == len(report.steps)
    for step in report.steps:
        assert step.accepted == (step.val_accuracy >= report.baseline_accuracy)
    with pytest.raises(Exception, match="recovery_epochs must be >= 0"):
        PruneConfig(recovery_epochs=-1)


def test_steps_are_judged_on_their_last_epoch_by_default(trained, monkeypatch):
    """The validation set judges each step, so it must not also pick the step's epoch (an optimistic tolerance)."""
    import tenfold.prune.pruner as pruner_module

    model, splits = trained
    seen = []
    real_fit = pruner_module.fit

    def spy(model, train, val, config, *args, **kwargs):
        seen.append(config.restore_best)
        return real_fit(model, train, val, config, *args, **kwargs)

    monkeypatch.setattr(pruner_module, "fit", spy)
    config = PruneConfig(budget="dsp<=0.7x", structure="pattern", steps=1, tolerance=0.2)
    Pruner(config, resource_config(), (64,)).fit(model, splits.train, splits.val, progress=False)
    assert seen and not any(seen)


def test_best_epoch_judging_is_allowed_but_warned(trained):
    model, splits = trained
    config = PruneConfig(budget="dsp<=0.7x", structure="pattern", steps=1, tolerance=0.2,
                         finetune=TrainConfig(epochs=2, lr=1e-3, restore_best=True))
    with pytest.warns(UserWarning, match="restore_best"):
        Pruner(config, resource_config(), (64,)).fit(model, splits.train, splits.val, progress=False)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("structure", "filter", r"unknown structure 'filter'.*pattern"),
    ("importance", "snip", r"unknown importance 'snip'.*taylor"),
    ("normalize", "global", r"unknown normalize 'global'.*layer_max"),
    ("solver", "cplex", r"unknown solver 'cplex'.*exact"),
    ("importance_batches", 0, r"importance_batches must be >= 1"),
    ("time_limit", 0.0, r"time_limit .* must be > 0"),
    ("final_epochs", -1, r"final_epochs must be >= 0"),
])
def test_bad_config_values_are_named_before_any_training(field, value, message):
    with pytest.raises(ConfigError, match=message):
        PruneConfig(**{field: value})


def test_permute_with_a_structure_it_cannot_help_is_refused():
    with pytest.raises(ConfigError, match="nothing to gain with structure 'neuron'"):
        PruneConfig(structure="neuron", permute=True)


def test_final_fine_tuning_keeps_masks_and_budget(trained):
    model, splits = trained
    hls = resource_config()
    config = PruneConfig(budget="dsp<=0.5x", structure="pattern", steps=2, tolerance=0.1, final_epochs=3,
                         finetune=TrainConfig(epochs=1, lr=1e-3))
    result = Pruner(config, hls, (64,)).fit(model, splits.train, splits.val, progress=False)
    final = result.report.final_finetune
    assert final["epochs"] == 3 and final["kept"] and final["reason"] == ""
    assert result.report.final_accuracy == pytest.approx(final["val_after"])
    assert result.report.met_budget
    for name, mask in current_masks(result.model).items():
        module = result.model.get_submodule(name.split(":")[0])
        assert torch.all(module.weight[mask == 0] == 0)


def test_final_fine_tuning_that_breaks_the_tolerance_is_discarded(trained, monkeypatch):
    model, splits = trained
    real_fit = pruner_module.fit

    def fit_then_break(net, train, val, config, *args, **kwargs):
        history = real_fit(net, train, val, config, *args, **kwargs)
        if config.epochs == 2:  # only the final fine-tuning runs 2 epochs here
            with torch.no_grad():
                for module in net.modules():
                    if isinstance(module, torch.nn.Linear):
                        module.bias.fill_(0.0)
                        module.weight_orig.neg_()
                        module.weight.copy_(module.weight_orig * module.weight_mask)
        return history

    monkeypatch.setattr(pruner_module, "fit", fit_then_break)
    config = PruneConfig(budget="dsp<=0.5x", structure="pattern", steps=2, tolerance=0.1, final_epochs=2,
                         finetune=TrainConfig(epochs=1, lr=1e-3))
    result = Pruner(config, resource_config(), (64,)).fit(model, splits.train, splits.val, progress=False)
    final = result.report.final_finetune
    assert not final["kept"] and "tolerance" in final["reason"]
    last_accepted = [step for step in result.report.steps if step.accepted][-1]
    assert result.report.final_accuracy == pytest.approx(last_accepted.val_accuracy)


def test_a_run_that_stops_short_of_the_budget_keeps_its_final_fine_tuning(trained, monkeypatch):
    """Masks do not change in the final cycle, so Resource costs cannot grow: being over the budget before it
    (the tolerance stopped the run early) is no reason to throw it away."""
    model, splits = trained
    monkeypatch.setattr(Pruner, "_meets_budget", lambda self, *args, **kwargs: False)
    config = PruneConfig(budget="dsp<=0.5x", structure="pattern", steps=2, tolerance=0.1, final_epochs=2,
                         repair=False, finetune=TrainConfig(epochs=1, lr=1e-3))
    result = Pruner(config, resource_config(), (64,)).fit(model, splits.train, splits.val, progress=False)
    assert result.report.final_finetune["kept"], result.report.final_finetune
