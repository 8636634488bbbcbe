"""Reports of a compression run: snapshots of the model along the way, a Markdown summary and plots."""

from __future__ import annotations

from tenfold.report.markdown import render_markdown
from tenfold.report.plots import write_plots
from tenfold.report.snapshot import LayerSnapshot, RunReport, Snapshot, pareto_front, take_snapshot

__all__ = ["LayerSnapshot", "RunReport", "Snapshot", "pareto_front", "render_markdown", "take_snapshot",
           "write_plots"]
