"""The search space becomes Tune domains that sample what the sweep file says, and come back as recipe values."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("ray.tune")

from ray.tune.search.sample import Categorical, Float, Integer

from tenfold.errors import ConfigError
from tenfold.pipeline.run import config_with_overrides
from tenfold.sweep.config import sweep_config_from_dict
from tenfold.sweep.space import (
    encoded_keys,
    param_space,
    reports_per_trial,
    search_algorithm,
    trial_overrides,
    trial_scheduler,
)

RECIPE = {"model": {"name": "jet_mlp"}, "budget": "dsp<=0.5x", "methods": ["prune"]}


def make(space, **extra):
    return sweep_config_from_dict({"base": RECIPE, "space": space} | extra)


def test_grid_enumerates_and_random_samples():
    config = make({"budget": {"grid": ["dsp<=0.2x", "dsp<=0.4x"]}, "hardware.reuse_factor": {"choice": [1, 4]},
                   "tolerance": {"uniform": [0.01, 0.05]}, "finetune.lr": {"loguniform": [1e-4, 1e-2]},
                   "prune.steps": {"randint": [1, 3]}}, search="random")
    space = param_space(config)
    assert space["budget"] == {"grid_search": ["dsp<=0.2x", "dsp<=0.4x"]}
    assert isinstance(space["hardware.reuse_factor"], Categorical)
    assert space["hardware.reuse_factor"].categories == [1, 4]
    assert isinstance(space["tolerance"], Float) and (space["tolerance"].lower, space["tolerance"].upper) == (
        0.01, 0.05)
    rng = random.Random(0)
    steps = {space["prune.steps"].sample(random_state=rng.randint(0, 10**6)) for _ in range(200)}
    assert steps == {1, 2, 3}  # randint is inclusive of both ends in the sweep file
    assert isinstance(space["prune.steps"], Integer)
    lrs = [space["finetune.lr"].sample(random_state=i) for i in range(200)]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs)
    assert sum(lr < 1e-3 for lr in lrs) > 60  # log-uniform: half the draws below the geometric middle


def test_choice_is_a_grid_under_grid_search():
    space = param_space(make({"hardware.reuse_factor": {"choice": [1, 4]}}))
    assert space["hardware.reuse_factor"] == {"grid_search": [1, 4]}


def test_list_values_travel_as_json_and_come_back():
    config = sweep_config_from_dict({"base": RECIPE | {"strategy": "joint", "methods": ["prune", "quantize"]},
                                     "space": {"joint.widths": {"choice": [[12, 10], [10, 8, 6]]},
                                               "hardware.reuse_factor": {"choice": [1, 2]}},
                                     "search": "optuna"})
    assert encoded_keys(config) == ["joint.widths"]
    space = param_space(config)
    assert space["joint.widths"].categories == ["[12, 10]", "[10, 8, 6]"]
    overrides = trial_overrides({"joint.widths": "[10, 8, 6]", "hardware.reuse_factor": 2}, encoded_keys(config))
    assert overrides == {"joint.widths": [10, 8, 6], "hardware.reuse_factor": 2}
    assert config_with_overrides(config.base, **overrides).joint.widths == [10, 8, 6]


def test_searchers():
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    assert isinstance(search_algorithm(make({}, search="random")), BasicVariantGenerator)
    assert isinstance(search_algorithm(make({"prune.steps": {"choice": [1, 2]}}, search="optuna")), OptunaSearch)


def test_asha_counts_one_result_per_stage():
    config = make({"prune.steps": {"grid": [1, 2]}}, scheduler="asha")
    assert reports_per_trial(config) == 2  # baseline + prune
    scheduler = trial_scheduler(config)
    assert scheduler._max_t == 2 and scheduler._reduction_factor == 2
    assert trial_scheduler(make({})) is None
    joint_or_not = make({"strategy": {"grid": ["sequential", "joint"]}}, scheduler="asha")
    assert reports_per_trial(joint_or_not) == 4  # methods may change per trial: room for all three stages
    with pytest.raises(ConfigError, match=r"scheduler\.grace_period: must be below the 2 results"):
        trial_scheduler(make({}, scheduler={"type": "asha", "grace_period": 2}))
