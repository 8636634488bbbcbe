"""The sweep's Pareto front: nothing on it is dominated, everything off it is, and the plot is written."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tenfold.sweep.pareto import pareto_optimal, plot_sweep_front


def dominates(a, b):
    (acc_a, costs_a), (acc_b, costs_b) = a, b
    no_worse = acc_a >= acc_b and all(x <= y for x, y in zip(costs_a, costs_b, strict=True))
    return no_worse and (acc_a > acc_b or any(x < y for x, y in zip(costs_a, costs_b, strict=True)))


def test_small_example():
    accuracies = [0.90, 0.95, 0.85, 0.95, math.nan]
    costs = [[100, 0], [300, 0], [50, 0], [300, 1], [1, 0]]
    # 3 is dominated by 1 (same accuracy, more BRAM); the NaN trial failed and is never on the front
    assert pareto_optimal(accuracies, costs) == [0, 1, 2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=25))
def test_front_is_exactly_the_non_dominated_points(raw):
    points = [(acc / 20, [float(c1), float(c2)]) for acc, c1, c2 in raw]
    front = set(pareto_optimal([p[0] for p in points], [p[1] for p in points]))
    for i, point in enumerate(points):
        dominated = any(dominates(other, point) for j, other in enumerate(points) if j != i)
        assert (i in front) == (not dominated)


def test_plot_writes_a_png(tmp_path):
    path = plot_sweep_front(["a", "b", "c"], [0.9, 0.8, math.nan], [[10, 1], [5, 0], [1, 1]], ["dsp", "lut"],
                            tmp_path / "front.png", front=[0, 1], best=0)
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG" and path.endswith("front.png")
