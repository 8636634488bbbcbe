"""Schedules: the ramp shapes and how they react to rejected steps."""

from __future__ import annotations

import itertools

import pytest

from tenfold.errors import ConfigError
from tenfold.prune import Schedule


def run(schedule: Schedule, accept) -> list[float]:
    fractions = []
    while not schedule.finished:
        fraction = schedule.next_fraction()
        fractions.append(round(fraction, 4))
        schedule.feedback(fraction, accept(fraction))
    return fractions


def test_constant_and_polynomial_ramps_reach_the_budget():
    assert run(Schedule("constant", 4), lambda f: True) == [0.25, 0.5, 0.75, 1.0]
    poly = run(Schedule("polynomial", 3), lambda f: True)
    assert poly[-1] == 1.0 and poly[0] > 1 / 3  # front-loaded
    assert all(a < b for a, b in itertools.pairwise(poly))


def test_rejection_switches_to_bisection_with_limited_retries():
    fractions = run(Schedule("constant", 4, retries=2), lambda f: f <= 0.6)
    assert fractions == [0.25, 0.5, 0.75, 0.625, 0.5625]
    schedule = Schedule("constant", 4, retries=0)
    assert run(schedule, lambda f: f <= 0.6) == [0.25, 0.5, 0.75] and schedule.low == 0.5


def test_a_rejected_full_budget_is_tried_again_after_an_accepted_bisection():
    outcomes = iter([True, True, True, False, True, True])  # 1.0 fails first, then passes from closer
    schedule = Schedule("constant", 4, retries=2)
    fractions = run(schedule, lambda f: next(outcomes))
    assert fractions == [0.25, 0.5, 0.75, 1.0, 0.875, 1.0] and schedule.low == 1.0
    outcomes = iter([True, True, True, False, True, False])
    schedule = Schedule("constant", 4, retries=3)
    fractions = run(schedule, lambda f: next(outcomes, True))
    assert fractions == [0.25, 0.5, 0.75, 1.0, 0.875, 1.0, 0.9375]  # the retry failed: bisect again
    plain = Schedule("constant", 4, retries=2, retarget=False)
    outcomes = iter([True, True, True, False, True, True])
    assert run(plain, lambda f: next(outcomes)) == [0.25, 0.5, 0.75, 1.0, 0.875, 0.9375]
    restored = Schedule(**Schedule("constant", 4, retarget_next=True, bisecting=True).to_dict())
    assert restored.retarget_next and restored.next_fraction() == 1.0


def test_binary_search_converges_on_the_largest_accepted_fraction():
    schedule = Schedule("binary", 8)
    run(schedule, lambda f: f <= 0.3)
    assert schedule.low == pytest.approx(0.3, abs=0.01) and schedule.low <= 0.3


def test_invalid_schedules():
    with pytest.raises(ConfigError, match="schedule"):
        Schedule("cosine")
    with pytest.raises(ConfigError, match="steps"):
        Schedule("constant", 0)
