"""How fast the budget tightens: constant steps, a cubic (polynomial) ramp, or a binary search.

A schedule yields the fraction of the way from the unpruned use to the final budget (0 → 1) for each
step and learns from each step whether the model kept its accuracy. Constant and polynomial schedules
switch to bisecting between the last accepted and the first rejected fraction for `retries` more steps
once a step fails, instead of giving up at the first failure. When the failed step aimed at the budget itself
(fraction 1) and a bisection step is then accepted, the next step aims at the budget again (`retarget`): the
failure came from a model further away, and the accepted one is a smaller step from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenfold.errors import ConfigError

SCHEDULES = ("constant", "polynomial", "binary")


@dataclass
class Schedule:
    """Stateful schedule: `next_fraction()` then `feedback(fraction, accepted)` after every step."""

    kind: str = "polynomial"
    steps: int = 4
    power: float = 3.0
    retries: int = 2
    low: float = 0.0  # largest accepted fraction so far
    high: float = 1.0  # smallest rejected fraction (1.0 until one is rejected)
    step: int = 0  # steps taken, including retries
    planned: int = 0  # steps of the planned ramp that were accepted
    bisecting: bool = False
    retries_used: int = 0
    finished: bool = False
    retarget: bool = True  # after an accepted bisection below a rejected full budget, aim at the budget again
    retarget_next: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.kind!r}; use one of {', '.join(SCHEDULES)}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")

    @property
    def total_steps(self) -> int:
        """Upper bound on the number of steps (for progress bars)."""
        return self.steps if self.kind == "binary" else self.steps + self.retries

    def next_fraction(self) -> float:
        """Progress towards the final budget the next step should reach."""
        if self.kind == "binary":
            return 1.0 if self.step == 0 else (self.low + self.high) / 2.0
        if self.bisecting:
            return self.high if self.retarget_next else (self.low + self.high) / 2.0
        t = (self.planned + 1) / self.steps
        if self.kind == "constant":
            return t
        return 1.0 - (1.0 - t) ** self.power  # Zhu & Gupta: fast early, gentle near the target

    def feedback(self, fraction: float, accepted: bool) -> None:
        """Record the outcome of the step that targeted `fraction`."""
        self.step += 1
        if accepted:
            self.low = max(self.low, fraction)
        else:
            self.high = min(self.high, fraction)
        if self.kind == "binary":
            self.finished = self.step >= self.steps or self.low >= 1.0 or (self.high - self.low) < 1e-3
            return
        if self.bisecting:
            self.retries_used += 1
            self.retarget_next = self.retarget and accepted and self.high >= 1.0 and not self.retarget_next
        elif accepted:
            self.planned += 1
        else:
            self.bisecting = True
        self.finished = (
            self.low >= 1.0
            or (not self.bisecting and self.planned >= self.steps)
            or (self.bisecting and (self.retries_used >= self.retries
                                    or (self.high - self.low < 1e-3 and not self.retarget_next)))
        )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "steps": self.steps, "power": self.power, "retries": self.retries, "low": self.low,
            "high": self.high, "step": self.step, "planned": self.planned, "bisecting": self.bisecting,
            "retries_used": self.retries_used, "finished": self.finished, "retarget": self.retarget,
            "retarget_next": self.retarget_next,
        }
