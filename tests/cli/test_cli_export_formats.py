"""`tenfold export --to onnx` and `--to hls-cp`, run as a user would: a subprocess per command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[2] / "src"


def run(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "tenfold", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.fixture
def pruned_checkpoint(tmp_path) -> Path:
    """A jet_mlp for digits with a pruning mask on its first layer, saved as a tenfold checkpoint."""
    from tenfold.models import create
    from tenfold.prune.masks import apply_masks
    from tenfold.train import save_checkpoint

    torch.manual_seed(0)
    model = create("jet_mlp", in_features=64, num_classes=10, flatten=True)
    first = next(name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    weight = dict(model.named_modules())[first].weight
    apply_masks(model, {first: (torch.rand(weight.shape, generator=torch.Generator().manual_seed(1)) > 0.5).float()})
    return save_checkpoint(tmp_path / "pruned.pt", model)


def test_onnx_export_of_a_pruned_checkpoint(tmp_path, pruned_checkpoint, capsys):
    """In-process (torch.onnx takes seconds to import; the subprocess path is covered by the hls-cp test)."""
    pytest.importorskip("onnxruntime")
    from tenfold.cli import main

    before = pruned_checkpoint.read_bytes()
    out = tmp_path / "onnx"
    code = main(["export", str(pruned_checkpoint), "--to", "onnx", "--check", "--samples", "50", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0 and "match" in stdout and "baked 1" in stdout
    report = json.loads((out / "onnx_report.json").read_text())
    assert report["within_tolerance"] and report["samples"] == 50 and report["argmax_agreement"] == 1.0
    assert report["baked"] == [report["baked"][0]] and "pruning mask" in report["baked"][0]
    assert (out / "model.onnx").stat().st_size > 1000
    assert pruned_checkpoint.read_bytes() == before


def test_hls_cp_export_is_bit_exact(tmp_path):
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("g++ is needed to compile the regeneration testbench")
    pytest.importorskip("hls4ml")
    out = tmp_path / "cp"
    result = run("export", "lenet", "--to", "hls-cp", "--rank", "3", "--bits", "8", "--mode", "cp3",
                 "--parallelism", "4", "--precision", "fixed<14,4,RND_CONV,SAT>", "--check", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "bit-exact" in result.stdout and "(0 differing" in result.stdout
    check = json.loads((out / "check.json").read_text())
    assert check["bit_exact"] and check["mismatches"] == 0
    assert {layer["name"]: layer["n_weights"] for layer in check["layers"]} == {
        "conv1": 150, "conv2": 2400, "fc1": 7680, "fc2": 10080, "fc3": 840}
    summary = json.loads((out / "decomposition.json").read_text())
    assert all(layer["rank"] == 3 and layer["weight_type"] == "ap_fixed<14,4,AP_RND_CONV,AP_SAT>"
               for layer in summary["layers"])
    # --parallelism 4 becomes the largest divisor of each last mode: 25 -> 1, 64 -> 4, 120 -> 4, 84 -> 4
    assert [layer["cost"]["parallelism"] for layer in summary["layers"]] == [1, 1, 4, 4, 4]
    assert "#pragma HLS PIPELINE II=1" in (out / "hls_cp_prj" / "cp_conv2.cpp").read_text()


def test_hls_cp_without_check_writes_the_project_only(tmp_path):
    from tenfold.cli import main

    out = tmp_path / "cp"
    assert main(["export", "jet_mlp", "--to", "hls-cp", "--rank", "2", "--out", str(out)]) == 0
    assert (out / "hls_cp_prj" / "build.sh").is_file() and not (out / "check.json").exists()
    assert not (out / "hls_cp_prj" / "tb_regenerate").exists()
    manifest = json.loads((out / "hls_cp_prj" / "manifest.json").read_text())
    assert [layer["rank"] for layer in manifest["layers"]] == [2] * len(manifest["layers"]) != []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--to", "hls-cp", "--bits", "1"), "--bits"),
        (("--to", "hls-cp", "--rank", "0"), "--rank"),
        (("--to", "onnx", "--opset", "11"), "--opset must be >= 18"),
    ],
)
def test_bad_options_give_one_clear_line(tmp_path, capsys, args, message):
    from tenfold.cli import main

    assert main(["export", "jet_mlp", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_export_refuses_to_write_over_its_input(pruned_checkpoint, capsys):
    from tenfold.cli import main

    before = pruned_checkpoint.read_bytes()
    assert main(["export", str(pruned_checkpoint), "--to", "onnx", "--out", str(pruned_checkpoint)]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert pruned_checkpoint.read_bytes() == before
