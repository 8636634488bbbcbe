"""Per-layer precision search: the narrowest types that keep validation accuracy within a tolerance.

Why greedy by hardware savings: the accuracy budget (the tolerance) is shared by all layers, and narrowing
a layer whose products leave the DSPs (both operands under the DSP's port widths, or one under the
LUT-multiplier threshold) saves far more than trimming a bit off a small activation. So every round prices
each layer's next narrower width with `tenfold.hardware.estimate`, tries the moves in order of savings, keeps
the first one that stays within tolerance and re-prices; a knob whose next step fails is frozen (accuracy
is taken to fall monotonically with width). With `bisect=True` each knob instead binary-searches its width
list once, in order of the savings its narrowest width would bring: fewer evaluations, less adaptive.

Integer bits come from calibration (as in post-training quantization) and stay fixed while the width
changes, so narrowing a type removes fractional bits. Accumulators are exact (`calibrated_config`) unless
"accum" is among the searched kinds. The search is deterministic: same model, data and options, same result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tenfold.errors import ConfigError
from tenfold.hardware.estimate import estimate
from tenfold.hardware.hls_config import HLSConfig
from tenfold.modules import clone_module
from tenfold.quantize.calibrate import ValueRange, observe_ranges
from tenfold.quantize.ptq import calibrated_config
from tenfold.quantize.qat import hardware_accuracy
from tenfold.quantize.quantized_model import INPUT, QuantizedModel, quantize_model
from tenfold.train import evaluate
from tenfold.train.loop import DataLike, make_loader

__all__ = ["DEFAULT_WIDTHS", "PrecisionSearchReport", "SearchStep", "search_precision"]

DEFAULT_WIDTHS = (16, 14, 12, 10, 9, 8, 7, 6, 5, 4)
KINDS = ("weight", "result", "accum")
RESOURCES = ("dsp", "bram18", "lut", "ff")

Knob = tuple[str, str]  # (layer, kind); a weight knob also sets the bias width


@dataclass
class SearchStep:
    """One evaluated candidate: narrowing `kind` of `layer` to `width` bits."""

    index: int
    layer: str
    kind: str
    width: int
    accuracy: float
    accepted: bool
    resources: dict[str, float]
    savings: float


@dataclass
class PrecisionSearchReport:
    """What the search chose and what it costs; `config` is the HLS config to export (`config.to_hls4ml()`)."""

    reference_accuracy: float
    target_accuracy: float
    tolerance: float
    start_accuracy: float
    final_accuracy: float
    hardware_accuracy: float | None
    met_tolerance: bool
    widths: dict[str, dict[str, int]]
    precisions: dict[str, dict[str, str]]
    resources_before: dict[str, float]
    resources_start: dict[str, float]
    resources_after: dict[str, float]
    config: HLSConfig
    steps: list[SearchStep] = field(default_factory=list)
    evaluations: int = 0
    seconds: float = 0.0

    def reduction(self) -> dict[str, float]:
        """Share of each resource saved relative to the given config (0.25 = a quarter fewer)."""
        return {name: (1.0 - self.resources_after[name] / before) if before else 0.0
                for name, before in self.resources_before.items()}

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in {"config", "steps"}}
        out["steps"] = [dataclasses.asdict(step) for step in self.steps]
        out["reduction"] = self.reduction()
        out["hls_config"] = self.config.to_hls4ml()
        return out

    def to_markdown(self) -> str:
        lines = [f"# Precision search (tolerance {self.tolerance:g})", "",
                 f"Validation accuracy: reference {100 * self.reference_accuracy:.2f}%, widest calibrated "
                 f"{100 * self.start_accuracy:.2f}%, chosen {100 * self.final_accuracy:.2f}%"
                 + (f" (bit-exact emulation {100 * self.hardware_accuracy:.2f}%)"
                    if self.hardware_accuracy is not None else "")
                 + f"; tolerance met: {self.met_tolerance}.", "",
                 "| resource | given config | widest calibrated | chosen | reduction |", "|---|---|---|---|---|"]
        reduction = self.reduction()
        for name in RESOURCES:
            lines.append(f"| {name} | {self.resources_before[name]:,.0f} | {self.resources_start[name]:,.0f} | "
                         f"{self.resources_after[name]:,.0f} | {100 * reduction[name]:.1f}% |")
        lines += ["", "| layer | input | weight | bias | accum | result |", "|---|---|---|---|---|---|"]
        for layer, kinds in self.precisions.items():
            if layer == INPUT:
                cells = [kinds.get("result", ""), "", "", "", ""]
            else:
                cells = ["", *(kinds.get(k, "") for k in ("weight", "bias", "accum", "result"))]
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
        lines += ["", f"{self.evaluations} evaluations in {self.seconds:.1f} s."]
        return "\n".join(lines) + "\n"


def _scalar_cost(resources: dict[str, float], capacity: dict[str, float], weights: dict[str, float]) -> float:
    """Resources as a weighted sum of device shares, so DSPs, BRAMs, LUTs and FFs are comparable."""
    return sum(weights.get(name, 0.0) * resources[name] / capacity[name] for name in RESOURCES if capacity[name])


class _Search:
    """State of one search: the calibrated ranges, the current width of every knob, and evaluation helpers."""

    def __init__(self, model: nn.Module, config: HLSConfig, val_data: DataLike, ranges: dict[Knob, ValueRange],
                 quantized: QuantizedModel, input_shape: tuple[int, ...], widths: Sequence[int],
                 kinds: Sequence[str], margin: float, cost_weights: dict[str, float], batch_size: int,
                 use_hardware: bool) -> None:
        self.model, self.config, self.val = model, config, val_data
        self.ranges, self.quantized, self.input_shape = ranges, quantized, input_shape
        self.widths, self.margin, self.cost_weights = list(widths), margin, cost_weights
        self.batch_size, self.use_hardware = batch_size, use_hardware
        self.sources = quantized.input_sources()
        self.state: dict[Knob, int] = {}
        for layer, kind in ranges:
            if kind in kinds and kind != "accum":  # accumulators start exact; their knobs follow below
                self.state[(layer, kind)] = self.widths[0]
        self.evaluations = 0
        if "accum" in kinds:
            start = self.config_for(self.state)
            for layer, kind in ranges:
                if kind == "accum":
                    self.state[(layer, kind)] = start.layer(layer).precision.accum.width
        self.knobs = list(self.state)  # execution order, for deterministic tie-breaking

    def config_for(self, state: dict[Knob, int]) -> HLSConfig:
        site_widths = dict(state)
        for (layer, kind), width in state.items():
            if kind == "weight" and (layer, "bias") in self.ranges:
                site_widths[(layer, "bias")] = width
        return calibrated_config(self.config, self.ranges, width=self.widths[0], margin=self.margin,
                                 input_sources=self.sources, site_widths=site_widths)

    def resources(self, config: HLSConfig) -> dict[str, float]:
        return dict(estimate(self.model, self.input_shape, config, validate_reuse=False).totals)

    def cost(self, config: HLSConfig) -> float:
        device = estimate(self.model, self.input_shape, config, validate_reuse=False)
        capacity = {"dsp": device.device.dsp, "bram18": device.device.bram18, "lut": device.device.lut,
                    "ff": device.device.ff}
        return _scalar_cost(device.totals, capacity, self.cost_weights)

    def accuracy(self, config: HLSConfig) -> float:
        self.evaluations += 1
        self.quantized.set_config(config)
        if self.use_hardware:
            result = hardware_accuracy(self.quantized, self.val, batch_size=self.batch_size)
            if result is None:
                raise ConfigError("hardware=True needs a model the bit-exact emulation supports "
                                  "(chains of Linear, Conv1d/2d, ReLU, MaxPool, Flatten)")
            return result
        return evaluate(self.quantized, self.val, batch_size=self.batch_size).accuracy

    def narrower(self, knob: Knob) -> list[int]:
        """Candidate widths below the knob's current one, widest first."""
        return [w for w in self.widths if w < self.state[knob]]


def search_precision(
    model: nn.Module,
    config: HLSConfig,
    val_data: DataLike,
    *,
    tolerance: float = 0.01,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    kinds: Sequence[str] = ("weight", "result"),
    input_shape: tuple[int, ...] | None = None,
    calibration_data: Any = None,
    reference_accuracy: float | None = None,
    margin: float = 0.1,
    bisect: bool = False,
    hardware: bool = False,
    cost_weights: dict[str, float] | None = None,
    batch_size: int = 512,
    progress: Callable[[SearchStep], None] | None = None,
) -> PrecisionSearchReport:
    """Find the narrowest per-layer widths whose validation accuracy stays within `tolerance` of the reference.

    `kinds` are the types searched per layer: "weight" (with its bias), "result" (layer outputs and the model
    input) and "accum". `widths` are the candidates, widest first; the search starts from every type
    calibrated at the widest. The reference is the float model's accuracy on `val_data` unless
    `reference_accuracy` is given; `tolerance` is an absolute drop (0.01 = one point). Candidates are scored
    with fake quantization, or with the bit-exact emulation if `hardware` (slower) — always when "accum" is
    searched, since a narrow accumulator casts every product, which fake quantization does not model (it
    casts the finished sum; with the default exact accumulators the two agree). `cost_weights` weighs
    each resource's share of the device when ranking moves (default: all four equally). `progress` is
    called after every evaluated candidate. `model` is not changed.
    """
    started = time.perf_counter()
    widths = sorted({int(w) for w in widths}, reverse=True)
    if not widths or widths[-1] < 1 or widths[0] > 64:
        raise ConfigError(f"widths must be bit counts between 1 and 64, got {widths}")
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ConfigError(f"kinds must be some of {', '.join(KINDS)}; got {list(kinds)}")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance is an absolute accuracy drop in [0, 1), got {tolerance}")
    hardware = hardware or "accum" in kinds
    model = clone_module(model).eval()  # priced and evaluated in eval mode; the caller's model is untouched
    loader = make_loader(val_data, batch_size, shuffle=False)
    if input_shape is None:
        input_shape = tuple(next(iter(loader))[0].shape[1:])
    weights = {name: 1.0 for name in RESOURCES} | (cost_weights or {})
    reference = reference_accuracy if reference_accuracy is not None else evaluate(model, loader).accuracy
    target = reference - tolerance

    quantized = quantize_model(model, config)
    quantized.quantization_enabled(False)
    ranges = observe_ranges(quantized, calibration_data if calibration_data is not None else loader)
    quantized.quantization_enabled(True)
    search = _Search(model, config, loader, ranges, quantized, tuple(input_shape), widths, kinds, margin, weights,
                     batch_size, hardware)
    start_config = search.config_for(search.state)
    start_accuracy = search.accuracy(start_config)
    steps: list[SearchStep] = []

    def record(knob: Knob, width: int, accuracy: float, accepted: bool, candidate: HLSConfig, saved: float) -> None:
        step = SearchStep(len(steps), knob[0], knob[1], width, accuracy, accepted, search.resources(candidate), saved)
        steps.append(step)
        if progress is not None:
            progress(step)

    if start_accuracy >= target:
        if bisect:
            _bisect(search, target, record)
        else:
            _descend(search, target, record)
    final_config = search.config_for(search.state)
    final_accuracy = search.accuracy(final_config)
    quantized.set_config(final_config)
    hardware_acc = hardware_accuracy(quantized, loader, batch_size=batch_size)
    chosen: dict[str, dict[str, int]] = {}
    precisions: dict[str, dict[str, str]] = {}
    for site in quantized.quantizer_sites():
        chosen.setdefault(site.layer, {})[site.kind] = site.quantizer.precision.width
        precisions.setdefault(site.layer, {})[site.kind] = site.quantizer.precision.to_cpp()
    return PrecisionSearchReport(
        reference_accuracy=reference, target_accuracy=target, tolerance=tolerance, start_accuracy=start_accuracy,
        final_accuracy=final_accuracy, hardware_accuracy=hardware_acc, met_tolerance=final_accuracy >= target,
        widths=chosen, precisions=precisions, resources_before=search.resources(config),
        resources_start=search.resources(start_config), resources_after=search.resources(final_config),
        config=final_config, steps=steps, evaluations=search.evaluations, seconds=time.perf_counter() - started,
    )


def _descend(search: _Search, target: float, record: Callable[..., None]) -> None:
    """Round after round: price every knob's next narrower width, try them by savings, keep the first that fits."""
    active = [knob for knob in search.knobs if search.narrower(knob)]
    while active:
        current_cost = search.cost(search.config_for(search.state))
        ranked = []
        for order, knob in enumerate(active):
            width = search.narrower(knob)[0]
            candidate = search.config_for(search.state | {knob: width})
            ranked.append((-(current_cost - search.cost(candidate)), order, knob, width, candidate))
        ranked.sort(key=lambda item: (item[0], item[1]))
        moved = False
        for negative_saving, _, knob, width, candidate in ranked:
            accuracy = search.accuracy(candidate)
            accepted = accuracy >= target
            record(knob, width, accuracy, accepted, candidate, -negative_saving)
            if accepted:
                search.state[knob] = width
                moved = True
                break
            active.remove(knob)  # narrower widths of this knob are assumed to fail too
        active = [knob for knob in active if search.narrower(knob)]
        if not moved:
            return


def _bisect(search: _Search, target: float, record: Callable[..., None]) -> None:
    """Each knob once, by the savings of its narrowest width: binary search for its narrowest passing width."""
    current_cost = search.cost(search.config_for(search.state))
    order = []
    for index, knob in enumerate(search.knobs):
        candidates = search.narrower(knob)
        if candidates:
            narrowest = search.config_for(search.state | {knob: candidates[-1]})
            order.append((-(current_cost - search.cost(narrowest)), index, knob))
    for _, _, knob in sorted(order, key=lambda item: (item[0], item[1])):
        candidates = search.narrower(knob)  # widest first; find the last one that passes
        low, high = 0, len(candidates) - 1
        best = None
        base_cost = search.cost(search.config_for(search.state))
        while low <= high:
            middle = (low + high) // 2
            candidate = search.config_for(search.state | {knob: candidates[middle]})
            accuracy = search.accuracy(candidate)
            accepted = accuracy >= target
            record(knob, candidates[middle], accuracy, accepted, candidate, base_cost - search.cost(candidate))
            if accepted:
                best, low = candidates[middle], middle + 1
            else:
                high = middle - 1
        if best is not None:
            search.state[knob] = best
