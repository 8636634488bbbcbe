"""The `tenfold sweep` file: a base `tenfold run` recipe, a search space over its keys, and how to search it.

Strict for the same reason as the run recipe: a sweep burns hours of compute, so a misspelt key or a space
entry that names no recipe key must stop it before Ray starts, with the key's path and the closest valid name.

```yaml
base: digits_mlp_prune.yaml          # a recipe file (relative to this file) or an inline recipe mapping
set: {export.hls4ml: false}          # fixed overrides of the base recipe (like `tenfold run --set`)
space:                               # dotted recipe keys → {grid|choice|uniform|loguniform|randint: ...}
  budget: {grid: ["dsp<=0.25x", "dsp<=0.5x"]}
  hardware.reuse_factor: {grid: [1, 4]}
search: grid                         # grid | random | optuna
num_samples: 1                       # repeats of the grid (grid, random) or number of trials (optuna)
metric: val_accuracy                 # what the searcher and the scheduler optimise; mode inferred
objectives: [dsp, bram18, lut, latency_cycles]   # costs of the accuracy/cost Pareto front
scheduler: none                      # none | asha | {type: asha, grace_period: 1, reduction_factor: 2}
max_concurrent: 2
resources_per_trial: {cpus: 1}
```
`randint: [a, b]` draws integers from a to b inclusive. With `search: grid`, `choice` is enumerated like `grid`.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.errors import ConfigError
from tenfold.pipeline.config import RunConfig, load_run_config, run_config_from_dict

SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("none", "asha")
KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
FINITE_KINDS = ("grid", "choice")
# what a trial reports, and which way is better
METRIC_MODES = {"val_accuracy": "max", "test_accuracy": "max", "dsp": "min", "bram18": "min", "lut": "min",
                "ff": "min", "latency_cycles": "min", "stored_parameters": "min"}
OBJECTIVES = ("dsp", "bram18", "lut", "ff", "latency_cycles", "stored_parameters")
# recipe keys holding file paths: made absolute, because Ray runs trials in other working directories
PATH_KEYS = ("model.checkpoint", "model.pretrained", "data.path", "hardware.hls4ml_config")
# validating every grid combination is cheap up to this many; beyond it each dimension is checked alone
MAX_COMBINATIONS_CHECKED = 4096


@dataclass
class Dimension:
    """One axis of the search space: a dotted recipe key and how to draw its value."""

    key: str
    kind: str
    values: list[Any]

    @property
    def finite(self) -> bool:
        return self.kind in FINITE_KINDS

    def representatives(self) -> list[Any]:
        """Values that must all make a valid recipe: every listed value, or both ends of a range."""
        if self.kind in ("uniform", "loguniform"):
            return [float(v) for v in self.values]
        return list(self.values)


@dataclass
class AshaSection:
    """Asynchronous successive halving: stop trials whose intermediate results trail their peers'."""

    grace_period: int = 1
    reduction_factor: int = 2


@dataclass
class Resources:
    """What one trial gets; torch uses `cpus` threads."""

    cpus: int = 1


@dataclass
class SweepConfig:
    """A whole sweep: the recipe every trial starts from, the space, and the search settings."""

    base: RunConfig
    space: list[Dimension] = field(default_factory=list)
    search: str = "grid"
    num_samples: int = 1
    metric: str = "val_accuracy"
    mode: str = ""
    objectives: list[str] = field(default_factory=lambda: ["dsp", "bram18", "lut", "latency_cycles"])
    scheduler: str = "none"
    asha: AshaSection = field(default_factory=AshaSection)
    max_concurrent: int | None = None
    resources_per_trial: Resources = field(default_factory=Resources)
    max_failures: int = 1
    seed: int = 0
    name: str = "sweep"
    output: str | None = None
    base_file: str | None = None

    def __post_init__(self) -> None:
        self.mode = self.mode or METRIC_MODES.get(self.metric, "")
        self.validate()

    def validate(self) -> None:
        """Checks that need the whole sweep, each naming the key to fix."""
        if self.search not in SEARCHES:
            raise ConfigError(f"search: one of {', '.join(SEARCHES)}, got {self.search!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler: one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.metric not in METRIC_MODES:
            raise ConfigError(f"metric: one of {', '.join(METRIC_MODES)}, got {self.metric!r}")
        if self.mode not in ("max", "min"):
            raise ConfigError(f"mode: 'max' or 'min', got {self.mode!r}")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown or not self.objectives:
            raise ConfigError(f"objectives: list costs from {', '.join(OBJECTIVES)}"
                              + (f"; {unknown[0]!r} is not one" if unknown else ""))
        for key, value, low in (("num_samples", self.num_samples, 1), ("max_failures", self.max_failures, 0),
                                ("resources_per_trial.cpus", self.resources_per_trial.cpus, 1),
                                ("asha.grace_period", self.asha.grace_period, 1),
                                ("asha.reduction_factor", self.asha.reduction_factor, 2)):
            if value < low:
                raise ConfigError(f"{key}: at least {low}, got {value}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"max_concurrent: at least 1, got {self.max_concurrent}")
        for dim in self.space:
            if self.search == "grid" and not dim.finite:
                raise ConfigError(f"space.{dim.key}: search: grid needs listed values, not {dim.kind}; "
                                  "write {grid: [...]} or use search: random or optuna")
            if self.search == "optuna" and dim.kind == "grid":
                raise ConfigError(f"space.{dim.key}: search: optuna samples and cannot enumerate a grid; "
                                  "write {choice: [...]} instead")

    @property
    def expected_trials(self) -> int:
        """How many trials the sweep runs when nothing stops it early."""
        if self.search == "optuna":
            return self.num_samples
        enumerated = [len(d.values) for d in self.space if d.kind == "grid" or self.search == "grid"]
        return self.num_samples * math.prod(enumerated)

    def identity(self) -> dict[str, Any]:
        """What defines the trials; a resumed sweep must match it exactly."""
        return {"base": self.base.to_dict(), "space": {d.key: {d.kind: d.values} for d in self.space},
                "search": self.search, "num_samples": self.num_samples, "metric": self.metric, "mode": self.mode,
                "scheduler": self.scheduler, "asha": dataclasses.asdict(self.asha), "seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        return self.identity() | {
            "objectives": self.objectives, "max_concurrent": self.max_concurrent,
            "resources_per_trial": dataclasses.asdict(self.resources_per_trial), "max_failures": self.max_failures,
            "name": self.name, "output": self.output, "base_file": self.base_file}


_TOP_KEYS = ("base", "set", "space", "search", "num_samples", "metric", "mode", "objectives", "scheduler",
             "max_concurrent", "resources_per_trial", "max_failures", "seed", "name", "output")


def load_sweep_config(path: str | Path, *, cwd: str | Path | None = None) -> SweepConfig:
    """Read a sweep YAML file; `base:` paths are relative to it, paths inside recipes to `cwd` (as `tenfold run`)."""
    from tenfold.io import read_yaml_mapping

    path = Path(path)
    raw = read_yaml_mapping(path, what="sweep file", hint=f"a YAML sweep with keys {', '.join(_TOP_KEYS)}; see "
                            "examples/sweep_digits.yaml")
    return sweep_config_from_dict(raw, base_dir=path.parent, cwd=cwd)


def sweep_config_from_dict(raw: dict[str, Any], *, base_dir: str | Path = ".",
                           cwd: str | Path | None = None) -> SweepConfig:
    """Build a SweepConfig, checking every key and every space entry against the base recipe."""
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{key}: unknown key{_suggest(str(key), _TOP_KEYS)}")
    if "base" not in raw:
        raise ConfigError("base: missing; give a run recipe file (e.g. base: digits_mlp_prune.yaml) or a mapping")
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    base, base_file = _read_base(raw["base"], Path(base_dir))
    base = _absolute_paths(_apply_set(base, raw.get("set")), cwd)
    space = _read_space(raw.get("space") or {}, base, cwd)
    scheduler, asha = _read_scheduler(raw.get("scheduler", "none"))
    kwargs: dict[str, Any] = {
        "search": _typed(raw, "search", str, "grid"),
        "num_samples": _typed(raw, "num_samples", int, 1),
        "metric": _typed(raw, "metric", str, "val_accuracy"),
        "mode": _typed(raw, "mode", str, ""),
        "objectives": _read_objectives(raw.get("objectives")),
        "max_concurrent": _typed(raw, "max_concurrent", int, None),
        "resources_per_trial": _read_resources(raw.get("resources_per_trial")),
        "max_failures": _typed(raw, "max_failures", int, 1),
        "seed": _typed(raw, "seed", int, 0),
        "name": _typed(raw, "name", str, "sweep"),
        "output": _typed(raw, "output", str, None),
    }
    config = SweepConfig(base=base, space=space, scheduler=scheduler, asha=asha, base_file=base_file, **kwargs)
    check_combinations(config)
    return config


# ---------------------------------------------------------------------------------------------- base recipe


def _read_base(value: Any, base_dir: Path) -> tuple[RunConfig, str | None]:
    if isinstance(value, str):
        path = Path(value)
        path = path if path.is_absolute() else base_dir / path
        try:
            return load_run_config(path), str(path)
        except ConfigError as exc:
            raise ConfigError(f"base ({path}): {exc}") from None
    if isinstance(value, dict):
        try:
            return run_config_from_dict(value), None
        except ConfigError as exc:
            raise ConfigError(f"base.{exc}") from None
    raise ConfigError(f"base: a recipe file path or a mapping, got {type(value).__name__}")


def _apply_set(base: RunConfig, raw: Any) -> RunConfig:
    from tenfold.pipeline.run import config_with_overrides

    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError(f"set: a mapping of dotted recipe keys to values, got {type(raw).__name__}")
    leaves = _leaf_keys(base.to_dict())
    for key in raw:
        _check_key(str(key), base.to_dict(), leaves, where="set")
    try:
        return config_with_overrides(base, **{str(k): v for k, v in raw.items()})
    except ConfigError as exc:
        raise ConfigError(f"set: {exc}") from None


def _absolute_paths(config: RunConfig, cwd: Path) -> RunConfig:
    """Relative file paths in the recipe resolved against the directory the sweep was started from."""
    from tenfold.pipeline.run import config_with_overrides

    overrides = {}
    for key in PATH_KEYS:
        value = _get(config.to_dict(), key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and (cwd / value).exists():
            overrides[key] = str((cwd / value).resolve())
    return config_with_overrides(config, **overrides) if overrides else config


# ---------------------------------------------------------------------------------------------- space


def _read_space(raw: Any, base: RunConfig, cwd: Path) -> list[Dimension]:
    if not isinstance(raw, dict):
        raise ConfigError(f"space: a mapping of dotted recipe keys to {{grid: [...]}} etc., got {type(raw).__name__}")
    leaves = _leaf_keys(base.to_dict())
    dims = []
    for key, spec in raw.items():
        key = str(key)
        _check_key(key, base.to_dict(), leaves)
        dim = _read_dimension(key, spec)
        if key in PATH_KEYS:
            dim.values = [str((cwd / v).resolve()) if isinstance(v, str) and (cwd / v).exists() else v
                          for v in dim.values]
        dims.append(dim)
    return dims


def _read_dimension(key: str, spec: Any) -> Dimension:
    where = f"space.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: write one of {', '.join('{' + k + ': ...}' for k in KINDS)}, got {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind not in KINDS:
        raise ConfigError(f"{where}.{kind}: unknown kind{_suggest(str(kind), KINDS)}")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}.{kind}: expected a non-empty list, got {values!r}")
    if kind in FINITE_KINDS:
        return Dimension(key, kind, list(values))
    if len(values) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{where}.{kind}: expected [low, high] numbers, got {values!r}")
    low, high = values
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low must be below high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.loguniform: both ends must be positive, got [{low}, {high}]")
    if kind == "randint" and not all(isinstance(v, int) for v in values):
        raise ConfigError(f"{where}.randint: expected [low, high] integers, got {values!r}")
    return Dimension(key, kind, [low, high])


def _check_key(key: str, recipe: dict[str, Any], leaves: list[str], *, where: str = "space") -> None:
    """The dotted key must name one value of the recipe, not a section and not a typo."""
    node: Any = recipe
    for depth, part in enumerate(key.split(".")):
        if node is None:
            section = ".".join(key.split(".")[:depth])
            raise ConfigError(f"{where}.{key}: the base recipe has no '{section}' section; add one to set its keys")
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{where}.{key}: not a key of the run recipe{_suggest(key, leaves)}")
        node = node[part]
    if isinstance(node, dict) and key.split(".")[-1] != "options":
        inner = ", ".join(f"{key}.{k}" for k in node)
        raise ConfigError(f"{where}.{key}: is a section of the run recipe; name one of its keys: {inner}")


def check_combinations(config: SweepConfig) -> None:
    """Every value of the space must make a valid recipe: all grid combinations when few, else each value alone."""
    from tenfold.pipeline.run import config_with_overrides

    if not config.space:
        return
    options = [dim.representatives() for dim in config.space]
    keys = [dim.key for dim in config.space]
    if math.prod(len(o) for o in options) <= MAX_COMBINATIONS_CHECKED:
        combos = ((dict(zip(keys, values, strict=True))) for values in itertools.product(*options))
    else:
        combos = ({dim.key: value} for dim, values in zip(config.space, options, strict=True) for value in values)
    for overrides in combos:
        try:
            config_with_overrides(config.base, **overrides)
        except ConfigError as exc:
            if len(overrides) == 1:
                [(key, value)] = overrides.items()
                raise ConfigError(f"space.{key}: the value {value!r} makes an invalid recipe: {exc}") from None
            shown = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
            raise ConfigError(f"space: the combination {shown} makes an invalid recipe: {exc}") from None


# ---------------------------------------------------------------------------------------------- small sections


def _read_scheduler(raw: Any) -> tuple[str, AshaSection]:
    if raw is None or isinstance(raw, str):
        return (raw or "none"), AshaSection()
    if not isinstance(raw, dict):
        raise ConfigError(f"scheduler: 'none', 'asha' or a mapping with 'type', got {raw!r}")
    allowed = ("type", "grace_period", "reduction_factor")
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"scheduler.{key}: unknown key{_suggest(str(key), allowed)}")
    kind = _typed(raw, "type", str, "asha", where="scheduler.")
    asha = AshaSection(grace_period=_typed(raw, "grace_period", int, 1, where="scheduler."),
                       reduction_factor=_typed(raw, "reduction_factor", int, 2, where="scheduler."))
    return kind, asha


def _read_resources(raw: Any) -> Resources:
    if raw is None:
        return Resources()
    if not isinstance(raw, dict):
        raise ConfigError(f"resources_per_trial: a mapping such as {{cpus: 1}}, got {raw!r}")
    for key in raw:
        if key != "cpus":
            raise ConfigError(f"resources_per_trial.{key}: unknown key; valid keys: cpus")
    return Resources(cpus=_typed(raw, "cpus", int, 1, where="resources_per_trial."))


def _read_objectives(raw: Any) -> list[str]:
    if raw is None:
        return ["dsp", "bram18", "lut", "latency_cycles"]
    raw = [raw] if isinstance(raw, str) else raw
    if not isinstance(raw, list) or not all(isinstance(o, str) for o in raw):
        raise ConfigError(f"objectives: a list of costs from {', '.join(OBJECTIVES)}, got {raw!r}")
    return list(raw)


def _typed(raw: dict[str, Any], key: str, kind: type, default: Any, *, where: str = "") -> Any:
    value = raw.get(key, default)
    if value is None or value is default:
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{where}{key}: expected {kind.__name__}, got {value!r}")


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        if isinstance(value, dict) and key != "options":
            keys += _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _get(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(choices)}"
