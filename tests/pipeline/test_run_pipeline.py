"""`tenfold run` end to end on digits: outputs, report, plots, resume and overwrite protection."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tenfold.errors import ConfigError
from tenfold.pipeline.config import run_config_from_dict
from tenfold.pipeline.run import run

RECIPE = {
    "model": {"name": "jet_mlp"},
    "data": {"name": "digits"},
    "train": {"epochs": 8, "lr": 0.003},
    "budget": "dsp<=0.5x",
    "tolerance": 0.05,
    "methods": ["prune"],
    "prune": {"steps": 2},
    "finetune": {"epochs": 1},
    "export": {"hls4ml": shutil.which("g++") is not None, "check_samples": 20},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    return run(run_config_from_dict(RECIPE), out, progress=False)


def test_run_writes_model_report_and_plots(finished):
    out = finished.out_dir
    for name in ("model.pt", "hls4ml_config.json", "report.json", "report.md", "layer_resources.png", "pareto.png",
                 "rank_sparsity.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report["snapshots"][0]["label"] == "baseline"
    assert report["snapshots"][-1]["label"] == "prune"
    assert report["reduction"]["dsp"] > 0.2  # the pruner removed a real share of the multipliers
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    text = (out / "report.md").read_text()
    assert "| DSP |" in text and "## Layers" in text


def test_final_snapshot_matches_saved_model(finished):
    from tenfold.hardware import estimate
    from tenfold.train import load_model

    model = load_model(finished.out_dir / "model.pt")
    totals = estimate(model, finished.input_shape, finished.hls_config).totals
    assert totals["dsp"] == pytest.approx(finished.report.final.totals["dsp"])


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed for hls4ml's C simulation")
def test_export_is_bit_exact(finished):
    assert finished.report.export["csim"] == "bit-exact"


def test_output_folder_is_not_overwritten(finished):
    with pytest.raises(ConfigError, match="not empty"):
        run(run_config_from_dict(RECIPE), finished.out_dir, progress=False)


def test_resume_finishes_from_saved_stage(tmp_path, finished):
    out = tmp_path / "resumed"
    shutil.copytree(finished.out_dir, out)
    state = json.loads((out / "run_state.json").read_text())
    assert state["done"] == ["baseline", "prune"]
    for name in ("report.json", "model.pt"):
        (out / name).unlink()
    config = run_config_from_dict(RECIPE | {"export": {"hls4ml": False}})
    resumed = run(config, out, resume=True, progress=False)
    assert resumed.report.final.totals == finished.report.final.totals
    assert resumed.report.final.val_accuracy == finished.report.final.val_accuracy
    first = dict(finished.model.state_dict())
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, first[key]), key


def test_resume_without_state_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        run(run_config_from_dict(RECIPE), tmp_path / "empty", resume=True, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(p.name for p in (__import__("pathlib").Path(__file__).parents[2] /
                                                           "examples").glob("digits_*.yaml")))
def test_every_example_recipe_runs(recipe, tmp_path):
    """`tenfold run` on each shipped example (minutes each: run with -m slow)."""
    from pathlib import Path

    from tenfold.pipeline.config import load_run_config

    config = load_run_config(Path(__file__).parents[2] / "examples" / recipe)
    result = run(config, tmp_path / "out", progress=False)
    assert (result.out_dir / "report.md").is_file()
    assert result.report.final.val_accuracy is not None
    if result.report.export.get("csim") not in (None,):
        assert result.report.export["csim"] == "bit-exact"


@pytest.mark.parametrize("strategy", ["sequential", "joint"])
def test_finetuning_distils_from_the_starting_model(tmp_path, monkeypatch, strategy):
    """With finetune.distill_alpha every fine-tuning call of the run gets a frozen copy of the start model."""
    import tenfold.train as train_module

    calls = []
    real_fit = train_module.fit

    def spy(model, *args, teacher=None, **kwargs):
        calls.append(teacher)
        return real_fit(model, *args, teacher=teacher, **kwargs)

    monkeypatch.setattr(train_module, "fit", spy)
    monkeypatch.setattr("tenfold.prune.pruner.fit", spy)
    recipe = RECIPE | {"finetune": {"epochs": 1, "distill_alpha": 0.5}, "export": {"hls4ml": False},
                       "methods": ["prune", "decompose"] if strategy == "joint" else ["decompose"],
                       "strategy": strategy, "joint": {"rounds": 1, "retries": 0, "prune_levels": [0.5, 0.9],
                                                       "ranks": [0.25], "widths": []},
                       "decompose": {"target": "2x", "sensitivity_batches": 1}}
    result = run(run_config_from_dict(recipe), tmp_path / "out", progress=False)
    finetune_teachers = [t for t in calls if t is not None]
    assert finetune_teachers, "no fine-tuning call received a teacher"
    teacher = finetune_teachers[0]
    assert all(t is teacher for t in finetune_teachers)  # one frozen copy for the whole run
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert result.report.snapshots[-1].val_accuracy > 0.5


@pytest.mark.parametrize("strategy", ["sequential", "joint"])
def test_judged_finetuning_ends_on_its_last_epoch(tmp_path, monkeypatch, strategy):
    """Pruning steps and joint rounds are accepted on the validation set, so fine-tuning must not pick its best
    epoch on that set; the recipe's initial training (8 epochs here) still restores its best epoch."""
    import tenfold.train as train_module

    calls = []
    real_fit = train_module.fit

    def spy(model, train, val, config, *args, **kwargs):
        calls.append((config.epochs, config.restore_best))
        return real_fit(model, train, val, config, *args, **kwargs)

    monkeypatch.setattr(train_module, "fit", spy)
    monkeypatch.setattr("tenfold.prune.pruner.fit", spy)
    recipe = RECIPE | {"export": {"hls4ml": False}, "strategy": strategy,
                       "joint": {"rounds": 1, "retries": 0, "prune_levels": [0.5, 0.9], "ranks": [], "widths": []}}
    run(run_config_from_dict(recipe), tmp_path / "out", progress=False)
    finetuning = [restore for epochs, restore in calls if epochs == 1]
    assert finetuning and not any(finetuning)


def test_recipe_permute_reaches_the_pruner(tmp_path, monkeypatch):
    from tenfold.prune import Pruner

    seen = []
    real_init = Pruner.__init__

    def spy(self, config, *args, **kwargs):
        seen.append(config.permute)
        real_init(self, config, *args, **kwargs)

    monkeypatch.setattr(Pruner, "__init__", spy)
    recipe = RECIPE | {"export": {"hls4ml": False}, "prune": {"steps": 1, "permute": True}}
    result = run(run_config_from_dict(recipe), tmp_path / "out", progress=False)
    assert seen == [True] and result.report.snapshots
