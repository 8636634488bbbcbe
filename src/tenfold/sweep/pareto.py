"""The accuracy/cost Pareto front of a sweep, and its plot (accuracy against each cost, front highlighted).

A configuration is Pareto-optimal when no other finished trial is at least as accurate (validation accuracy:
choosing on test accuracy would leak the test set into the design) and no more expensive in every objective,
and strictly better in one of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from tenfold.io import atomic_open
from tenfold.report.snapshot import pareto_front

LABELS = {"dsp": "DSP", "bram18": "BRAM18", "lut": "LUT", "ff": "FF", "latency_cycles": "latency (cycles)",
          "stored_parameters": "stored parameters"}


def pareto_optimal(accuracies: Sequence[float], costs: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (accuracy high, every cost low); NaN points are never on the front."""
    valid = [i for i, acc in enumerate(accuracies)
             if not math.isnan(acc) and not any(math.isnan(c) for c in costs[i])]
    front = []
    for i in valid:
        dominated = any(
            accuracies[j] >= accuracies[i] and all(cj <= ci for cj, ci in zip(costs[j], costs[i], strict=True))
            and (accuracies[j] > accuracies[i] or any(cj < ci for cj, ci in zip(costs[j], costs[i], strict=True)))
            for j in valid if j != i)
        if not dominated:
            front.append(i)
    return front


def plot_sweep_front(names: Sequence[str], accuracies: Sequence[float], costs: Sequence[Sequence[float]],
                     objectives: Sequence[str], path: str | Path, *, front: Sequence[int] = (),
                     best: int | None = None) -> str:
    """One panel per objective: every trial, the 2-D front of that panel, the joint front ringed, the best starred."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: sweeps run on servers
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(objectives), figsize=(4.2 * len(objectives) + 1, 4), squeeze=False)
    for k, (axis, objective) in enumerate(zip(axes[0], objectives, strict=True)):
        shown = [i for i in range(len(names)) if not math.isnan(accuracies[i]) and not math.isnan(costs[i][k])]
        points = [(costs[i][k], 100 * accuracies[i]) for i in shown]
        axis.scatter([p[0] for p in points], [p[1] for p in points], color="#9aa5b1", label="trials", zorder=2)
        panel_front = pareto_front(points)
        axis.plot([points[i][0] for i in panel_front], [points[i][1] for i in panel_front], "-", color="#c0392b",
                  label=f"front in {LABELS.get(objective, objective)}", zorder=1)
        joint = [j for j, i in enumerate(shown) if i in front]
        axis.scatter([points[j][0] for j in joint], [points[j][1] for j in joint], s=110, facecolors="none",
                     edgecolors="#c0392b", linewidths=1.6, label="Pareto-optimal (all objectives)", zorder=3)
        labels: dict[tuple[float, float], list[str]] = {}  # identical designs share one label, e.g. "2,8"
        for j in joint:
            labels.setdefault(points[j], []).append(str(shown[j] + 1))
        for point, numbers in labels.items():
            axis.annotate(",".join(numbers), point, textcoords="offset points", xytext=(5, 4), fontsize=8)
        if best is not None and best in shown:
            j = shown.index(best)
            axis.scatter([points[j][0]], [points[j][1]], marker="*", s=220, color="black", label="best", zorder=4)
        axis.set_xlabel(LABELS.get(objective, objective))
        axis.set_ylabel("validation accuracy (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=7)
    fig.suptitle("sweep: accuracy against hardware cost (numbers: trial # in sweep.md)", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_open(path) as handle:
            fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return str(path)
