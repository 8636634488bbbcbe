"""The sweep's search space as Ray Tune sampling objects, and the searcher and scheduler that walk it.

Values that are not scalars (e.g. `joint.widths: {choice: [[12, 10], [10, 8]]}`) travel through Tune as JSON
strings, because Optuna only samples scalars; `trial_overrides` turns them back into recipe values.
"""

from __future__ import annotations

import json
from typing import Any

from tenfold.errors import ConfigError
from tenfold.sweep.config import SweepConfig

_SCALARS = (str, int, float, bool, type(None))


def encoded_keys(config: SweepConfig) -> list[str]:
    """Space keys whose values travel as JSON strings."""
    return [dim.key for dim in config.space if dim.finite and not all(isinstance(v, _SCALARS) for v in dim.values)]


def param_space(config: SweepConfig) -> dict[str, Any]:
    """Flat {dotted recipe key: Tune domain}; `search: grid` enumerates `choice` too."""
    from ray import tune

    encoded = set(encoded_keys(config))
    space: dict[str, Any] = {}
    for dim in config.space:
        if dim.finite:
            values = [json.dumps(v) for v in dim.values] if dim.key in encoded else list(dim.values)
            enumerate_all = dim.kind == "grid" or config.search == "grid"
            space[dim.key] = tune.grid_search(values) if enumerate_all else tune.choice(values)
        elif dim.kind == "uniform":
            space[dim.key] = tune.uniform(*dim.values)
        elif dim.kind == "loguniform":
            space[dim.key] = tune.loguniform(*dim.values)
        else:  # randint: inclusive in the sweep file, exclusive upper end in Tune
            space[dim.key] = tune.randint(dim.values[0], dim.values[1] + 1)
    return space


def trial_overrides(trial_config: dict[str, Any], encoded: list[str]) -> dict[str, Any]:
    """The recipe overrides of one trial, with JSON-encoded values decoded."""
    return {key: json.loads(value) if key in encoded else value for key, value in trial_config.items()}


def reports_per_trial(config: SweepConfig) -> int:
    """Intermediate results a full trial reports: the baseline and one per pipeline stage."""
    from tenfold.pipeline.run import stage_names

    swept = {dim.key for dim in config.space}
    stages = 3 if swept & {"methods", "strategy"} else len(stage_names(config.base))
    return 1 + stages


def search_algorithm(config: SweepConfig):
    """Tune's basic generator (grid and random, seeded) or Optuna's model-based TPE sampler.

    The basic generator limits concurrency itself; Tune applies `max_concurrent_trials` only to a Searcher.
    """
    if config.search == "optuna":
        try:
            import optuna  # noqa: F401 - OptunaSearch imports it lazily and fails late without it
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            from tenfold.sweep.runner import DistributedUnavailable

            raise DistributedUnavailable("search: optuna needs Optuna") from None
        return OptunaSearch(seed=config.seed)
    from ray.tune.search import BasicVariantGenerator

    return BasicVariantGenerator(max_concurrent=config.max_concurrent or 0, random_state=config.seed)


def trial_scheduler(config: SweepConfig):
    """ASHA over pipeline stages (None means first in, first out)."""
    if config.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_t = reports_per_trial(config)
    if config.asha.grace_period >= max_t:
        raise ConfigError(f"scheduler.grace_period: must be below the {max_t} results a trial reports (baseline "
                          f"and one per stage), got {config.asha.grace_period}; ASHA could never stop a trial")
    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=config.asha.grace_period,
                         reduction_factor=config.asha.reduction_factor)
