"""Reproduction: quantized CP decomposition of pretrained CIFAR-10 ResNet-20/56 at 5×, 10× and 15× fewer conv
parameters with 8-bit factors (the published ~10× on VGG/ResNet-50 at near-equal accuracy).

The experiment itself is `bench/decompose_cifar.py`; this entry point runs it and writes
bench/results/decompose_cifar.{json,md}.
Run: .venv/bin/python bench/reproduce/decomposition.py [--models resnet20 resnet56] [--targets 5 10 15] [--epochs N]
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "decompose_cifar.py"), run_name="__main__")
