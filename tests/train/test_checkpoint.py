"""Checkpoints: round trip through the zoo spec, atomic writes, corrupt and foreign files."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tenfold.errors import CheckpointError, ModelError
from tenfold.models import create
from tenfold.train import load_checkpoint, load_model, save_checkpoint


def test_round_trip_rebuilds_identical_model(tmp_path):
    model = create("jet_mlp", in_features=64, num_classes=10)
    path = save_checkpoint(tmp_path / "m.pt", model, metadata={"dataset": "digits", "path": tmp_path})
    loaded = load_model(path)
    assert type(loaded) is type(model)
    for (name_a, a), (name_b, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert name_a == name_b and torch.equal(a, b)
    checkpoint = load_checkpoint(path)
    assert checkpoint.metadata["dataset"] == "digits" and checkpoint.metadata["path"] == str(tmp_path)
    x = torch.randn(3, 64)
    assert torch.equal(model.eval()(x), loaded.eval()(x))


def test_resnet_round_trip_keeps_batchnorm_statistics(tmp_path):
    model = create("resnet20")
    model.bn1.running_mean.fill_(0.25)
    loaded = load_model(save_checkpoint(tmp_path / "r.pt", model))
    assert torch.all(loaded.bn1.running_mean == 0.25)


def test_overwriting_an_existing_checkpoint_is_atomic(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, create("jet_mlp"))
    save_checkpoint(path, create("lenet"))
    assert load_checkpoint(path).model_spec["name"] == "lenet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_bad_files_give_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a tenfold checkpoint"):
        load_checkpoint(foreign)
    truncated = tmp_path / "truncated.pt"
    good = save_checkpoint(tmp_path / "good.pt", create("jet_mlp"))
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="folder"):
        load_model(tmp_path)


def test_non_zoo_model_saves_but_cannot_rebuild_itself(tmp_path):
    path = save_checkpoint(tmp_path / "plain.pt", nn.Linear(3, 2))
    checkpoint = load_checkpoint(path)
    assert checkpoint.model_spec is None and set(checkpoint.state_dict) == {"weight", "bias"}
    with pytest.raises(CheckpointError, match="model spec"):
        checkpoint.build_model()


def test_zoo_name_with_unknown_model_is_a_model_error():
    with pytest.raises(ModelError):
        load_model("no_such_model")
