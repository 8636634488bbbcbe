"""Checkpoint loading: accepted layouts, strictness, error messages, and the public CIFAR ResNets."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tenfold.errors import ModelError
from tenfold.models import (
    PRETRAINED_CIFAR_MEAN,
    PRETRAINED_CIFAR_STD,
    create,
    extract_state_dict,
    load_pretrained,
)

RESNET_FILES = {
    "resnet20": "cifar10-resnet/resnet20-12fca82f.th",
    "resnet32": "cifar10-resnet/resnet32-d509ac18.th",
    "resnet44": "cifar10-resnet/resnet44-014dd654.th",
    "resnet56": "cifar10-resnet/resnet56-4bfd9763.th",
}


def _trained_lenet() -> torch.nn.Module:
    torch.manual_seed(1)
    model = create("lenet", image_size=8)
    for p in model.parameters():
        p.data.normal_()
    return model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("layout", ["raw", "state_dict", "model", "dataparallel", "no_batch_counters"])
def test_accepted_checkpoint_layouts(tmp_path: Path, layout: str) -> None:
    source = _trained_lenet()
    state = source.state_dict()
    payload: object = {
        "raw": state,
        "state_dict": {"state_dict": state, "epoch": 3, "best_prec1": 91.0},
        "model": {"model": state, "optimizer": {"lr": 0.1}},
        "dataparallel": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
        "no_batch_counters": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }[layout]
    path = tmp_path / "ckpt.pt"
    torch.save(payload, path)
    target = create("lenet", image_size=8)
    assert load_pretrained(target, str(path)) is target
    assert _same_weights(target, source)
    assert _same_weights(create("lenet", image_size=8, pretrained=path), source)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_pretrained(create("jet_mlp"), tmp_path / "nope.th")
    with pytest.raises(ModelError, match="is not a file"):
        load_pretrained(create("jet_mlp"), tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", b"PK\x03\x04garbage" * 10])
def test_corrupt_file_names_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.th"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="cannot read checkpoint") as info:
        create("resnet20", pretrained=path)
    assert str(path) in str(info.value)


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "truncated.th"
    torch.save(create("jet_mlp").state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelError, match=re.escape(str(path))):
        load_pretrained(create("jet_mlp"), path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.th"
    torch.save(create("jet_mlp"), path)  # a whole pickled module, not a state_dict
    with pytest.raises(ModelError, match="state_dict"):
        load_pretrained(create("jet_mlp"), path)


def test_non_tensor_payload(tmp_path: Path) -> None:
    path = tmp_path / "odd.th"
    torch.save({"epoch": 3}, path)
    with pytest.raises(ModelError, match=r"not all named tensors|no state_dict"):
        load_pretrained(create("jet_mlp"), path)
    torch.save([1, 2], path)
    with pytest.raises(ModelError, match="no state_dict"):
        load_pretrained(create("jet_mlp"), path)


def test_wrong_architecture_says_what_the_file_looks_like(tmp_path: Path) -> None:
    path = tmp_path / "r20.th"
    torch.save({"state_dict": {f"module.{k}": v for k, v in create("resnet20").state_dict().items()}}, path)
    with pytest.raises(ModelError) as info:
        create("resnet32", pretrained=path)
    message = str(info.value)
    assert "'resnet32'" in message and "looks like a 'resnet20' checkpoint" in message
    assert "layer1.3.conv1.weight" in message  # first offending keys are listed
    assert "missing" in message


def test_other_num_classes_is_a_shape_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "r20_100.th"
    torch.save(create("resnet20", num_classes=100).state_dict(), path)
    with pytest.raises(ModelError) as info:
        create("resnet20", pretrained=path)
    message = str(info.value)
    assert "shape mismatch" in message and "linear.weight: (100, 64) in file vs (10, 64) in model" in message
    assert "'resnet20' built with other sizes" in message
    source = create("resnet20", num_classes=100)
    source.load_state_dict(torch.load(path, weights_only=True))
    assert _same_weights(create("resnet20", num_classes=100, pretrained=path), source)


def test_unknown_architecture_and_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "extra.th"
    state = create("jet_mlp").state_dict()
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"1 unexpected: extra\.weight.*does not match any built-in"):
        load_pretrained(create("jet_mlp"), path)


def test_extract_state_dict_only_strips_a_common_prefix() -> None:
    t = torch.zeros(1)
    assert set(extract_state_dict({"module.a": t, "module.b": t})) == {"a", "b"}
    assert set(extract_state_dict({"module.a": t, "b": t})) == {"module.a", "b"}
    with pytest.raises(ModelError):
        extract_state_dict({})


def test_normalisation_constants() -> None:
    assert PRETRAINED_CIFAR_MEAN == (0.485, 0.456, 0.406)
    assert PRETRAINED_CIFAR_STD == (0.229, 0.224, 0.225)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", sorted(RESNET_FILES))
def test_public_cifar_resnets_load_strictly(shared_data: Callable[[str], Path], name: str) -> None:
    path = shared_data(RESNET_FILES[name])
    model = create(name, pretrained=path)
    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert len(raw) == sum(1 for k in model.state_dict() if not k.endswith("num_batches_tracked"))
    for key, value in raw.items():
        assert torch.equal(model.state_dict()[key.removeprefix("module.")], value)


@pytest.mark.shared_data
def test_pretrained_resnet20_accuracy_on_cifar10_jpeg(shared_data: Callable[[str], Path]) -> None:
    """ResNet-20 reaches ~81% on the JPEG-re-encoded CIFAR-10 test set (91.78% on the originals)."""
    weights = shared_data(RESNET_FILES["resnet20"])
    data = np.load(shared_data("cifar10-jpeg/test.npz"))
    images, labels = data["images"], data["labels"]
    assert images.shape == (10_000, 32, 32, 3) and images.dtype == np.uint8
    mean = np.asarray(PRETRAINED_CIFAR_MEAN, dtype=np.float32)
    std = np.asarray(PRETRAINED_CIFAR_STD, dtype=np.float32)
    x = torch.from_numpy(((images.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(labels.astype(np.int64))

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = create("resnet20", pretrained=weights).eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(x), 500):
                correct += int((model(x[start : start + 500]).argmax(1) == y[start : start + 500]).sum())
    finally:
        torch.set_num_threads(threads)
    accuracy = correct / len(x)
    assert accuracy >= 0.78, f"ResNet-20 top-1 {accuracy:.2%} on cifar10-jpeg test set, expected ~81%"
