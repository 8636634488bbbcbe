"""A run report as Markdown: the before/after table first, then every stage, then every layer."""

from __future__ import annotations

from tenfold.report.snapshot import RESOURCES, RunReport, Snapshot


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def summary_rows(report: RunReport) -> list[list[str]]:
    """Rows of the before/after table (shared by the Markdown report and the terminal table)."""
    base, final = report.baseline, report.final
    reduction = report.reduction()
    rows = []
    for key in RESOURCES:
        rows.append([key.upper() if key != "bram18" else "BRAM18", f"{base.totals[key]:,.0f}",
                     f"{final.totals[key]:,.0f}", f"{100 * reduction[key]:.1f}%"])
    rows.append(["stored parameters", f"{base.stored_parameters:,}", f"{final.stored_parameters:,}",
                 f"{100 * reduction['parameters']:.1f}%"])
    rows.append(["latency (cycles)", f"{base.latency_cycles:,}", f"{final.latency_cycles:,}", ""])
    rows.append(["val accuracy", _pct(base.val_accuracy), _pct(final.val_accuracy), ""])
    rows.append(["test accuracy", _pct(base.test_accuracy), _pct(final.test_accuracy), ""])
    return rows


def _stage_table(snapshots: list[Snapshot]) -> list[str]:
    lines = [_row(["stage", "val acc", "test acc", "DSP", "BRAM18", "LUT", "stored params", "time"]),
             _row(["---"] * 8)]
    for s in snapshots:
        lines.append(_row([s.label, _pct(s.val_accuracy), _pct(s.test_accuracy), f"{s.totals['dsp']:,.0f}",
                           f"{s.totals['bram18']:,.0f}", f"{s.totals['lut']:,.0f}", f"{s.stored_parameters:,}",
                           f"{s.seconds:.0f}s"]))
    return lines


def chosen_actions(report: RunReport) -> dict[str, str]:
    """Layer → action of the last accepted joint round (empty for sequential runs)."""
    for snapshot in reversed(report.snapshots):
        if snapshot.notes.get("accepted") and "actions" in snapshot.notes:
            return {layer: action["action"] for layer, action in snapshot.notes["actions"].items()}
    return {}


def _layer_table(base: Snapshot, final: Snapshot, actions: dict[str, str]) -> list[str]:
    header = ["layer", "DSP before", "DSP after", "BRAM18 before", "BRAM18 after", "sparsity", "rank",
              "weight precision", "RF"] + (["joint action"] if actions else [])
    lines = [_row(header), _row(["---"] * len(header))]
    before = {layer.name: layer for layer in base.layers}
    for layer in final.layers:
        old = before.get(layer.name)
        cells = [layer.name, f"{old.dsp:,.0f}" if old else "", f"{layer.dsp:,.0f}",
                 f"{old.bram18:,.0f}" if old else "", f"{layer.bram18:,.0f}", f"{100 * layer.sparsity:.1f}%",
                 str(layer.rank) if layer.rank else "", layer.precision, str(layer.reuse_factor)]
        lines.append(_row(cells + ([actions.get(layer.name, "")] if actions else [])))
    return lines


def render_markdown(report: RunReport) -> str:
    """The whole report; plots are linked when `report.outputs` names them."""
    lines = [f"# tenfold run: {report.name}", ""]
    if report.budget:
        met = {True: "met", False: "NOT met (the run stopped at the accuracy tolerance)", None: "n/a"}
        lines += [f"Budget `{report.budget}`: {met[report.met_budget]}.", ""]
    lines += [_row(["", "before", "after", "reduction"]), _row(["---"] * 4)]
    lines += [_row(row) for row in summary_rows(report)]
    lines += ["", "## Stages", "", *_stage_table(report.snapshots)]
    lines += ["", "## Layers (final model)", "", *_layer_table(report.baseline, report.final, chosen_actions(report))]
    if report.export:
        lines += ["", "## Export", ""] + [f"- {key}: {value}" for key, value in report.export.items()]
    plots = {k: v for k, v in report.outputs.items() if v.endswith(".png")}
    if plots:
        lines += ["", "## Plots", ""] + [f"![{key}]({value.rsplit('/', 1)[-1]})" for key, value in plots.items()]
    lines += ["", f"Run time: {report.seconds:.0f} s.", ""]
    return "\n".join(lines)
