"""`tenfold decompose` and `tenfold run` from the command line, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "tenfold", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "jet.pt"
    result = run("train", "jet_mlp", "--data", "digits", "--epochs", "8", "--lr", "3e-3", "--out", str(out),
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    return out


def test_decompose_meets_target_and_writes_outputs(trained, tmp_path):
    out = tmp_path / "dec"
    result = run("decompose", str(trained), "--data", "digits", "--target", "3x", "--method", "cp3",
                 "--finetune-epochs", "1", "--sensitivity-batches", "1", "--n-iter-max", "20", "--strategy", "Resource",
                 "--reuse", "4", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["plan"]["params_before"] / report["plan"]["params_after"] >= 3.0
    assert report["accuracy"]["after_finetune"]["test"] > 0.5
    # Resource strategy keeps weights in BRAM; regenerating them from factors while streaming frees most of it
    assert report["resources"]["stream"]["bram18"] < 0.5 * report["resources"]["before"]["bram18"]
    for name in ("decomposed.pt", "report.md", "hls4ml_config.json"):
        assert (out / name).is_file()
    estimate = run("estimate", str(out / "decomposed.pt"), "--strategy", "Resource", "--reuse", "4",
                   "--nearest-reuse", "--json")
    assert estimate.returncode == 0, estimate.stderr
    layers = json.loads(estimate.stdout)["layers"]
    assert any("decomposed" in layer["details"] for layer in layers)


def test_decompose_impossible_target_is_one_clear_line(trained, tmp_path):
    result = run("decompose", str(trained), "--data", "digits", "--target", "100000x", "--finetune-epochs", "0",
                 "--sensitivity-batches", "1", "--n-iter-max", "5", "--out", str(tmp_path / "x"), "--no-progress")
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_run_rejects_unknown_key_by_name(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model: {name: jet_mlp}\nbudget: dsp<=0.5x\nprune: {stpes: 2}\n")
    result = run("run", str(recipe), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "prune.stpes: unknown key; did you mean 'steps'" in result.stderr.replace("\n", "")


def test_run_needs_an_output_folder():
    result = run("run", str(EXAMPLES / "digits_mlp_prune.yaml"))
    assert result.returncode == 2 and "--out" in result.stderr
