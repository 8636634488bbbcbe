"""The `tenfold run` recipe as plain dataclasses, read strictly from YAML.

Strict on purpose: a misspelt key in a compression recipe silently falls back to a default and produces a
model nobody asked for, so unknown keys, wrong types and impossible values stop the run with the key's path
(`prune.steps`) and, for typos, the closest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenfold.errors import ConfigError

METHODS = ("prune", "decompose", "quantize")
STRATEGIES = ("sequential", "joint")


@dataclass
class ModelSection:
    """Where the model comes from: a zoo name (optionally pretrained) or a tenfold checkpoint."""

    name: str | None = None
    checkpoint: str | None = None
    pretrained: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """Which dataset, read from the path the user gives (digits ships with scikit-learn)."""

    name: str = "digits"
    path: str | None = None
    val_fraction: float = 0.1
    max_train: int | None = None
    max_test: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class HardwareSection:
    """The FPGA and hls4ml defaults every layer starts from."""

    device: str = "xcvu13p"
    precision: str = "fixed<16,6>"
    strategy: str = "Latency"
    reuse_factor: int = 1
    io_type: str = "io_parallel"
    clock_period_ns: float = 5.0
    hls4ml_config: str | None = None


@dataclass
class TrainSection:
    """Training or fine-tuning settings (the subset of TrainConfig a recipe needs)."""

    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    augment: str = "none"
    distill_alpha: float = 0.0
    distill_temperature: float = 4.0

    def to_train_config(self, seed: int):
        from tenfold.train import TrainConfig

        return TrainConfig(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, optimizer=self.optimizer,
                           weight_decay=self.weight_decay, schedule=self.schedule, seed=seed, augment=self.augment,
                           distill_alpha=self.distill_alpha, distill_temperature=self.distill_temperature)


@dataclass
class PruneSection:
    """Knapsack pruning options (see tenfold.prune.PruneConfig)."""

    budget: str | None = None
    structure: str = "pattern"
    importance: str = "taylor"
    schedule: str = "polynomial"
    steps: int = 4
    retries: int = 2  # after a rejected step: steps bisecting between the last accepted and the rejected fraction
    repair: bool = True  # one more step at the full budget when fine-tuning left the accepted model over it
    recovery_epochs: int = 0  # extra fine-tuning for a step that ends below the tolerance, before rejecting it
    regularization: float = 0.0
    solver: str = "auto"
    lock_constants: bool = True  # Latency layers: weights priced without a DSP stay so while fine-tuning
    permute: bool = False  # reorder hidden channels first so multiplier patterns hold weights of like importance
    final_epochs: int = 0  # after the last step: more fine-tuning of the final masks (see PruneConfig)


@dataclass
class DecomposeSection:
    """Quantized decomposition options: a global target met by per-layer rank choice."""

    target: str = "10x"
    bits: int = 8
    method: str = "cp"
    form: str = "reconstructed"
    layers: list[str] | None = None
    sensitivity_batches: int = 4
    n_iter_max: int = 50
    refine_steps: int = 200  # data-aware factor refinement per layer after decomposing (0 = off)
    bn_recalibration_batches: int = 20  # without refinement: re-measure BatchNorm statistics (0 = off)
    regeneration: str = "buffer"  # how the chip rebuilds weights: once into weight memory, or while streaming


@dataclass
class QuantizeSection:
    """Fixed-point options: post-training calibration or a per-layer precision search."""

    method: str = "search"
    widths: list[int] = field(default_factory=lambda: [16, 14, 12, 10, 8, 6])


@dataclass
class JointSection:
    """Per-layer candidate actions for the joint multiple-choice knapsack."""

    # shares of each layer's *remaining* DSP patterns a prune candidate removes (finer steps every round)
    prune_levels: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8, 0.9])
    importance: str = "l1"  # how patterns are ranked within a layer: l1 | l2 | taylor | fisher (see joint.py)
    ranks: list[float] = field(default_factory=lambda: [0.25, 0.1, 0.05])
    widths: list[int] = field(default_factory=lambda: [12, 10, 8])
    sensitivity_batches: int = 16  # 128-image batches each candidate's loss increase is measured on
    rounds: int = 2
    recovery_epochs: int = 0  # extra fine-tuning for a round that ends below the tolerance, before rejecting it
    retries: int = 2  # after a rejected round: rounds bisecting between the last accepted and the rejected target
    qat: bool = False  # fine-tune precision rounds through the fixed-point types (falls back to float if worse)
    # Latency layers: weights keep the cost class the round priced them in while fine-tuning (both ways when the
    # budget caps LUTs). Off by default: no gain measured here — examples/digits_mlp_joint.yaml meets its budget
    # with it (1,033 DSPs, test 94.71%) and without (1,050, 95.26%); a one-way lock missed it (1,444 DSPs)
    lock_constants: bool = False


@dataclass
class ExportSection:
    """What to hand over: an hls4ml project with a C-simulation check, ONNX."""

    hls4ml: bool = True
    check_samples: int = 200
    onnx: bool = False


@dataclass
class RunConfig:
    """One compression recipe: model + data + FPGA + budget + methods → compressed model and report."""

    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    hardware: HardwareSection = field(default_factory=HardwareSection)
    budget: str | None = None
    tolerance: float = 0.01
    methods: list[str] = field(default_factory=lambda: ["prune"])
    strategy: str = "sequential"
    train: TrainSection | None = None
    finetune: TrainSection = field(default_factory=TrainSection)
    prune: PruneSection = field(default_factory=PruneSection)
    decompose: DecomposeSection = field(default_factory=DecomposeSection)
    quantize: QuantizeSection = field(default_factory=QuantizeSection)
    joint: JointSection = field(default_factory=JointSection)
    export: ExportSection = field(default_factory=ExportSection)
    seed: int = 0
    output: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Cross-field checks, each naming the key to fix."""
        if (self.model.name is None) == (self.model.checkpoint is None):
            raise ConfigError("model: give exactly one of model.name (a zoo name) or model.checkpoint (a file)")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if not self.methods:
            raise ConfigError("methods: list at least one of " + ", ".join(METHODS))
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"strategy: must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"tolerance: an absolute accuracy drop in [0, 1), got {self.tolerance}")
        if self.strategy == "joint" and not self.budget:
            raise ConfigError("budget: the joint strategy needs a resource budget, e.g. budget: 'dsp<=0.2x'")
        if "prune" in self.methods and self.strategy == "sequential" and not (self.prune.budget or self.budget):
            raise ConfigError("budget: pruning needs a budget (top-level 'budget' or 'prune.budget')")
        for key, value in (("budget", self.budget), ("prune.budget", self.prune.budget)):
            if value:
                from tenfold.prune import Budget

                try:
                    Budget.parse(value)
                except ConfigError as exc:
                    raise ConfigError(f"{key}: {exc}") from None
        if self.decompose.bits < 2 or self.decompose.bits > 32:
            raise ConfigError(f"decompose.bits: between 2 and 32, got {self.decompose.bits}")
        if self.decompose.regeneration not in ("buffer", "stream"):
            raise ConfigError(f"decompose.regeneration: 'buffer' or 'stream', got {self.decompose.regeneration!r}")
        if self.quantize.method not in ("ptq", "search"):
            raise ConfigError(f"quantize.method: 'ptq' or 'search', got {self.quantize.method!r}")
        for key, value in (("decompose.refine_steps", self.decompose.refine_steps),
                           ("decompose.bn_recalibration_batches", self.decompose.bn_recalibration_batches),
                           ("joint.retries", self.joint.retries), ("prune.retries", self.prune.retries),
                           ("prune.recovery_epochs", self.prune.recovery_epochs),
                           ("joint.recovery_epochs", self.joint.recovery_epochs)):
            if value < 0:
                raise ConfigError(f"{key}: must be >= 0 (0 turns it off), got {value}")
        bad_levels = [level for level in self.joint.prune_levels if not 0 < level < 1]
        if bad_levels:
            raise ConfigError(f"joint.prune_levels: each is a share of a layer's remaining patterns in (0, 1), "
                              f"got {bad_levels[0]}")
        from tenfold.prune.importance import METHODS as IMPORTANCE

        if self.joint.importance not in IMPORTANCE:
            raise ConfigError(f"joint.importance: one of {', '.join(IMPORTANCE)}, got {self.joint.importance!r}")
        if self.train is not None and self.train.distill_alpha:
            raise ConfigError("train.distill_alpha: training from scratch has no teacher; distillation from the "
                              "starting model is a fine-tuning option (finetune.distill_alpha)")
        for key, section in (("train", self.train), ("finetune", self.finetune)):
            if section is not None:
                try:
                    section.to_train_config(self.seed)
                except ConfigError as exc:
                    raise ConfigError(f"{key}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_run_config(path: str | Path) -> RunConfig:
    """Read a YAML recipe; every problem is reported with the offending key."""
    from tenfold.io import read_yaml_mapping

    raw = read_yaml_mapping(path, what="config file", hint="a YAML recipe with keys model, data, hardware, "
                            "budget, methods, ...; see examples/")
    return run_config_from_dict(raw)


def run_config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown keys and wrong types by path."""
    return _build(RunConfig, raw, "")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(names)}"
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin is list:
        if isinstance(value, str | int | float):
            value = [value]  # `methods: prune` reads as a one-item list
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        return [_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return value
    if hint is Any:
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
