"""ONNX export: onnxruntime must reproduce PyTorch, with pruning masks and parametrizations baked in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils import prune as torch_prune

from tenfold.errors import CheckpointError, ConfigError
from tenfold.export.hls4ml_project import ExportError
from tenfold.export.onnx_export import bake_compression, export_onnx, require_onnx
from tenfold.models import create, list_models
from tenfold.prune.masks import apply_masks

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _onnx_weights(path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 5))


def test_mlp_matches_onnxruntime(tmp_path):
    model = _mlp()
    data = torch.randn(40, 16, generator=torch.Generator().manual_seed(1))
    report = export_onnx(model, (16,), tmp_path / "mlp.onnx", check_data=data)
    assert report.path.is_file() and report.opset == 18 and report.samples == 40
    assert report.within_tolerance and report.max_abs_difference < 1e-5 and report.argmax_agreement == 1.0
    assert report.baked == []
    assert model.training  # the caller's module is untouched (export works on an eval() copy)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic write left no temp file
    weights = _onnx_weights(report.path)
    assert any(np.array_equal(w, model[0].weight.detach().numpy()) for w in weights.values())


def test_lenet_from_the_zoo_with_any_batch(tmp_path):
    import onnxruntime

    assert "lenet" in list_models()
    model = create("lenet", image_size=8, num_classes=10)
    report = export_onnx(model, (1, 8, 8), tmp_path / "lenet.onnx", samples=8)
    assert report.within_tolerance and report.argmax_agreement == 1.0
    session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)
    (out,) = session.run(None, {session.get_inputs()[0].name: batch})
    with torch.no_grad():
        assert np.allclose(out, model.eval()(torch.from_numpy(batch)).numpy(), atol=1e-5)


def test_compressed_model_exports_its_effective_weights(tmp_path):
    """tenfold's masks, torch.nn.utils.prune (a non-leaf weight) and a parametrization, all baked in."""

    class Symmetric(nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return weight.triu() + weight.triu(1).T

    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    mask = (torch.rand(8, 16, generator=torch.Generator().manual_seed(2)) > 0.7).float()
    apply_masks(model, {"0": mask})
    parametrize.register_parametrization(model[2], "weight", Symmetric())
    torch_prune.l1_unstructured(model[4], "weight", amount=0.5)
    report = export_onnx(model, (16,), tmp_path / "pruned.onnx")
    assert report.within_tolerance and report.max_abs_difference < 1e-5
    assert sorted(report.baked) == ["0.weight (pruning mask)", "2.weight (parametrization)",
                                    "4.weight (pruning mask)"]
    weights = _onnx_weights(report.path)
    assert not any("mask" in name or "orig" in name or "parametrizations" in name for name in weights)
    effective = (model[0].weight_orig * model[0].weight_mask).detach().numpy()
    matches = [w for w in weights.values() if w.shape == effective.shape and np.array_equal(w, effective)]
    assert matches and int((matches[0] == 0).sum()) == int((mask == 0).sum())
    symmetric = model[2].weight.detach().numpy()
    assert any(np.array_equal(w, symmetric) for w in weights.values())
    # the caller's model keeps its masks and parametrization and still runs
    assert hasattr(model[0], "weight_mask") and hasattr(model[4], "weight_mask")
    assert parametrize.is_parametrized(model[2])
    with torch.no_grad():
        assert model(torch.ones(2, 16)).shape == (2, 3)


def test_bake_compression_keeps_the_function():
    model = _mlp()
    apply_masks(model, {"2": (torch.arange(160).reshape(5, 32) % 3 == 0).float()})
    x = torch.randn(4, 16)
    before = model(x)
    assert bake_compression(model) == ["2.weight (pruning mask)"]
    assert not hasattr(model[2], "weight_mask") and torch.equal(model(x), before)


def test_a_bad_export_is_an_export_error_and_leaves_no_file(tmp_path):
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[x > 0].sum().reshape(1, 1).expand(x.shape[0], 1) if x.sum() > 0 else x[:, :1]

    with pytest.raises(ExportError, match="could not export"):
        export_onnx(DataDependent(), (4,), tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_arguments_and_inputs_are_checked(tmp_path):
    model = _mlp()
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not overwritten")
    with pytest.raises(CheckpointError, match="never overwrites"):
        export_onnx(model, (16,), checkpoint, checkpoint=checkpoint)
    assert checkpoint.read_bytes() == b"not overwritten"
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(model, (16,), tmp_path / "m.onnx", opset=13)
    with pytest.raises(ConfigError, match=r"check_data must have shape \(N, 16\)"):
        export_onnx(model, (16,), tmp_path / "m.onnx", check_data=torch.zeros(3, 15))


def test_missing_onnx_names_the_install_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ExportError, match=r"onnxruntime.*pip install 'tenfold\[onnx\]'"):
        require_onnx()
