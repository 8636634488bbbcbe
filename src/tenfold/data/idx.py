"""A strict reader for the IDX format of MNIST and Fashion-MNIST, gzipped or not.

Parsed here with numpy rather than through torchvision so there is no extra dependency, and so
every way a file can be wrong (truncated download, corrupt gzip, HTML error page saved under the
right name) becomes a DataError that names the file and says what was expected.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from tenfold.errors import DataError

__all__ = ["read_idx", "write_idx"]

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from exc
    if not raw:
        raise DataError(f"{path}: file is empty; expected an IDX file (re-download it)")
    if path.suffix == ".gz" or raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path}: corrupt or truncated gzip data ({exc}); re-download the file or gunzip a good copy"
            ) from exc
        if not raw:
            raise DataError(f"{path}: gzip archive is empty; expected an IDX file")
    return raw


def read_idx(path: str | Path, *, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a native-endian numpy array.

    Checks the magic number (two zero bytes, a type code, the number of dimensions), that the
    dimensions are present, and that the payload is exactly as long as they say. ``ndim`` pins the
    expected rank (3 for images, 1 for labels).
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes; an IDX file starts with a 4-byte magic number")
    zero0, zero1, type_code, rank = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or rank == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000TTNN with a type code TT "
            f"in {{{', '.join(f'{k:02x}' for k in _IDX_DTYPES)}}} and NN dimensions "
            "(is this really an IDX file?)"
        )
    if ndim is not None and rank != ndim:
        raise DataError(f"{path}: IDX file has {rank} dimensions, expected {ndim}")
    header_len = 4 + 4 * rank
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated IDX header: {len(raw)} bytes, expected at least {header_len}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=rank, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(raw) - header_len
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise DataError(f"{path}: IDX file {what}: dimensions {dims} need {expected} data bytes, found {payload}")
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when the name ends in .gz): for tests and small exports."""
    path = Path(path)
    arr = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    key = arr.dtype.newbyteorder("=")
    if key not in codes:
        raise DataError(f"IDX cannot store dtype {arr.dtype}; use one of uint8, int8, int16, int32, float32/64")
    code = codes[key]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = header + arr.astype(_IDX_DTYPES[code], copy=False).tobytes()
    if path.suffix == ".gz":
        body = gzip.compress(body)
    path.write_bytes(body)
    return path
