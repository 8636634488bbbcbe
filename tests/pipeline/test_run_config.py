"""The run recipe is read strictly: every mistake names its key."""

from __future__ import annotations

import pytest

from tenfold.errors import ConfigError
from tenfold.pipeline.config import load_run_config, run_config_from_dict
from tenfold.pipeline.run import config_with_overrides

BASE = {"model": {"name": "jet_mlp"}, "budget": "dsp<=0.5x", "methods": ["prune"]}


def test_minimal_recipe_gets_defaults():
    config = run_config_from_dict(BASE)
    assert config.data.name == "digits"
    assert config.prune.structure == "pattern"
    assert config.finetune.epochs == 2
    assert config.tolerance == 0.01


@pytest.mark.parametrize(("raw", "message"), [
    (BASE | {"prune": {"stpes": 3}}, r"prune\.stpes: unknown key; did you mean 'steps'"),
    (BASE | {"budgett": "dsp<=1x"}, r"budgett: unknown key; did you mean 'budget'"),
    (BASE | {"prune": {"steps": "many"}}, r"prune\.steps: expected int"),
    (BASE | {"methods": ["prune", "distill"]}, r"methods: unknown method 'distill'"),
    (BASE | {"budget": "dsp<<3"}, r"budget: cannot parse budget term"),
    (BASE | {"tolerance": 1.5}, r"tolerance: an absolute accuracy drop"),
    ({"budget": "dsp<=1x"}, r"model: give exactly one of"),
    (BASE | {"model": {"name": "lenet", "checkpoint": "a.pt"}}, r"model: give exactly one of"),
    (BASE | {"strategy": "joint", "budget": None}, r"budget: the joint strategy needs"),
    (BASE | {"data": ["digits"]}, r"data: expected a mapping"),
    (BASE | {"decompose": {"bits": 1}}, r"decompose\.bits"),
    (BASE | {"decompose": {"refine_steps": -1}}, r"decompose\.refine_steps: must be >= 0"),
    (BASE | {"joint": {"retries": -2}}, r"joint\.retries: must be >= 0"),
    (BASE | {"joint": {"prune_levels": [0.5, 1.0]}}, r"joint\.prune_levels: .* got 1\.0"),
    (BASE | {"joint": {"importance": "random"}}, r"joint\.importance: one of"),
    (BASE | {"train": {"distill_alpha": 0.5}}, r"train\.distill_alpha: training from scratch has no teacher"),
    (BASE | {"finetune": {"augment": "mixup"}}, r"finetune: augment must be one of"),
    (BASE | {"finetune": {"distill_alpha": 2.0}}, r"finetune: distill_alpha must be in \[0, 1\]"),
])
def test_bad_recipes_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(raw)


def test_single_method_string_is_a_list():
    assert run_config_from_dict(BASE | {"methods": "prune"}).methods == ["prune"]


def test_yaml_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_run_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_run_config(scalar)


def test_overrides_by_dotted_key():
    config = config_with_overrides(run_config_from_dict(BASE), **{"prune.steps": 7, "tolerance": 0.02})
    assert config.prune.steps == 7 and config.tolerance == 0.02
    with pytest.raises(ConfigError, match="unknown key"):
        config_with_overrides(config, **{"prune.nope": 1})


def test_every_example_recipe_parses():
    from pathlib import Path

    examples = [p for p in sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
                if not p.name.startswith("sweep")]
    assert examples, "examples/ should hold recipes"
    for path in examples:
        load_run_config(path)


def test_finetune_distillation_and_augmentation_reach_the_train_config():
    config = run_config_from_dict(BASE | {"finetune": {"distill_alpha": 0.5, "augment": "crop"}})
    train = config.finetune.to_train_config(0)
    assert (train.distill_alpha, train.augment) == (0.5, "crop")
