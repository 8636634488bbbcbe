"""Sweep throughput on this machine: trials per hour with 1 and 2 concurrent Ray workers.

The same 6-trial grid (DSP budget × ReuseFactor) of examples/digits_mlp_prune.yaml with the hls4ml export off,
once per worker count, each on a fresh private local Ray. Ray's start-up is timed apart from the sweep. The
machine is shared, so the load average before and after each sweep is recorded with the numbers.

Run: .venv/bin/python bench/sweep_scaling.py [--workers 1 2] [--trials 6]  → bench/results/sweep_scaling.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import ROOT, markdown_table, write_results
from tenfold.sweep.config import sweep_config_from_dict
from tenfold.sweep.runner import ray_session, run_sweep

RECIPE = ROOT / "examples" / "digits_mlp_prune.yaml"
BUDGETS = ["dsp<=0.15x", "dsp<=0.25x", "dsp<=0.5x", "dsp<=0.75x"]
REUSE = [1, 4]


def sweep_config(trials: int, workers: int):
    """A grid of exactly `trials` trials (budgets × reuse factors, cut to size)."""
    per_reuse = -(-trials // len(REUSE))
    if per_reuse > len(BUDGETS) or trials % len(REUSE):
        raise SystemExit(f"--trials must be even and at most {len(BUDGETS) * len(REUSE)}")
    return sweep_config_from_dict({
        "base": str(RECIPE), "set": {"export.hls4ml": False},
        "space": {"budget": {"grid": BUDGETS[:per_reuse]}, "hardware.reuse_factor": {"grid": REUSE}},
        "max_concurrent": workers, "resources_per_trial": {"cpus": 1}, "name": f"scaling-{workers}"})


def measure(trials: int, workers: int) -> dict:
    config = sweep_config(trials, workers)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tf-sweep-bench-") as tmp:
        started = time.perf_counter()
        with ray_session(num_cpus=workers):
            ray_seconds = time.perf_counter() - started
            sweep_started = time.perf_counter()
            report = run_sweep(config, Path(tmp) / "out")
            sweep_seconds = time.perf_counter() - sweep_started
        records = [json.loads((Path(t.out_dir) / "trial.json").read_text()) for t in report.trials]
    finished = [t for t in report.trials if t.status == "completed"]
    trial_seconds = [r["seconds"] for r in records if r["status"] == "completed"]
    return {"workers": workers, "trials": len(report.trials), "completed": len(finished),
            "ray_start_seconds": round(ray_seconds, 1), "sweep_seconds": round(sweep_seconds, 1),
            "trials_per_hour": round(len(finished) / sweep_seconds * 3600, 1),
            "mean_trial_seconds": round(statistics.mean(trial_seconds), 1) if trial_seconds else None,
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
            "best_val_accuracy": max((t.value("val_accuracy") for t in finished), default=None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        result = measure(args.trials, workers)
        rows.append(result)
        print(f"{workers} worker(s): {result['trials_per_hour']} trials/h "
              f"({result['completed']}/{result['trials']} trials in {result['sweep_seconds']} s, "
              f"load {result['load_before'][0]} → {result['load_after'][0]})", flush=True)
    base = rows[0]["trials_per_hour"]
    headers = ["workers", "trials", "sweep time", "trials / hour", "speed-up", "mean trial", "Ray start",
               "load avg (1 min) before → after"]
    table = [[r["workers"], f"{r['completed']}/{r['trials']}", f"{r['sweep_seconds']:.0f} s",
              f"{r['trials_per_hour']:.0f}", f"{r['trials_per_hour'] / base:.2f}×", f"{r['mean_trial_seconds']} s",
              f"{r['ray_start_seconds']} s", f"{r['load_before'][0]} → {r['load_after'][0]}"] for r in rows]
    markdown = ("# Sweep scaling\n\n"
                f"{args.trials} trials of examples/digits_mlp_prune.yaml (budget × ReuseFactor grid, hls4ml export "
                "off), 1 CPU and 1 torch thread per trial, on a private local Ray per row. Sweep time excludes "
                f"Ray's start-up. Machine: {os.cpu_count()} cores, shared with other jobs — see the load averages.\n\n"
                + markdown_table(headers, table))
    print(markdown)
    write_results("sweep_scaling", {"recipe": str(RECIPE.relative_to(ROOT)), "rows": rows}, markdown)


if __name__ == "__main__":
    main()
