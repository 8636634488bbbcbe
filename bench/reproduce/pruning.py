"""Reproduction: knapsack pruning on the Fashion-MNIST CNN and the jet-tagger MLP architecture, beside the
DAP-like and unstructured baselines (the published 55–92% fewer DSPs, up to 81% fewer BRAM).

The experiment itself is `bench/prune_benchmark.py`; this entry point runs it with the published setting's
options and writes bench/results/prune_benchmark.{json,md}.
Run: .venv/bin/python bench/reproduce/pruning.py [--quick] [--steps N] [--finetune-samples N] [--recovery-epochs N]
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "prune_benchmark.py"), run_name="__main__")
