"""Calibrate tenfold's cost model on hls4ml's real synthesis baselines and report the error per resource.

Run: .venv/bin/python bench/calibration.py [--draws 8]
Writes bench/results/calibration.json and calibration.md. The fitted parameters printed at the end are
the defaults of `tenfold.hardware.CostParams`.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from _common import markdown_table, shared_data, write_results
from tenfold.hardware.calibration import METRICS, calibrate, load_baselines, predict_row
from tenfold.hardware.cost import CostParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--draws", type=int, default=8, help="weight draws per baseline row")
    args = parser.parse_args()
    rows = load_baselines(shared_data("hls4ml-synthesis"))
    start = time.perf_counter()
    result = calibrate(rows, draws=args.draws)
    seconds = time.perf_counter() - start
    table = result.error_table()
    # the shipped defaults must reproduce the fit: evaluate them the same way
    defaults = CostParams()
    default_rows = [
        {"reported": r.reported, "predicted": predict_row(r, defaults, draws=args.draws)}
        for r in rows
        if predict_row(r, defaults, draws=1) is not None
    ]
    default_table = type(result)(params=defaults, rows=default_rows).error_table()
    lines = ["# Cost-model calibration against hls4ml synthesis baselines\n",
             f"{len(result.rows)} Vivado/Vitis HLS rows (hls4ml's regression suite, C-synthesis estimates), "
             f"{args.draws} weight draws per row; fit took {seconds:.1f} s.\n",
             "## Error of the shipped default parameters\n"]
    headers = ["metric", "rows (report > 0)", "median rel. error", "worst rel. error", "median abs. error"]
    body = [[m, default_table[m]["rows"], f"{100 * default_table[m]['median_rel_error']:.1f}%",
             f"{100 * default_table[m]['worst_rel_error']:.1f}%", f"{default_table[m]['median_abs_error']:.1f}"]
            for m in METRICS]
    lines.append(markdown_table(headers, body))
    lines.append("\n## Per row (shipped defaults)\n")
    per_row = []
    for spec, row in zip(result.rows, default_rows, strict=True):
        per_row.append([spec["name"], spec["backend"], spec["io_type"]]
                       + [f"{row['predicted'][m]:.0f} / {row['reported'][m]:.0f}" for m in METRICS])
    lines.append(markdown_table(["row", "tool", "io", *[f"{m} est/real" for m in METRICS]], per_row))
    markdown = "\n".join(lines)
    json_path, md_path = write_results("calibration", {
        "draws": args.draws,
        "seconds": seconds,
        "fitted_params": dataclasses.asdict(result.params),
        "fitted_error": table,
        "default_params": dataclasses.asdict(defaults),
        "default_error": default_table,
        "rows": [spec | {"predicted_with_defaults": row["predicted"]}
                 for spec, row in zip(result.rows, default_rows, strict=True)],
    }, markdown)
    print(markdown_table(headers, body))
    print("fitted parameters:", dataclasses.asdict(result.params))
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
