"""`tenfold quantize` through the command-line entry point: outputs, reports and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tenfold.cli import main
from tenfold.data import load_digits
from tenfold.hardware import HLSConfig
from tenfold.models import create
from tenfold.train import TrainConfig, fit, load_checkpoint, load_model, save_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="160", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "tenfold", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is far faster than two contended ones
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    splits = load_digits(seed=0)
    torch.manual_seed(0)
    model = create("jet_mlp", in_features=64, num_classes=10, flatten=True)
    fit(model, splits.train, splits.val, TrainConfig(epochs=6, lr=3e-3, seed=0), progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "jet.pt"
    save_checkpoint(path, model)
    return path


def test_ptq_writes_checkpoint_hls4ml_config_and_reports(checkpoint, tmp_path):
    out = tmp_path / "ptq"
    result = run("quantize", str(checkpoint), "--data", "digits", "--precision", "ap_fixed<8,3>", "--method", "ptq",
                 "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "quantized (ptq)" in result.stdout and "test accuracy" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "ptq" and report["dataset"] == "digits"
    assert report["hardware_test_accuracy"] == report["quantized_test_accuracy"]
    assert report["quantized_test_accuracy"] >= report["float_test_accuracy"] - 0.05
    assert set(report["resources_before"]) == {"dsp", "bram18", "lut", "ff"}
    config = HLSConfig.from_hls4ml(json.loads((out / "hls4ml_config.json").read_text()))
    weight_type = config.layer("fc1").precision.weight
    assert weight_type.width == 8 and report["precisions"]["fc1"]["weight"] == weight_type.to_cpp()
    model = load_model(out / "quantized.pt")  # a plain zoo model with the quantized weights baked in
    assert torch.equal(model.fc1.weight, weight_type.quantize(model.fc1.weight))
    assert load_checkpoint(out / "quantized.pt").metadata["quantization"] == "ptq"
    assert "| fc1 | weight |" in (out / "report.md").read_text()


def test_search_reports_bits_and_resources(checkpoint, tmp_path, capsys):
    out = tmp_path / "search"
    code = main(["quantize", str(checkpoint), "--data", "digits", "--precision", "ap_fixed<16,6,AP_RND,AP_SAT>",
                 "--method", "search", "--widths", "16,8,4", "--tolerance", "0.02", "--bisect", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    search = report["search"]
    assert search["met_tolerance"] and search["final_accuracy"] >= search["reference_accuracy"] - 0.02
    assert search["resources_after"]["dsp"] < search["resources_start"]["dsp"]
    assert {w["weight"] for layer, w in search["widths"].items() if "weight" in w} <= {16, 8, 4}
    assert "# Precision search" in (out / "report.md").read_text()
    assert "quantized (search)" in capsys.readouterr().out


def test_qat_fine_tunes_from_calibrated_types(checkpoint, tmp_path):
    out = tmp_path / "qat"
    code = main(["quantize", str(checkpoint), "--data", "digits", "--precision", "ap_fixed<6,2,AP_RND,AP_SAT>",
                 "--method", "qat", "--calibrate", "--epochs", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["qat"]["train"]["history"]) == 2
    assert report["precisions"]["fc1"]["weight"].startswith("ap_fixed<6,")


def test_overflowing_precision_is_one_clear_line(checkpoint, tmp_path):
    result = run("quantize", str(checkpoint), "--data", "digits", "--precision", "ap_fixed<6,1>", "--method", "qat",
                 "--epochs", "1", "--out", str(tmp_path / "qat"), "--no-progress")
    assert result.returncode == 2
    assert "overflows ap_fixed<6,1>" in result.stderr and "integer bits" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_options_are_refused(checkpoint, tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main(["quantize", str(checkpoint), "--out", str(tmp_path / "busy"), "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["quantize", str(checkpoint), "--method", "search", "--widths", "8,x", "--out", str(tmp_path / "w"),
                 "--no-progress"]) == 2
    assert "--widths" in capsys.readouterr().err
