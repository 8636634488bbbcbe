"""Atomic writes: a failure half-way leaves the old file and no debris."""

from __future__ import annotations

import json

import pytest

from tenfold.errors import CheckpointError, ConfigError
from tenfold.io import atomic_open, atomic_write_json, ensure_not_input
from tenfold.pipeline import prepare_output_dir


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert list(tmp_path.iterdir()) == [target]


def test_failure_keeps_old_content_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("precious")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half")
        raise RuntimeError("crash")
    assert target.read_text() == "precious"
    assert list(tmp_path.iterdir()) == [target]


def test_ensure_not_input(tmp_path):
    source = tmp_path / "model.pt"
    source.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="never overwrites"):
        ensure_not_input(tmp_path / "." / "model.pt", [source])
    ensure_not_input(tmp_path / "other.pt", [source, None])


def test_prepare_output_dir(tmp_path):
    out = tmp_path / "run"
    assert prepare_output_dir(out) == out
    (out / "result.txt").write_text("first")
    with pytest.raises(ConfigError, match="not empty"):
        prepare_output_dir(out)
    assert prepare_output_dir(out, auto_suffix=True) == tmp_path / "run-2"
    assert prepare_output_dir(out, overwrite=True) == out
    assert (out / "result.txt").read_text() == "first"
