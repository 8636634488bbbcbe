"""The hls4ml jet-tagging loader: tiny CSV/ARFF files written here, and fast, clear offline failure."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import sklearn.datasets
import torch

from tenfold.data import JET_CLASSES, JET_FEATURES, load_dataset, load_jets
from tenfold.data.jets import _fewest_retries
from tenfold.errors import DataError


def _original_rows(ds, x_all: np.ndarray) -> np.ndarray:
    """Map standardised rows back to row indices of the raw table (feature 0 is unique per row)."""
    x = ds.train.tensors[0].double().numpy() * np.array(ds.std) + np.array(ds.mean)
    return np.array([int(np.argmin(np.abs(x_all[:, 0] - v))) for v in x[:, 0]])


def test_jets_from_csv(jets_csv, jet_arrays, check_splits) -> None:
    ds = load_jets(jets_csv())
    check_splits(ds, num_classes=5, input_shape=(16,))
    assert ds.name == "jets" and ds.classes == ["g", "q", "w", "z", "t"]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (140, 20, 40)
    for split, per_class in ((ds.train, 28), (ds.val, 4), (ds.test, 8)):
        assert np.array_equal(np.bincount(split.tensors[1].numpy()), [per_class] * 5)
    x = ds.train.tensors[0]
    assert torch.allclose(x.mean(0), torch.zeros(16), atol=1e-4)
    assert torch.allclose(x.std(0, unbiased=False), torch.ones(16), atol=1e-3)
    assert len(ds.mean) == len(ds.std) == 16
    # Labels follow the rows: each training row's label is the raw table's label for that row.
    x_all, y_all = jet_arrays
    rows = _original_rows(ds, x_all)
    assert np.array_equal(y_all[rows], ds.train.tensors[1].numpy())
    np.testing.assert_allclose(ds.mean, x_all[rows].mean(0), rtol=1e-5)


def test_jets_csv_and_arff_agree(jets_csv, jets_arff) -> None:
    from_csv, from_arff = load_jets(jets_csv(), seed=3), load_jets(jets_arff, seed=3)
    for a, b in ((from_csv.train, from_arff.train), (from_csv.test, from_arff.test)):
        assert torch.allclose(a.tensors[0], b.tensors[0], atol=1e-5)
        assert torch.equal(a.tensors[1], b.tensors[1])
    assert load_dataset("lhc-jets", jets_arff, seed=3).classes == list(JET_CLASSES)


def test_jets_seeds(jets_csv) -> None:
    path = jets_csv()
    a, b, c = load_jets(path, seed=0), load_jets(path, seed=0), load_jets(path, seed=1)
    assert torch.equal(a.test.tensors[0], b.test.tensors[0])
    assert not torch.equal(a.test.tensors[0], c.test.tensors[0])


def test_jets_accepts_prefixed_names_one_hot_and_integer_codes(tmp_path: Path, jet_arrays) -> None:
    x, y = jet_arrays
    header = ",".join(f"j_{f}" for f in JET_FEATURES) + "," + ",".join(f"j_{c}" for c in JET_CLASSES)
    one_hot = np.eye(5)[y]
    lines = [header] + [",".join(map(str, [*row, *oh])) for row, oh in zip(x, one_hot, strict=True)]
    (tmp_path / "onehot.csv").write_text("\n".join(lines))
    codes = [",".join(JET_FEATURES) + ",jet_type"] + [
        ",".join(map(str, row)) + f",{label}" for row, label in zip(x, y, strict=True)
    ]
    (tmp_path / "codes.csv").write_text("\n".join(codes))
    a, b = load_jets(tmp_path / "onehot.csv"), load_jets(tmp_path / "codes.csv")
    assert torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert torch.allclose(a.train.tensors[0], b.train.tensors[0])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("zlogz,class\n1.0,g\n", "missing feature column"),
        (",".join(JET_FEATURES) + ",class\n", "no data rows"),
        (",".join(JET_FEATURES) + ",class\n" + "1," * 16 + "x\n", "unknown jet class 'x'"),
        (",".join(JET_FEATURES) + ",class\n" + "1," * 15 + "g\n", "row 2 has 16 fields"),
        (",".join(JET_FEATURES) + ",class\n" + "a," * 16 + "g\n", "non-numeric"),
        (",".join(JET_FEATURES) + ",class\n" + "nan," * 16 + "g\n", "NaN"),
        (",".join(JET_FEATURES) + ",kind\n" + "1," * 16 + "g\n", "no 'class' column"),
    ],
)
def test_jets_bad_csv(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        load_jets(path)
    assert "bad.csv" in str(info.value)


def test_jets_bad_paths_and_formats(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DataError, match="not found"):
        load_jets(tmp_path / "absent.csv")
    (tmp_path / "jets.h5").write_bytes(b"\x89HDF")
    with pytest.raises(DataError, match="unsupported extension"):
        load_jets(tmp_path / "jets.h5")
    (tmp_path / "bad.arff").write_text("@RELATION x\n@ATTRIBUTE a WHATEVER\n@DATA\n1\n")
    with pytest.raises(DataError, match=r"bad\.arff"):
        load_jets(tmp_path / "bad.arff")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as on a machine without pyarrow
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "jets.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match="pip install pyarrow"):
        load_jets(tmp_path / "jets.parquet")
    with pytest.raises(DataError, match="test_fraction"):
        load_jets(tmp_path / "jets.parquet", test_fraction=0)


def test_jets_without_path_or_download_explains_both_options() -> None:
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_jets()
    assert time.monotonic() - start < 1.0
    message = str(info.value)
    assert "https://www.openml.org/d/42468" in message and "allow_download" in message


def test_jets_offline_download_fails_fast(tmp_path: Path, monkeypatch) -> None:
    """The real fetch_openml code path, with every connection refused as on a machine without internet."""

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    previous_timeout = socket.getdefaulttimeout()
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_jets(allow_download=True, timeout=2.0, data_home=tmp_path)
    assert time.monotonic() - start < 30.0
    message = str(info.value)
    assert "offline" in message and "https://www.openml.org/d/42468" in message
    assert "blocked by the test" in message  # it failed on the network, not on an argument
    assert socket.getdefaulttimeout() == previous_timeout


def test_jets_asks_scikit_learn_for_the_fewest_retries_it_accepts() -> None:
    # Whether scikit-learn accepts the value is proven by the offline test failing on the network.
    assert _fewest_retries(sklearn.datasets.fetch_openml)["n_retries"] in (0, 1)

    def old_style(*, name=None, n_retries=3):
        return None

    assert _fewest_retries(old_style) == {"n_retries": 0}
    assert _fewest_retries(lambda name=None: None) == {}


def test_jets_download_path_parses_openml_bunch(monkeypatch, jet_arrays) -> None:
    x, y = jet_arrays
    calls = {}

    def fake_fetch_openml(*, n_retries=3, delay=1.0, **kwargs):
        calls.update(kwargs, n_retries=n_retries, timeout=socket.getdefaulttimeout())
        names = ["extra", *JET_FEATURES]
        data = np.concatenate([np.zeros((len(x), 1)), x], axis=1)
        return SimpleNamespace(data=data, target=np.array([JET_CLASSES[k] for k in y]), feature_names=names)

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", fake_fetch_openml)
    ds = load_jets(allow_download=True, timeout=3.0)
    assert calls["name"] == "hls4ml_lhc_jets_hlf" and calls["version"] == 1
    assert calls["n_retries"] <= 1 and calls["parser"] == "liac-arff" and calls["as_frame"] is False
    assert calls["timeout"] == 3.0
    assert len(ds.train) + len(ds.val) + len(ds.test) == len(y) and ds.input_shape == (16,)
