"""How fast the budget tightens: constant steps, a cubic (polynomial) ramp, or a binary search.

A schedule yields the fraction of the way from the unpruned use to the final budget (0 → 1) for each
step; the binary search also learns from each step whether the model kept its accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenfold.errors import ConfigError

SCHEDULES = ("constant", "polynomial", "binary")


@dataclass
class Schedule:
    """Stateful schedule: `next_fraction()` then `feedback(accepted)` after every step."""

    kind: str = "polynomial"
    steps: int = 4
    power: float = 3.0
    low: float = 0.0  # binary search: largest accepted fraction so far
    high: float = 1.0  # binary search: smallest rejected fraction (1.0 until one is rejected)
    step: int = 0
    finished: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.kind!r}; use one of {', '.join(SCHEDULES)}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")

    def next_fraction(self) -> float:
        """Progress towards the final budget the next step should reach."""
        t = (self.step + 1) / self.steps
        if self.kind == "constant":
            return t
        if self.kind == "polynomial":  # Zhu & Gupta: fast early, gentle near the target
            return 1.0 - (1.0 - t) ** self.power
        if self.step == 0:
            return 1.0  # binary search: try the final budget first
        return (self.low + self.high) / 2.0

    def feedback(self, fraction: float, accepted: bool) -> None:
        """Record the outcome of the step that targeted `fraction`."""
        self.step += 1
        if self.kind == "binary":
            if accepted:
                self.low = max(self.low, fraction)
            else:
                self.high = min(self.high, fraction)
            self.finished = self.step >= self.steps or self.low >= 1.0 or (self.high - self.low) < 1e-3
        else:
            self.finished = self.step >= self.steps or not accepted

    def to_dict(self) -> dict:
        return {"kind": self.kind, "steps": self.steps, "power": self.power, "low": self.low, "high": self.high,
                "step": self.step, "finished": self.finished}
