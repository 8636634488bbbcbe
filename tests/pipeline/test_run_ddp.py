"""`tenfold run` under torchrun: two gloo processes give the single-process result; only rank 0 writes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
RECIPE = Path(__file__).resolve().parents[2] / "examples" / "digits_mlp_prune.yaml"
SETTINGS = ["--set", "train.epochs=3", "--set", "prune.steps=1", "--set", "finetune.epochs=1",
            "--set", "export.hls4ml=false", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_run_under_torchrun_matches_single_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="160", OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "tenfold", "run", str(RECIPE), "--out", str(tmp_path / "one"),
                             *SETTINGS], env=env, capture_output=True, text=True, timeout=900)
    assert single.returncode == 0, single.stderr
    torchrun = str(Path(sys.executable).parent / "torchrun")
    double = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m",
                             "tenfold.cli", "run", str(RECIPE), "--out", str(tmp_path / "two"), *SETTINGS],
                            env=env, capture_output=True, text=True, timeout=900)
    assert double.returncode == 0, double.stderr
    assert double.stdout.count("report_md:") == 1  # only rank 0 prints and writes
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two["snapshots"][-1]["totals"]["dsp"] == pytest.approx(one["snapshots"][-1]["totals"]["dsp"], rel=0.02)
    assert abs(two["snapshots"][-1]["val_accuracy"] - one["snapshots"][-1]["val_accuracy"]) <= 0.02


@pytest.mark.slow
def test_prune_command_under_torchrun_prints_and_writes_once(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="160", OMP_NUM_THREADS="1")
    checkpoint = tmp_path / "jet.pt"
    trained = subprocess.run([sys.executable, "-m", "tenfold", "train", "jet_mlp", "--data", "digits", "--epochs",
                              "3", "--out", str(checkpoint), "--no-progress"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr
    torchrun = str(Path(sys.executable).parent / "torchrun")
    pruned = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m",
                             "tenfold.cli", "prune", str(checkpoint), "--data", "digits", "--budget", "dsp<=0.5x",
                             "--steps", "1", "--finetune-epochs", "1", "--tolerance", "0.05", "--out",
                             str(tmp_path / "out"), "--no-progress"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.count('"report"') == 1
    assert json.loads((tmp_path / "out" / "report.json").read_text())["steps"]
