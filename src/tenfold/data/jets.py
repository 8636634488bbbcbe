"""The hls4ml LHC jet-tagging dataset (OpenML 42468, "hls4ml_lhc_jets_hlf"): 16 features, 5 classes.

This is the reference benchmark of the hls4ml papers. It is read from a local CSV, ARFF or Parquet
file; downloading from OpenML is opt-in (``allow_download=True``) and bounded by a socket timeout,
because tenfold must work, and fail fast and clearly, on machines without internet.
"""

from __future__ import annotations

import csv
import inspect
import math
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tenfold.data.splits import (
    DataSplits,
    check_fraction,
    fraction_count,
    make_splits,
    stratified_partition,
)
from tenfold.errors import DataError

__all__ = ["JETS_OPENML_NAME", "JETS_OPENML_URL", "JET_CLASSES", "JET_FEATURES", "load_jets"]

JET_FEATURES: tuple[str, ...] = (
    "zlogz",
    "c1_b0_mmdt",
    "c1_b1_mmdt",
    "c1_b2_mmdt",
    "c2_b1_mmdt",
    "c2_b2_mmdt",
    "d2_b1_mmdt",
    "d2_b2_mmdt",
    "d2_a1_b1_mmdt",
    "d2_a1_b2_mmdt",
    "m2_b1_mmdt",
    "m2_b2_mmdt",
    "n2_b1_mmdt",
    "n2_b2_mmdt",
    "mass_mmdt",
    "multiplicity",
)
# gluon, light quark, W, Z, top: the order used by OpenML 42468 and the hls4ml tutorials.
JET_CLASSES: tuple[str, ...] = ("g", "q", "w", "z", "t")
JETS_OPENML_NAME = "hls4ml_lhc_jets_hlf"
JETS_OPENML_URL = "https://www.openml.org/d/42468"
# Names the label column goes by: OpenML's "class", and what some converted copies call it.
_LABEL_COLUMNS = ("class", "jet_type", "target", "label")
_OFFLINE_HINT = f"download the dataset from {JETS_OPENML_URL} as ARFF/CSV and pass its path"


def _column_index(header: Sequence[str], source: Path) -> tuple[list[int], int | list[int]]:
    """Positions of the 16 features and of the label: a ``class`` column or one-hot ``j_g``..``j_t``.

    Feature names may carry the ``j_`` prefix of the original hls4ml HDF5 files.
    """
    names = [h.strip().strip("'\"").lower() for h in header]
    lookup = {n: i for i, n in enumerate(names)}
    for n, i in list(lookup.items()):
        if n.startswith("j_"):
            lookup.setdefault(n[2:], i)
    missing = [f for f in JET_FEATURES if f not in lookup]
    if missing:
        raise DataError(
            f"{source}: missing feature column(s) {missing}; expected the 16 columns {list(JET_FEATURES)} "
            f"and a 'class' column with labels {list(JET_CLASSES)}"
        )
    features = [lookup[f] for f in JET_FEATURES]
    for label_name in _LABEL_COLUMNS:
        if label_name in lookup:
            return features, lookup[label_name]
    one_hot = [f"j_{c}" for c in JET_CLASSES]
    if all(c in names for c in one_hot):
        return features, [names.index(c) for c in one_hot]
    raise DataError(f"{source}: no 'class' column (labels {list(JET_CLASSES)}) and no one-hot j_g..j_t columns")


def _encode_labels(raw: np.ndarray, source: Path) -> np.ndarray:
    """Class labels g/q/w/z/t (any case, quoted or bytes) or integer codes 0..4 -> int64."""
    values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw.tolist()]
    values = [v.strip().strip("'\"").lower() for v in values]
    codes = {c: i for i, c in enumerate(JET_CLASSES)}
    codes.update({str(i): i for i in range(len(JET_CLASSES))})
    codes.update({f"{i}.0": i for i in range(len(JET_CLASSES))})
    out = np.empty(len(values), dtype=np.int64)
    for k, v in enumerate(values):
        code = codes.get(v)
        if code is None:
            raise DataError(f"{source}: unknown jet class {v!r} in row {k + 1}; expected one of {list(JET_CLASSES)}")
        out[k] = code
    return out


def _features(table: np.ndarray, source: Path) -> np.ndarray:
    try:
        x = np.asarray(table, dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{source}: non-numeric feature value ({exc})") from exc
    if not np.all(np.isfinite(x)):
        raise DataError(f"{source}: feature columns contain NaN or infinite values")
    return x.astype(np.float32)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty CSV file; expected a header row with the 16 features and 'class'")
            rows = [r for r in reader if r and any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from exc
    feat_idx, label_idx = _column_index(header, path)
    if not rows:
        raise DataError(f"{path}: CSV has a header but no data rows")
    width = len(header)
    bad = next((k for k, r in enumerate(rows) if len(r) != width), None)
    if bad is not None:
        raise DataError(f"{path}: row {bad + 2} has {len(rows[bad])} fields, the header has {width}")
    table = np.array(rows, dtype=object)
    x = _features(table[:, feat_idx], path)
    if isinstance(label_idx, list):
        y = np.argmax(_features(table[:, label_idx], path), axis=1).astype(np.int64)
    else:
        y = _encode_labels(table[:, label_idx], path)
    return x, y


def _read_arff(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import arff

    try:
        data, meta = arff.loadarff(str(path))
    except Exception as exc:  # scipy raises ParseArffError, ValueError, IndexError... on bad files
        raise DataError(f"{path}: cannot parse ARFF ({type(exc).__name__}: {exc})") from exc
    names = list(meta.names())
    feat_idx, label_idx = _column_index(names, path)
    if len(data) == 0:
        raise DataError(f"{path}: ARFF file has no data rows")
    x = _features(np.stack([data[names[i]] for i in feat_idx], axis=1), path)
    if isinstance(label_idx, list):
        y = np.argmax(np.stack([data[names[i]] for i in label_idx], axis=1), axis=1).astype(np.int64)
    else:
        y = _encode_labels(np.asarray(data[names[label_idx]]), path)
    return x, y


def _read_parquet(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow: `pip install pyarrow`, or convert the file to CSV"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
        raise DataError(f"{path}: cannot read Parquet ({type(exc).__name__}: {exc})") from exc
    names = list(table.column_names)
    feat_idx, label_idx = _column_index(names, path)
    if table.num_rows == 0:
        raise DataError(f"{path}: Parquet file has no rows")
    x = _features(np.stack([table.column(i).to_numpy() for i in feat_idx], axis=1), path)
    if isinstance(label_idx, list):
        y = np.argmax(np.stack([table.column(i).to_numpy() for i in label_idx], axis=1), axis=1).astype(np.int64)
    else:
        y = _encode_labels(np.asarray(table.column(label_idx).to_pylist(), dtype=object), path)
    return x, y


_READERS = {".csv": _read_csv, ".arff": _read_arff, ".parquet": _read_parquet, ".pq": _read_parquet}


def _fewest_retries(fetch: Any) -> dict[str, Any]:
    """The smallest ``n_retries`` this scikit-learn accepts (0 where allowed; 1.9 demands >= 1), short delay.

    Retrying is pointless offline and each retry would wait again, so fail on the first error we can.
    """
    params = inspect.signature(fetch).parameters
    if "n_retries" not in params:
        return {}
    lowest = 0
    for constraint in getattr(fetch, "_skl_parameter_constraints", {}).get("n_retries", []):
        left = getattr(constraint, "left", None)
        if isinstance(left, int | float):
            lowest = max(lowest, math.ceil(left))
    kwargs: dict[str, Any] = {"n_retries": lowest}
    if lowest > 0 and "delay" in params:
        kwargs["delay"] = 0.1
    return kwargs


def _download(timeout: float, data_home: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Fetch from OpenML with a global socket timeout; every failure becomes a quick DataError."""
    from sklearn.datasets import fetch_openml

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(float(timeout))
    try:
        with warnings.catch_warnings():
            # scikit-learn warns before each retry; the DataError below says all there is to say.
            warnings.filterwarnings("ignore", message="A network error occurred", category=UserWarning)
            bunch: Any = fetch_openml(
                name=JETS_OPENML_NAME,
                version=1,
                as_frame=False,
                parser="liac-arff",
                data_home=None if data_home is None else str(data_home),
                **_fewest_retries(fetch_openml),
            )
    except Exception as exc:  # URLError, TimeoutError, OSError, ValueError from a partial download...
        raise DataError(
            f"jets: could not download {JETS_OPENML_NAME} from OpenML ({type(exc).__name__}: {exc}). "
            f"If offline: {_OFFLINE_HINT}"
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
    source = Path(f"openml:{JETS_OPENML_NAME}")
    feat_idx, _ = _column_index([*bunch.feature_names, "class"], source)
    x = _features(np.asarray(bunch.data)[:, feat_idx], source)
    y = _encode_labels(np.asarray(bunch.target, dtype=object), source)
    return x, y


def load_jets(
    path: str | Path | None = None,
    *,
    allow_download: bool = False,
    timeout: float = 10.0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    data_home: str | Path | None = None,
) -> DataSplits:
    """Jet-tagging features (N, 16) float32 standardised with training-split stats; labels g, q, w, z, t.

    ``path`` is a .csv, .arff or .parquet file with the 16 feature columns (:data:`JET_FEATURES`, a
    ``j_`` prefix is accepted) and a ``class`` column. With no path, ``allow_download=True`` fetches
    it from OpenML (``timeout`` seconds per socket operation, cached under ``data_home``); otherwise
    this raises at once, explaining both ways to get the data.
    """
    val_fraction = check_fraction("val_fraction", val_fraction)
    test_fraction = check_fraction("test_fraction", test_fraction, allow_zero=False)
    if val_fraction + test_fraction >= 1.0:
        raise DataError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    if path is None:
        if not allow_download:
            raise DataError(
                f"jets: no local file given and downloading is off. Either {_OFFLINE_HINT} "
                f"(.csv, .arff or .parquet), or allow the download from OpenML "
                f"(allow_download=True / --download) when online"
            )
        x, y = _download(timeout, data_home)
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"jets: {p} not found; expected a .csv, .arff or .parquet file ({_OFFLINE_HINT})")
        reader = _READERS.get(p.suffix.lower())
        if reader is None:
            raise DataError(f"jets: {p} has an unsupported extension; expected .csv, .arff or .parquet")
        if p.stat().st_size == 0:
            raise DataError(f"jets: {p} is empty; expected a header with the 16 features and 'class'")
        x, y = reader(p)
    test_idx, pool_idx = stratified_partition(
        y, fraction_count(len(y), test_fraction), np.random.default_rng([seed, 0])
    )
    return make_splits(
        "jets",
        x[pool_idx],
        y[pool_idx],
        x[test_idx],
        y[test_idx],
        JET_CLASSES,
        val_fraction=val_fraction / (1.0 - test_fraction),
        seed=seed,
        normalize="dataset",
    )
