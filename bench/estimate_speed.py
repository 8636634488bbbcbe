"""How fast the hardware model prices whole networks (target: ResNet-56 in under 1 s).

Run: .venv/bin/python bench/estimate_speed.py   → bench/results/estimate_speed.{json,md}
"""

from __future__ import annotations

import statistics
import time

from _common import markdown_table, write_results
from tenfold.hardware import estimate, make_config
from tenfold.hardware.estimate import uniform_reuse_config
from tenfold.models import create

CASES = [
    ("jet_mlp", {}, (16,), {"strategy": "Latency", "reuse_factor": 1}),
    ("lenet", {}, (1, 28, 28), {"strategy": "Resource", "reuse_factor": 1}),
    ("resnet20", {}, (3, 32, 32), {"strategy": "Latency", "reuse_factor": 1}),
    ("resnet56", {}, (3, 32, 32), {"strategy": "Latency", "reuse_factor": 1}),
    ("resnet56", {}, (3, 32, 32), {"strategy": "Resource", "reuse_factor": 144}),
]


def main() -> None:
    rows, records = [], []
    for name, kwargs, shape, options in CASES:
        model = create(name, **kwargs)
        config = uniform_reuse_config(make_config(**options), model, shape)  # nearest valid RF per layer
        times = []
        for _ in range(5):
            start = time.perf_counter()
            cost = estimate(model, shape, config)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        totals = cost.totals
        records.append({"model": name, "options": options, "median_seconds": median, "totals": totals})
        rows.append([name, f"{options['strategy']} RF={options['reuse_factor']}", f"{1000 * median:.1f} ms",
                     f"{totals['dsp']:.0f}", f"{totals['bram18']:.0f}", f"{totals['lut']:.0f}"])
    table = markdown_table(["model", "config", "median time (5 runs)", "DSP", "BRAM18", "LUT"], rows)
    write_results("estimate_speed", {"cases": records}, "# Estimate speed\n\n" + table)
    print(table)


if __name__ == "__main__":
    main()
