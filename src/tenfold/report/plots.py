"""Plots of a run (matplotlib, headless): per-layer resources, the accuracy/resource front, rank and sparsity."""

from __future__ import annotations

from pathlib import Path

from tenfold.io import atomic_open
from tenfold.report.snapshot import RunReport, pareto_front


def _figure_module():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no screen on FPGA build servers or CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    with atomic_open(path) as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return str(path)


def plot_layer_resources(report: RunReport, path: Path) -> str:
    """DSP and BRAM18 per layer, baseline beside final."""
    plt = _figure_module()
    base = {layer.name: layer for layer in report.baseline.layers}
    names = [layer.name for layer in report.final.layers]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(names) + 4), 4))
    positions = range(len(names))
    for axis, key, title in ((axes[0], "dsp", "DSP"), (axes[1], "bram18", "BRAM18")):
        before = [getattr(base[n], key) if n in base else 0 for n in names]
        after = [getattr(layer, key) for layer in report.final.layers]
        axis.bar([p - 0.2 for p in positions], before, width=0.4, label="before", color="#9aa5b1")
        axis.bar([p + 0.2 for p in positions], after, width=0.4, label="after", color="#2f6fb0")
        axis.set_xticks(list(positions), names, rotation=45, ha="right")
        axis.set_title(f"{title} per layer")
        axis.legend()
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_pareto(report: RunReport, path: Path) -> str:
    """Validation accuracy against DSP, BRAM18 and stored parameters for every snapshot, front highlighted."""
    plt = _figure_module()
    snaps = [s for s in report.snapshots if s.val_accuracy is not None]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    costs = (("dsp", "DSP", lambda s: s.totals["dsp"]), ("bram18", "BRAM18", lambda s: s.totals["bram18"]),
             ("parameters", "stored parameters", lambda s: s.stored_parameters))
    for axis, (_, title, cost) in zip(axes, costs, strict=True):
        points = [(cost(s), 100 * s.val_accuracy) for s in snaps]
        axis.scatter([p[0] for p in points], [p[1] for p in points], color="#9aa5b1", label="steps")
        front = pareto_front(points)
        axis.plot([points[i][0] for i in front], [points[i][1] for i in front], "o-", color="#c0392b",
                  label="Pareto front")
        if points:
            axis.scatter([points[0][0]], [points[0][1]], marker="*", s=160, color="black", label="baseline", zorder=3)
            axis.scatter([points[-1][0]], [points[-1][1]], marker="D", s=60, color="#2f6fb0", label="final", zorder=3)
        axis.set_xlabel(title)
        axis.set_ylabel("validation accuracy (%)")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_rank_sparsity(report: RunReport, path: Path) -> str:
    """Sparsity (bars) and rank (markers) of every layer of the final model."""
    plt = _figure_module()
    layers = report.final.layers
    names = [layer.name for layer in layers]
    fig, axis = plt.subplots(figsize=(max(7, 1.0 * len(names) + 3), 4))
    axis.bar(names, [100 * layer.sparsity for layer in layers], color="#2f6fb0")
    axis.set_ylabel("sparsity (%)")
    axis.set_ylim(0, 100)
    axis.tick_params(axis="x", rotation=45)
    ranked = [(i, layer.rank) for i, layer in enumerate(layers) if layer.rank]
    if ranked:
        twin = axis.twinx()
        twin.plot([i for i, _ in ranked], [r for _, r in ranked], "o", color="#c0392b")
        twin.set_ylabel("CP rank", color="#c0392b")
    axis.set_title("sparsity and rank per layer (final model)")
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_plots(report: RunReport, out_dir: str | Path) -> dict[str, str]:
    """All plots into `out_dir`; returns their paths by name."""
    out_dir = Path(out_dir)
    return {
        "layer_resources": plot_layer_resources(report, out_dir / "layer_resources.png"),
        "pareto": plot_pareto(report, out_dir / "pareto.png"),
        "rank_sparsity": plot_rank_sparsity(report, out_dir / "rank_sparsity.png"),
    }
