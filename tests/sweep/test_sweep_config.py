"""The sweep file is read strictly: unknown keys, bad space entries and invalid recipe values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenfold.errors import ConfigError
from tenfold.sweep.config import load_sweep_config, sweep_config_from_dict

REPO_ROOT = Path(__file__).resolve().parents[2]

RECIPE = {"model": {"name": "jet_mlp"}, "budget": "dsp<=0.5x", "methods": ["prune"]}


def sweep(**extra):
    return {"base": RECIPE} | extra


def test_defaults_and_inferred_mode():
    config = sweep_config_from_dict(sweep(space={"budget": {"grid": ["dsp<=0.2x", "dsp<=0.4x"]}}))
    assert config.search == "grid" and config.metric == "val_accuracy" and config.mode == "max"
    assert config.objectives == ["dsp", "bram18", "lut", "latency_cycles"]
    assert config.expected_trials == 2
    assert sweep_config_from_dict(sweep(metric="dsp")).mode == "min"


def test_expected_trials_per_search():
    space = {"budget": {"grid": ["dsp<=0.2x", "dsp<=0.4x"]}, "hardware.reuse_factor": {"choice": [1, 2, 4]},
             "tolerance": {"uniform": [0.01, 0.05]}}
    random = sweep_config_from_dict(sweep(space=space, search="random", num_samples=5))
    assert random.expected_trials == 10  # the grid dimension is enumerated, the others sampled num_samples times
    grid = sweep_config_from_dict(sweep(space={k: v for k, v in space.items() if k != "tolerance"}, num_samples=2))
    assert grid.expected_trials == 12  # under search: grid, choice is enumerated as well
    optuna = sweep_config_from_dict(sweep(space={"hardware.reuse_factor": {"choice": [1, 2]}}, search="optuna",
                                          num_samples=7))
    assert optuna.expected_trials == 7


@pytest.mark.parametrize(("raw", "message"), [
    (sweep(serach="grid"), r"serach: unknown key; did you mean 'search'"),
    ({"space": {}}, r"base: missing"),
    (sweep(space={"prune.stpes": {"grid": [1, 2]}}), r"space\.prune\.stpes: not a key of the run recipe; "
                                                      r"did you mean 'prune\.steps'"),
    (sweep(space={"hardware": {"grid": [1]}}), r"space\.hardware: is a section of the run recipe; "
                                               r"name one of its keys: hardware\.device"),
    (sweep(space={"train.epochs": {"grid": [1]}}), r"space\.train\.epochs: the base recipe has no 'train' section"),
    (sweep(space={"prune.steps": {"range": [1, 3]}}), r"space\.prune\.steps\.range: unknown kind"),
    (sweep(space={"prune.steps": [1, 2]}), r"space\.prune\.steps: write one of \{grid: \.\.\.\}"),
    (sweep(space={"prune.steps": {"grid": []}}), r"space\.prune\.steps\.grid: expected a non-empty list"),
    (sweep(space={"tolerance": {"uniform": [0.05, 0.01]}}, search="random"),
     r"space\.tolerance\.uniform: low must be below high"),
    (sweep(space={"finetune.lr": {"loguniform": [0, 0.1]}}, search="random"),
     r"space\.finetune\.lr\.loguniform: both ends must be positive"),
    (sweep(space={"prune.steps": {"randint": [1, 2.5]}}, search="random"),
     r"space\.prune\.steps\.randint: expected \[low, high\] integers"),
    (sweep(space={"prune.steps": {"grid": [1, "two"]}}), r"space\.prune\.steps: the value 'two' makes an invalid "
                                                        r"recipe: prune\.steps: expected int"),
    (sweep(space={"budget": {"grid": ["dsp<=0.5x", "dsp<<2"]}}), r"space\.budget: the value 'dsp<<2'"),
    (sweep(space={"finetune.epochs": {"uniform": [1, 3]}}, search="random"),
     r"space\.finetune\.epochs: the value 1\.0 makes an invalid recipe: finetune\.epochs: expected int"),
    (sweep(space={"tolerance": {"uniform": [0.0, 0.1]}}), r"space\.tolerance: search: grid needs listed values"),
    (sweep(space={"prune.steps": {"grid": [1, 2]}}, search="optuna"), r"space\.prune\.steps: search: optuna "
                                                                      r"samples and cannot enumerate a grid"),
    (sweep(search="bayes"), r"search: one of grid, random, optuna"),
    (sweep(metric="accuracy"), r"metric: one of val_accuracy"),
    (sweep(objectives=["dsp", "power"]), r"objectives: .*'power' is not one"),
    (sweep(scheduler="hyperband"), r"scheduler: one of none, asha"),
    (sweep(scheduler={"type": "asha", "grace_perod": 1}),
     r"scheduler\.grace_perod: unknown key; did you mean 'grace_period'"),
    (sweep(resources_per_trial={"gpus": 1}), r"resources_per_trial\.gpus: unknown key"),
    (sweep(resources_per_trial={"cpus": 0}), r"resources_per_trial\.cpus: at least 1"),
    (sweep(num_samples="3"), r"num_samples: expected int"),
    (sweep(max_concurrent=0), r"max_concurrent: at least 1"),
    (sweep(set={"export.hls4mll": False}), r"set\.export\.hls4mll: not a key of the run recipe"),
    ({"base": RECIPE | {"prune": {"stpes": 2}}}, r"base\.prune\.stpes: unknown key"),
])
def test_bad_sweeps_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        sweep_config_from_dict(raw)


def test_combinations_are_checked_together():
    # each value alone is fine, but the joint strategy without a budget is not a valid recipe
    raw = {"base": RECIPE | {"budget": None, "prune": {"budget": "dsp<=0.5x"}},
           "space": {"strategy": {"grid": ["sequential", "joint"]}, "budget": {"grid": [None, "dsp<=0.3x"]}}}
    with pytest.raises(ConfigError, match=r"space: the combination strategy='joint', budget=None makes an invalid"):
        sweep_config_from_dict(raw)


def test_set_overrides_the_base_before_the_space():
    config = sweep_config_from_dict(sweep(set={"export.hls4ml": False, "prune.steps": 1},
                                          space={"hardware.strategy": {"grid": ["Latency", "Resource"]}}))
    assert config.base.export.hls4ml is False and config.base.prune.steps == 1
    assert config.identity()["base"]["prune"]["steps"] == 1


def test_non_scalar_values_are_allowed_for_list_keys():
    config = sweep_config_from_dict(
        {"base": RECIPE | {"strategy": "joint", "methods": ["prune", "quantize"]},
         "space": {"joint.widths": {"choice": [[12, 10], [10, 8, 6]]}}, "search": "random"})
    assert config.space[0].values == [[12, 10], [10, 8, 6]]


def test_base_file_is_relative_to_the_sweep_file(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "r.yaml").write_text("model: {name: jet_mlp}\nbudget: dsp<=0.5x\n")
    (tmp_path / "recipes" / "s.yaml").write_text("base: r.yaml\nspace: {prune.steps: {grid: [1, 2]}}\n")
    config = load_sweep_config(tmp_path / "recipes" / "s.yaml")
    assert config.base_file == str(tmp_path / "recipes" / "r.yaml")
    assert config.expected_trials == 2
    (tmp_path / "recipes" / "bad.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"base \(.*missing\.yaml\): config file .* does not exist"):
        load_sweep_config(tmp_path / "recipes" / "bad.yaml")


def test_recipe_paths_become_absolute(tmp_path):
    (tmp_path / "cfg.yml").write_text("Model: {Precision: 'fixed<16,6>'}\n")
    raw = sweep(base=RECIPE | {"hardware": {"hls4ml_config": "cfg.yml"}})
    config = sweep_config_from_dict(raw, cwd=tmp_path)
    assert config.base.hardware.hls4ml_config == str((tmp_path / "cfg.yml").resolve())


def test_yaml_problems(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep_config(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- base\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_sweep_config(tmp_path / "list.yaml")


def test_the_example_sweep_parses():
    config = load_sweep_config(REPO_ROOT / "examples" / "sweep_digits.yaml")
    assert config.base_file.endswith("digits_mlp_prune.yaml")
    assert {d.key for d in config.space} == {"budget", "hardware.reuse_factor", "hardware.strategy"}
    assert config.expected_trials == 12
    assert config.base.export.hls4ml is False
