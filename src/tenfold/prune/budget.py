"""Resource budgets: `dsp<=500`, `dsp<=0.1x` (of the unpruned model), `bram<=20%` (of the device), per layer.

A budget is parsed once and resolved against a baseline cost and a device into absolute capacities, so the
knapsack only ever sees numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from tenfold.errors import ConfigError
from tenfold.hardware.cost import ModelCost

RESOURCE_ALIASES = {
    "dsp": "dsp", "dsps": "dsp",
    "bram": "bram18", "bram18": "bram18", "bram_18k": "bram18", "brams": "bram18",
    "lut": "lut", "luts": "lut",
    "ff": "ff", "ffs": "ff", "flipflops": "ff",
    "params": "params", "parameters": "params",
}
BUDGET_RESOURCES = ("dsp", "bram18", "lut", "ff", "params")
_TERM = re.compile(
    r"^\s*(?:(?P<layer>[A-Za-z0-9_.]+)\.)?(?P<resource>[A-Za-z_0-9]+)\s*<=\s*(?P<value>[0-9.eE+-]+)\s*(?P<unit>x|%)?\s*$"
)


@dataclass(frozen=True)
class Limit:
    """One constraint: `resource` (of `layer`, or of the whole model) at most `value` in `unit`."""

    resource: str
    value: float
    unit: str = "abs"  # "abs" (absolute), "x" (times the unpruned use), "%" (of the device)
    layer: str | None = None

    def describe(self) -> str:
        prefix = f"{self.layer}." if self.layer else ""
        suffix = {"abs": "", "x": "x", "%": "%"}[self.unit]
        return f"{prefix}{self.resource}<={self.value:g}{suffix}"


@dataclass
class Budget:
    """Several limits at once; the model must satisfy all of them."""

    limits: list[Limit] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | Budget | None) -> Budget:
        """Parse 'dsp<=0.1x,bram<=30%,fc1.dsp<=16' (comma or semicolon separated)."""
        if isinstance(text, Budget):
            return text
        if text is None or not str(text).strip():
            raise ConfigError("a budget is required, e.g. --budget 'dsp<=0.1x' or 'dsp<=500,bram<=20%'")
        limits = []
        for term in re.split(r"[;,]", str(text)):
            if not term.strip():
                continue
            match = _TERM.match(term)
            if not match:
                raise ConfigError(
                    f"cannot parse budget term {term.strip()!r}; write RESOURCE<=VALUE with an optional x (times the "
                    "unpruned model) or % (of the device), e.g. 'dsp<=0.1x', 'bram<=20%', 'lut<=50000', 'fc1.dsp<=16'"
                )
            resource = RESOURCE_ALIASES.get(match["resource"].lower())
            if resource is None:
                raise ConfigError(
                    f"unknown resource {match['resource']!r} in budget; use one of {', '.join(BUDGET_RESOURCES)}"
                )
            try:
                value = float(match["value"])
            except ValueError:
                raise ConfigError(f"budget value {match['value']!r} in {term.strip()!r} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"budget value in {term.strip()!r} must be a finite number >= 0")
            unit = {"x": "x", "%": "%"}.get(match["unit"] or "", "abs")
            if unit == "%" and resource == "params":
                raise ConfigError("a parameter budget cannot be a % of the device; use an absolute count or 'x'")
            limits.append(Limit(resource=resource, value=value, unit=unit, layer=match["layer"]))
        if not limits:
            raise ConfigError("the budget is empty; give at least one term such as 'dsp<=0.1x'")
        return cls(limits)

    def describe(self) -> str:
        return ",".join(limit.describe() for limit in self.limits)

    def caps(self, resource: str) -> bool:
        """Whether some limit (model-wide or per layer) bounds `resource` ("dsp", "bram18", "lut", ...)."""
        return any(limit.resource == resource for limit in self.limits)

    def resolve(self, baseline: ModelCost, baseline_params: dict[str, int]) -> list[tuple[Limit, float]]:
        """Absolute capacity of every limit, given the unpruned model's cost and parameter counts per layer."""
        resolved = []
        layer_names = {layer.name for layer in baseline.layers}
        for limit in self.limits:
            if limit.layer is not None and limit.layer not in layer_names:
                raise ConfigError(
                    f"budget names layer {limit.layer!r}, which the model does not have; layers: "
                    f"{', '.join(sorted(n for n in layer_names if n != 'input'))}"
                )
            if limit.unit == "abs":
                capacity = limit.value
            elif limit.unit == "x":
                capacity = limit.value * _use(baseline, baseline_params, limit)
            else:
                capacity = limit.value / 100.0 * baseline.device.capacity(limit.resource)
            resolved.append((limit, float(capacity)))
        return resolved


def _use(baseline: ModelCost, params: dict[str, int], limit: Limit) -> float:
    if limit.resource == "params":
        return float(params[limit.layer] if limit.layer else sum(params.values()))
    if limit.layer:
        return float(getattr(baseline.layer(limit.layer), limit.resource))
    return float(baseline.totals[limit.resource])
