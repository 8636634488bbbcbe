"""The command line, run as a user would: a subprocess per command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def run(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "tenfold", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def test_help_lists_the_subcommands():
    result = run("--help")
    assert result.returncode == 0
    for command in ("demo", "train", "evaluate", "models", "datasets"):
        assert command in result.stdout
    assert run("--version").stdout.startswith("tenfold ")


def test_models_and_datasets_listings():
    assert "resnet20" in run("models").stdout
    assert "fashion-mnist" in run("datasets").stdout


def test_train_then_evaluate_round_trip(tmp_path):
    out = tmp_path / "jet.pt"
    result = run("train", "jet_mlp", "--data", "digits", "--epochs", "3", "--lr", "3e-3", "--out", str(out),
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    assert out.exists() and not out.with_name("jet.pt.state").exists()
    evaluated = run("evaluate", str(out), "--data", "digits", "--json", "--no-progress")
    assert evaluated.returncode == 0, evaluated.stderr
    payload = json.loads(evaluated.stdout)
    assert payload["n_samples"] == 359 and payload["accuracy"] > 0.5


def test_train_refuses_to_overwrite_its_input(tmp_path):
    out = tmp_path / "jet.pt"
    assert run("train", "jet_mlp", "--epochs", "1", "--out", str(out), "--no-progress").returncode == 0
    before = out.read_bytes()
    result = run("train", str(out), "--epochs", "1", "--out", str(out), "--no-progress")
    assert result.returncode == 2
    assert "never overwrites" in result.stderr and "Traceback" not in result.stderr
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "nosuchnet", "--out", "x.pt"), "unknown model"),
        (("train", "lenet", "--data", "nosuchdata", "--out", "x.pt"), "unknown dataset"),
        (("train", "lenet", "--data", "mnist", "--data-path", "/nonexistent", "--out", "x.pt"), "/nonexistent"),
        (("evaluate", "missing.pt"), "does not exist"),
        (("train", "lenet", "--lr", "-1", "--epochs", "1", "--out", "x.pt"), "lr"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    result = run(*args, "--no-progress", cwd=tmp_path)
    assert result.returncode == 2
    assert message.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_demo_runs_and_reports(tmp_path):
    result = run("demo", "--out", str(tmp_path / "demo"), "--epochs", "5", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "jet_mlp" in result.stdout and "lenet" in result.stdout and "test acc" in result.stdout
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    rows = {row["model"]: row for row in report["models"]}
    assert set(rows) == {"jet_mlp", "lenet", "jet_mlp joint (prune+quantize)", "lenet decomposed"}
    assert all(0.5 < row["test_accuracy"] <= 1.0 for row in report["models"])
    joint, baseline = rows["jet_mlp joint (prune+quantize)"], rows["jet_mlp"]
    assert joint["hardware"]["dsp"] < baseline["hardware"]["dsp"]
    assert rows["lenet decomposed"]["parameters"] < rows["lenet"]["parameters"]
    for row in (joint, rows["lenet decomposed"]):
        assert Path(row["report"]).is_file() and (Path(row["report"]).parent / "pareto.png").is_file()
    if shutil.which("g++"):
        assert joint["hardware"]["csim"] == "bit-exact" and "bit-exact" in result.stdout
        assert rows["lenet decomposed"]["hardware"]["csim"] == "bit-exact"
    assert "report_md" in result.stdout and "pareto" in result.stdout
    # a second run never clobbers the first
    again = run("demo", "--out", str(tmp_path / "demo"), "--epochs", "1", "--no-progress")
    assert again.returncode == 0 and (tmp_path / "demo-2" / "report.json").exists()


FIXTURES = Path(__file__).resolve().parents[1] / "hardware" / "fixtures"


def test_estimate_json_and_table(tmp_path):
    result = run("estimate", "jet_mlp", "--strategy", "Resource", "--reuse", "16", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["input_shape"] == [16]
    fc1 = next(layer for layer in payload["layers"] if layer["name"] == "fc1")
    assert fc1["dsp"] == 64 and fc1["reuse_factor"] == 16
    table = run("estimate", "jet_mlp", "--device", "pynq-z2")
    assert table.returncode == 0 and "over the device's capacity" in table.stdout and "% of xc7z020" in table.stdout


def test_estimate_with_hls4ml_config_and_report(tmp_path):
    config = tmp_path / "hls4ml.yml"
    config.write_text("Model:\n  Precision: fixed<16,6>\n  ReuseFactor: 16\n  Strategy: Resource\n"
                      "LayerName:\n  output:\n    ReuseFactor: 32\n")
    report = FIXTURES / "vivado_hls_2020.1_conv2d_csynth.xml"
    result = run("estimate", "jet_mlp", "--config", str(config), "--report", str(report), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert next(layer for layer in payload["layers"] if layer["name"] == "output")["reuse_factor"] == 32
    assert {row["resource"] for row in payload["comparison"]} >= {"dsp", "bram18", "lut", "ff"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("estimate", "jet_mlp", "--device", "xc9000"), "unknown device"),
        (("estimate", "jet_mlp", "--strategy", "Resource", "--reuse", "5"), "nearest valid"),
        (("estimate", "jet_mlp", "--precision", "fixed<16"), "precision"),
        (("estimate", "jet_mlp", "--input-shape", "3,a"), "input-shape"),
        (("estimate", "jet_mlp", "--input-shape", "3,32,32"), "input"),
        (("estimate", "jet_mlp", "--config", "missing.yml"), "does not exist"),
    ],
)
def test_estimate_bad_input(tmp_path, args, message):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert message.lower() in result.stderr.lower() and "Traceback" not in result.stderr


def test_prune_writes_model_report_and_config(tmp_path):
    pytest.importorskip("tenfold.knapsack")
    checkpoint = tmp_path / "jet.pt"
    assert run("train", "jet_mlp", "--epochs", "10", "--lr", "3e-3", "--out", str(checkpoint),
               "--no-progress").returncode == 0
    out = tmp_path / "pruned"
    result = run("prune", str(checkpoint), "--budget", "dsp<=0.6x,bram<=0.8x", "--strategy", "Resource", "--reuse",
                 "16", "--structure", "pattern", "--steps", "1", "--finetune-epochs", "1", "--tolerance", "0.2",
                 "--permute", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    for name in ("pruned.pt", "report.json", "report.md", "hls4ml_config.json", "prune_state.pt"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["met_budget"] and report["final_resources"]["dsp"] <= 0.6 * report["baseline_resources"]["dsp"]
    assert report["permutation"]["orders"]  # the saved model is the reordered one; the estimate below reloads it
    estimated = run("estimate", str(out / "pruned.pt"), "--strategy", "Resource", "--reuse", "16", "--json")
    assert estimated.returncode == 0, estimated.stderr
    assert json.loads(estimated.stdout)["totals"]["dsp"] == pytest.approx(report["final_resources"]["dsp"])
    again = run("prune", str(checkpoint), "--budget", "dsp<=0.6x", "--out", str(out), "--no-progress")
    assert again.returncode == 2 and "not empty" in again.stderr


def test_prune_bad_budget_is_one_clear_line(tmp_path):
    result = run("prune", "jet_mlp", "--budget", "dsp<0.1", "--out", str(tmp_path / "o"), "--no-progress")
    assert result.returncode == 2 and "budget" in result.stderr and "Traceback" not in result.stderr


def test_export_checks_the_c_simulation(tmp_path):
    pytest.importorskip("hls4ml")
    if shutil.which("g++") is None:
        pytest.skip("g++ is needed to compile hls4ml's C simulation")
    checkpoint = tmp_path / "jet.pt"
    assert run("train", "jet_mlp", "--epochs", "3", "--out", str(checkpoint), "--no-progress").returncode == 0
    result = run("export", str(checkpoint), "--out", str(tmp_path / "exp"), "--check", "--samples", "100")
    assert result.returncode == 0, result.stderr
    assert "bit-exact" in result.stdout
    check = json.loads((tmp_path / "exp" / "check.json").read_text())
    assert check["bit_exact"] and check["samples"] == 100
