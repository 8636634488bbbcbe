"""Fine-tuning settings of the knapsack pruner vs the DSP reduction reached at a 1% validation tolerance.

jet-tagger MLP architecture (784-64-32-32-10) on MNIST (the shared 10k training images), ap_fixed<16,6>,
Resource strategy at ReuseFactor ≈ 8, budget 'dsp<=0.05x,bram<=0.15x', DSP patterns, Taylor importance
unless stated, polynomial schedule. Each variant prints one JSON line; the table is written at the end.

Run: .venv/bin/python bench/prune_tuning.py [VARIANT ...]  → bench/results/prune_tuning.{json,md}
"""

from __future__ import annotations

import json
import sys
import time

import torch

from _common import markdown_table, shared_data, write_results
from tenfold.data import load_mnist
from tenfold.hardware import estimate, make_config
from tenfold.hardware.estimate import uniform_reuse_config
from tenfold.models import create, kwargs_for_data
from tenfold.prune import PruneConfig, Pruner
from tenfold.train import TrainConfig, evaluate, fit

VARIANTS = {
    "ft2_lr1e-3 (benchmark default)": dict(finetune=TrainConfig(epochs=2, lr=1e-3, seed=0)),
    "ft4_lr2e-3": dict(finetune=TrainConfig(epochs=4, lr=2e-3, seed=0)),
    "ft4_lr2e-3_l1": dict(finetune=TrainConfig(epochs=4, lr=2e-3, seed=0), importance="l1"),
    "ft4_lr2e-3_reg": dict(finetune=TrainConfig(epochs=4, lr=2e-3, seed=0), regularization=1e-4),
    "ft2_steps12": dict(finetune=TrainConfig(epochs=2, lr=1e-3, seed=0), steps=12),
    "ft8_lr2e-3": dict(finetune=TrainConfig(epochs=8, lr=2e-3, seed=0)),
    "ft6_lr3e-3_s10": dict(finetune=TrainConfig(epochs=6, lr=3e-3, seed=0), steps=10),
    "ft4_lr2e-3_r4": dict(finetune=TrainConfig(epochs=4, lr=2e-3, seed=0), retries=4),
}
HEADERS = ["variant", "DSP saved", "BRAM18 saved", "val before → after", "test before → after", "time"]


def main() -> None:
    torch.set_num_threads(1)
    chosen = sys.argv[1:] or list(VARIANTS)
    splits = load_mnist(shared_data("mnist"), seed=0, flatten=True)
    torch.manual_seed(0)
    model = create("jet_mlp", **kwargs_for_data("jet_mlp", splits.input_shape, splits.num_classes))
    fit(model, splits.train, splits.val, TrainConfig(epochs=20, lr=2e-3, seed=0), progress=False)
    base_val, base_test = evaluate(model, splits.val).accuracy, evaluate(model, splits.test).accuracy
    hls = uniform_reuse_config(make_config(precision="fixed<16,6>", strategy="Resource", reuse_factor=8), model,
                               splits.input_shape)
    base = estimate(model, splits.input_shape, hls).totals
    records, rows = [], []
    for name in chosen:
        options = dict(budget="dsp<=0.05x,bram<=0.15x", structure="pattern", steps=8, tolerance=0.01, seed=0)
        started = time.perf_counter()
        result = Pruner(PruneConfig(**(options | VARIANTS[name])), hls, splits.input_shape).fit(
            model, splits.train, splits.val, progress=False)
        cost = estimate(result.model, splits.input_shape, hls).totals
        record = {"variant": name, "base_val": base_val, "base_test": base_test,
                  "val": evaluate(result.model, splits.val).accuracy,
                  "test": evaluate(result.model, splits.test).accuracy,
                  "dsp_red": 1 - cost["dsp"] / base["dsp"], "bram_red": 1 - cost["bram18"] / base["bram18"],
                  "secs": time.perf_counter() - started}
        print(json.dumps(record), flush=True)
        records.append(record)
        rows.append(row(record))
    write_results("prune_tuning", {"records": records}, "# Pruner fine-tuning settings\n\n" + (__doc__ or "")
                  .split("\n\n")[1] + "\n\n" + markdown_table(HEADERS, rows))


def row(r: dict) -> list[str]:
    return [r["variant"], f"{100 * r['dsp_red']:.1f}%", f"{100 * r['bram_red']:.1f}%",
            f"{100 * r['base_val']:.1f}% → {100 * r['val']:.1f}%",
            f"{100 * r['base_test']:.2f}% → {100 * r['test']:.2f}%", f"{r['secs']:.0f}s"]


if __name__ == "__main__":
    main()
