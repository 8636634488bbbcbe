"""FixedPoint must agree bit for bit with the ap_types C++ headers that hls4ml's C simulation uses.

The key test compiles tests/hardware/cpp/ap_quantize.cpp against hls4ml's own headers once per session
(cached by content hash in pytest's cache directory), feeds it >= 100,000 doubles per type for every
rounding x overflow mode and a set of awkward widths, and demands zero mismatches. The rest are unit and
property tests of parsing, printing and the numeric contract.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import shutil
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tenfold.errors import ConfigError
from tenfold.hardware import FixedPoint, Overflow, Rounding

CPP_SOURCE = Path(__file__).parent / "cpp" / "ap_quantize.cpp"
N_VALUES = 100_000

# --------------------------------------------------------------------------- the types under test


def _reference_types() -> list[FixedPoint]:
    """Every rounding x overflow mode on several shapes, plus saturation bits, odd widths and ap_int."""
    types: list[FixedPoint] = []
    for width, integer in [(16, 6), (8, 3), (6, 0), (18, 8), (4, -2), (10, 12)]:
        for signed in (True, False):
            for rnd in Rounding:
                for ovf in Overflow:
                    if not signed and ovf is Overflow.AP_WRAP_SM:
                        continue  # the C model aborts on ap_ufixed<..., AP_WRAP_SM>
                    types.append(FixedPoint(width, integer, signed, rnd, ovf))
    for signed in (True, False):  # one-bit types: the sign bit is all there is
        for rnd in (Rounding.AP_TRN, Rounding.AP_RND, Rounding.AP_RND_CONV):
            for ovf in Overflow:
                if signed or ovf is not Overflow.AP_WRAP_SM:
                    types.append(FixedPoint(1, 1, signed, rnd, ovf))
    for n in (1, 2, 3, 8):  # saturation bits
        for rnd in (Rounding.AP_TRN, Rounding.AP_RND_CONV, Rounding.AP_RND_ZERO):
            types.append(FixedPoint(8, 3, True, rnd, Overflow.AP_WRAP, n))
            types.append(FixedPoint(8, 3, True, rnd, Overflow.AP_WRAP_SM, n))
            types.append(FixedPoint(8, 3, False, rnd, Overflow.AP_WRAP, n))
    types += [
        FixedPoint(12, -3, True, Rounding.AP_RND, Overflow.AP_WRAP, 2),
        FixedPoint(12, 15, False, Rounding.AP_RND_INF, Overflow.AP_WRAP, 4),
        FixedPoint(12, 15, True, Rounding.AP_RND_MIN_INF, Overflow.AP_WRAP_SM, 3),
        FixedPoint(53, 20, True, Rounding.AP_RND_CONV, Overflow.AP_SAT),
        FixedPoint(53, 53, False, Rounding.AP_TRN_ZERO, Overflow.AP_WRAP),
        FixedPoint(32, -5, True, Rounding.AP_RND, Overflow.AP_WRAP),
        FixedPoint(64, 10, True, Rounding.AP_TRN, Overflow.AP_WRAP),
        FixedPoint(64, 10, True, Rounding.AP_RND, Overflow.AP_SAT),
        FixedPoint(64, 30, True, Rounding.AP_RND_CONV, Overflow.AP_WRAP_SM),
        FixedPoint(64, 64, False, Rounding.AP_TRN, Overflow.AP_WRAP),
        FixedPoint(64, 40, False, Rounding.AP_RND_ZERO, Overflow.AP_SAT_SYM),
    ]
    for width, signed in [(8, True), (8, False), (1, True), (1, False), (20, True), (64, True), (64, False)]:
        types.append(FixedPoint(width, width, signed, int_type=True))
    return types


REFERENCE_TYPES = _reference_types()

# --------------------------------------------------------------------------- test values


def _test_values(fp: FixedPoint) -> np.ndarray:
    """N_VALUES doubles mixing overflow, exact ties, near-ties, range edges, huge/tiny and odd bit patterns."""
    rng = np.random.default_rng(zlib.crc32(fp.to_cpp().encode()))
    f, lsb = fp.fractional, fp.lsb
    lo = -(2.0 ** (fp.integer - 1)) if fp.signed else 0.0
    hi = 2.0 ** (fp.integer - fp.signed)
    span = 2.0**fp.integer
    code_lo, code_hi = np.ldexp(lo, f), np.ldexp(hi, f)
    margin = max(4.0, (code_hi - code_lo) / 4)

    def codes(n: int) -> np.ndarray:
        return np.floor(rng.uniform(code_lo - margin, code_hi + margin, n))

    specials = [0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
    specials += [-1.7976931348623157e308, 0.25, -0.25, 0.3, -0.3, 0.5, -0.5, 0.75, -0.75, 1.5, -1.5]
    edges = np.array([lo, hi, -hi, 0.0, lo - lsb / 2, hi - lsb / 2, -hi + lsb / 2, lsb / 2, -lsb / 2])
    ties = np.ldexp(codes(12_000) + 0.5, -f)
    raw = rng.integers(0, 1 << 64, 4_000, dtype=np.uint64, endpoint=False).view(np.float64)
    n_uniform = N_VALUES - len(specials) - 66_000
    parts = [
        np.array(specials),
        rng.uniform(min(lo, -span / 2) - span / 2, hi + span / 2, n_uniform),  # wider than the range
        np.ldexp(codes(20_000) + 0.5, -f),  # exact half-LSB ties
        np.ldexp(codes(8_000), -f),  # on the grid
        np.where(rng.random(ties.size) < 0.5, np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf)),
        rng.choice(edges, 12_000) + rng.integers(-24, 25, 12_000) * (lsb / 8),  # around the range edges
        np.ldexp(  # every magnitude from far below the LSB to far above the range, both signs
            rng.integers(-(1 << 53) + 1, 1 << 53, 10_000).astype(np.float64),
            rng.integers(-53 - f - 20, 20 + fp.integer, 10_000),
        ),
        np.where(np.isnan(raw), 1.0, raw),  # random bit patterns: subnormals, huge values, inf
    ]
    values = np.concatenate(parts)
    flip = np.arange(values.size) >= len(specials)
    values = np.where(flip & (rng.random(values.size) < 0.15), -values, values)  # more negatives
    assert values.size == N_VALUES and not np.isnan(values).any()
    return values


# --------------------------------------------------------------------------- building the C++ reference


def _ap_types_dir() -> Path | None:
    """hls4ml's bundled ap_types headers, located through the installed package (no hard-coded venv)."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "templates" / "vivado" / "ap_types"
        if (candidate / "ap_fixed.h").is_file():
            return candidate
    return None


def _compile_reference(build: Path, headers: Path, compiler: str) -> Path:
    """Compile ap_quantize.cpp with all REFERENCE_TYPES, slicing the instantiations over the CPUs."""
    build.mkdir(parents=True, exist_ok=True)
    n_parts = max(1, min(4, os.cpu_count() or 1, len(REFERENCE_TYPES)))
    slices = [REFERENCE_TYPES[k::n_parts] for k in range(n_parts)]
    # the slices are interleaved; main() walks them part by part, so record that order
    order = [t for part in slices for t in part]
    flags = ["-O1", "-std=c++14", "-w", f"-I{headers}", f"-I{build}"]
    commands = []
    for k, part in enumerate(slices):
        inc = build / f"tenfold_part_{k}.inc"
        inc.write_text("".join(f"TENFOLD_TYPE(({t.to_cpp()}))\n" for t in part))
        obj = build / f"part_{k}.o"
        part_flags = [f"-DTENFOLD_PART=tenfold_part_{k}", f'-DTENFOLD_PART_FILE="{inc.name}"']
        commands.append([compiler, *flags, *part_flags, "-c", str(CPP_SOURCE), "-o", str(obj)])
    (build / "tenfold_parts.inc").write_text(
        "".join(f"TENFOLD_PART_TABLE(tenfold_part_{k}, {len(p)})\n" for k, p in enumerate(slices))
    )
    commands.append([compiler, *flags, "-c", str(CPP_SOURCE), "-o", str(build / "main.o")])
    with ThreadPoolExecutor(max_workers=n_parts) as pool:
        results = list(pool.map(lambda c: subprocess.run(c, capture_output=True, text=True), commands))
    for cmd, res in zip(commands, results, strict=True):
        if res.returncode != 0:
            raise RuntimeError(f"compiling the ap_types reference failed: {' '.join(cmd)}\n{res.stderr[-4000:]}")
    binary = build / "ap_quantize"
    objects = [str(build / f"part_{k}.o") for k in range(n_parts)] + [str(build / "main.o")]
    subprocess.run([compiler, *objects, "-o", str(binary)], check=True, capture_output=True)
    (build / "order.txt").write_text("\n".join(t.to_cpp() for t in order))
    return binary


def _cache_key(headers: Path, compiler: str) -> str:
    """Hash of everything the binary depends on, so a cached build is never stale."""
    h = hashlib.sha256()
    h.update(CPP_SOURCE.read_bytes())
    h.update("\n".join(t.to_cpp() for t in REFERENCE_TYPES).encode())
    h.update(subprocess.run([compiler, "--version"], capture_output=True).stdout)
    for header in sorted(headers.rglob("*.h")):
        h.update(header.name.encode() + header.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class Reference:
    """Inputs and C++ outputs per type (keyed by to_cpp())."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


@pytest.fixture(scope="session")
def cpp_reference(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """Build (or reuse) the C++ reference binary and run every test value through it in one process."""
    compiler = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("g++")
    if compiler is None:
        pytest.skip("g++ not found: cannot build the ap_types C++ reference for the bit-exactness test")
    headers = _ap_types_dir()
    if headers is None:
        pytest.skip("hls4ml's ap_types headers (hls4ml/templates/vivado/ap_types) not found")
    key = _cache_key(headers, compiler)
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("tenfold-ap-quantize")) if cache is not None else tmp_path_factory.mktemp("apq")
    build = root / key
    binary = build / "ap_quantize"
    if not (binary.is_file() and (build / "order.txt").is_file()):
        staging = tmp_path_factory.mktemp("apq-build")
        _compile_reference(staging, headers, compiler)
        build.mkdir(parents=True, exist_ok=True)
        for name in ("ap_quantize", "order.txt"):
            shutil.copy2(staging / name, build / f"{name}.tmp")
            os.replace(build / f"{name}.tmp", build / name)
    order = (build / "order.txt").read_text().split("\n")
    by_name = {t.to_cpp(): t for t in REFERENCE_TYPES}
    inputs = {name: _test_values(by_name[name]) for name in order}

    work = tmp_path_factory.mktemp("apq-run")
    with open(work / "in.bin", "wb") as fh:
        fh.write(np.uint64(len(order)).tobytes())
        for name in order:
            fh.write(np.uint64(N_VALUES).tobytes())
            fh.write(inputs[name].tobytes())
    subprocess.run(
        [str(binary), str(work / "in.bin"), str(work / "out.bin")],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # ap_int prints spurious "assign NaN" warnings for values in [1, 2)
    )
    flat = np.fromfile(work / "out.bin", dtype=np.float64)
    for name in ("in.bin", "out.bin"):  # ~0.4 GB each; pytest keeps old tmp dirs around
        (work / name).unlink()
    assert flat.size == N_VALUES * len(order)
    outputs = {name: flat[k * N_VALUES : (k + 1) * N_VALUES] for k, name in enumerate(order)}
    return Reference(inputs, outputs)


# --------------------------------------------------------------------------- bit-exactness


@pytest.mark.parametrize("fp", REFERENCE_TYPES, ids=lambda t: t.to_cpp().replace(" ", ""))
def test_quantize_matches_cpp_bit_for_bit(cpp_reference: Reference, fp: FixedPoint) -> None:
    name = fp.to_cpp()
    x, expected = cpp_reference.inputs[name], cpp_reference.outputs[name]
    got = fp.quantize(x)
    bad = np.flatnonzero(got.view(np.uint64) != expected.view(np.uint64))  # bitwise: -0.0 != 0.0
    examples = [(float(x[k]), float(got[k]), float(expected[k])) for k in bad[:5]]
    assert bad.size == 0, f"{name}: {bad.size}/{x.size} mismatches (x, tenfold, C++): {examples}"


def test_reference_covers_every_mode_combination() -> None:
    combos = {(t.rounding, t.overflow, t.signed) for t in REFERENCE_TYPES if not t.int_type}
    expected = {
        (r, o, s) for r in Rounding for o in Overflow for s in (True, False) if s or o is not Overflow.AP_WRAP_SM
    }
    assert expected <= combos
    assert len({t.to_cpp() for t in REFERENCE_TYPES}) == len(REFERENCE_TYPES)


def test_cpp_reference_values_exercise_overflow_and_ties(cpp_reference: Reference) -> None:
    """Guard the generator: the values must actually overflow and sit on ties, or the test proves little."""
    fp = FixedPoint(16, 6, rounding=Rounding.AP_RND_CONV, overflow=Overflow.AP_SAT)
    x = cpp_reference.inputs[fp.to_cpp()]
    assert ((x > fp.max_value) | (x < fp.min_value)).mean() > 0.2
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.ldexp(x, fp.fractional)
        assert (scaled - np.floor(scaled) == 0.5).mean() > 0.15


# --------------------------------------------------------------------------- parsing and printing

PARSE_CASES = [
    ("fixed<16,6>", FixedPoint(16, 6)),
    ("ufixed<8,3>", FixedPoint(8, 3, signed=False)),
    ("ap_fixed<16,6,AP_RND_CONV,AP_SAT>", FixedPoint(16, 6, True, Rounding.AP_RND_CONV, Overflow.AP_SAT)),
    ("fixed<16,6,RND,SAT>", FixedPoint(16, 6, True, Rounding.AP_RND, Overflow.AP_SAT)),
    ("ap_fixed<18,8,AP_RND,AP_SAT,0>", FixedPoint(18, 8, True, Rounding.AP_RND, Overflow.AP_SAT)),
    ("  ap_ufixed < 12 , -2 , rnd_zero , sat_sym >  ", FixedPoint(12, -2, False, "RND_ZERO", "SAT_SYM")),
    ("fixed<16,6,TRN,WRAP,0>", FixedPoint(16, 6)),
    ("fixed<8,3,TRN,WRAP_SM,2>", FixedPoint(8, 3, True, Rounding.AP_TRN, Overflow.AP_WRAP_SM, 2)),
    ("ap_fixed<10,12,AP_RND_MIN_INF>", FixedPoint(10, 12, rounding=Rounding.AP_RND_MIN_INF)),
    ("int<8>", FixedPoint(8, 8, int_type=True)),
    ("uint<4>", FixedPoint(4, 4, signed=False, int_type=True)),
    ("ap_int<8>", FixedPoint(8, 8, int_type=True)),
    ("ap_uint<12>", FixedPoint(12, 12, signed=False, int_type=True)),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES, ids=[c[0].strip() for c in PARSE_CASES])
def test_parse(text: str, expected: FixedPoint) -> None:
    assert FixedPoint.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fixed",
        "fixed<>",
        "fixed<16>",
        "fixed<16,6,RND,SAT,0,1>",
        "fixed<16.5,6>",
        "fixed<16,6,ROUND>",
        "fixed<16,6,RND,CLIP>",
        "fixed<16,6,RND,SAT,x>",
        "fixed<0,0>",
        "fixed<16,6,RND,SAT,17>",
        "ufixed<8,3,TRN,WRAP_SM>",
        "int<8,4>",
        "int<0>",
        "ac_fixed<16,6,true>",
        "float",
        "fixed[16,6]",
        "Fixed<16,6>",
    ],
)
def test_parse_rejects_malformed_strings(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        FixedPoint.parse(text)
    message = str(info.value)
    assert repr(text) in message
    assert "fixed<16,6>" in message or "e.g." in message  # points at a valid spelling


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ConfigError):
        FixedPoint.parse(16)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fp", "hls", "cpp"),
    [
        (FixedPoint(16, 6), "fixed<16,6>", "ap_fixed<16,6>"),
        (FixedPoint(8, 3, signed=False), "ufixed<8,3>", "ap_ufixed<8,3>"),
        (FixedPoint(16, 6, True, "RND_CONV", "SAT"), "fixed<16,6,RND_CONV,SAT>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"),
        (FixedPoint(16, 6, True, "RND"), "fixed<16,6,RND>", "ap_fixed<16,6,AP_RND>"),
        (FixedPoint(16, 6, True, "TRN", "SAT_SYM"), "fixed<16,6,TRN,SAT_SYM>", "ap_fixed<16,6,AP_TRN,AP_SAT_SYM>"),
        (FixedPoint(8, 3, True, "TRN", "WRAP", 2), "fixed<8,3,TRN,WRAP,2>", "ap_fixed<8,3,AP_TRN,AP_WRAP,2>"),
        (FixedPoint(4, -2, False), "ufixed<4,-2>", "ap_ufixed<4,-2>"),
        (FixedPoint(8, 8, int_type=True), "int<8>", "ap_int<8>"),
        (FixedPoint(12, 12, False, int_type=True), "uint<12>", "ap_uint<12>"),
        (FixedPoint(8, 8), "fixed<8,8>", "ap_fixed<8,8>"),
    ],
)
def test_to_hls4ml_and_to_cpp(fp: FixedPoint, hls: str, cpp: str) -> None:
    assert fp.to_hls4ml() == hls
    assert fp.to_cpp() == cpp
    assert str(fp) == cpp
    assert FixedPoint.parse(hls) == fp
    assert FixedPoint.parse(cpp) == fp


def test_wrap_sm_has_no_hls4ml_spelling() -> None:
    fp = FixedPoint(8, 3, overflow=Overflow.AP_WRAP_SM)
    assert fp.to_cpp() == "ap_fixed<8,3,AP_TRN,AP_WRAP_SM>"
    with pytest.raises(ConfigError, match="WRAP_SM"):
        fp.to_hls4ml()


def _hls4ml_types() -> list[FixedPoint]:
    return [t for t in REFERENCE_TYPES if t.overflow is not Overflow.AP_WRAP_SM]


def test_round_trip_through_hls4ml_parser() -> None:
    """Our strings parse in hls4ml to the same type, and hls4ml's own spellings parse back in ours."""
    fpga_backend = pytest.importorskip("hls4ml.backends.fpga.fpga_backend")
    hls_types = pytest.importorskip("hls4ml.model.types")
    fpga_types = pytest.importorskip("hls4ml.backends.fpga.fpga_types")
    converter = fpga_types.APTypeConverter()
    for fp in _hls4ml_types():
        theirs = fpga_backend.FPGABackend.convert_precision_string(fp.to_hls4ml())
        if fp.int_type:
            assert isinstance(theirs, hls_types.IntegerPrecisionType), fp
        else:
            assert isinstance(theirs, hls_types.FixedPrecisionType), fp
            assert theirs.integer == fp.integer
            assert theirs.rounding_mode.name == fp.rounding.short
            assert theirs.saturation_mode.name == fp.overflow.short
            assert theirs.saturation_bits == fp.saturation_bits
        assert (theirs.width, theirs.signed) == (fp.width, fp.signed)
        assert FixedPoint.parse(str(theirs)) == fp  # e.g. "fixed<16,6,TRN,WRAP,0>"
        assert FixedPoint.parse(converter.convert(theirs).definition_cpp()) == fp  # hls4ml's C++ spelling
        assert FixedPoint.parse(fp.to_cpp()) == fp
        if not fp.int_type and not (fp.width == 1 and fp.overflow is Overflow.AP_SAT_SYM and fp.signed):
            assert (theirs.min, theirs.max) == (fp.min_value, fp.max_value), fp  # same range as hls4ml's


# --------------------------------------------------------------------------- properties and validation


def test_properties() -> None:
    fp = FixedPoint(16, 6)
    assert (fp.fractional, fp.lsb, fp.resolution) == (10, 2**-10, 2**-10)
    assert (fp.min_value, fp.max_value) == (-32.0, 32.0 - 2**-10)
    assert (fp.min_code, fp.max_code) == (-(2**15), 2**15 - 1)
    assert not fp.is_integer
    sym = FixedPoint(8, 3, overflow=Overflow.AP_SAT_SYM)
    assert sym.min_value == -sym.max_value == -(4 - 2**-5)
    u = FixedPoint(8, 3, signed=False)
    assert (u.min_value, u.max_value) == (0.0, 8 - 2**-5)
    neg = FixedPoint(4, -2)
    assert (neg.lsb, neg.min_value, neg.max_value) == (2**-6, -(2**-3), 2**-3 - 2**-6)
    big = FixedPoint(10, 12, signed=False)
    assert (big.lsb, big.max_value, big.is_integer) == (4.0, 4096.0 - 4.0, True)
    i8 = FixedPoint.parse("int<8>")
    assert (i8.min_value, i8.max_value, i8.lsb, i8.is_integer) == (-128.0, 127.0, 1.0, True)
    one = FixedPoint(1, 1, overflow=Overflow.AP_SAT_SYM)
    assert (one.min_value, one.max_value) == (-1.0, 0.0)  # width 1 cannot be symmetric


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0, "integer": 0},
        {"width": -3, "integer": 2},
        {"width": 2000, "integer": 2},
        {"width": 8, "integer": 3, "saturation_bits": 9},
        {"width": 8, "integer": 3, "saturation_bits": -1},
        {"width": 8, "integer": 3, "signed": False, "overflow": "WRAP_SM"},
        {"width": 8, "integer": 3, "rounding": "ROUND"},
        {"width": 8, "integer": 3, "int_type": True},
        {"width": 8, "integer": 8, "int_type": True, "overflow": "SAT"},
        {"width": 8.0, "integer": 3},
        {"width": 8, "integer": 3, "signed": "yes"},
        {"width": 8, "integer": 2000},
    ],
)
def test_invalid_types_raise_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        FixedPoint(**kwargs)


def test_quantize_rejects_nan_and_too_wide_types() -> None:
    with pytest.raises(ConfigError, match="NaN"):
        FixedPoint(8, 3).quantize(np.array([1.0, np.nan]))
    with pytest.raises(ConfigError, match="64"):
        FixedPoint(65, 10).quantize(1.0)
    assert FixedPoint(65, 10).to_cpp() == "ap_fixed<65,10>"  # wide types still print


def test_documented_semantics_examples() -> None:
    """A few hand-checked cases the docs rely on (also covered by the C++ comparison)."""
    sat = FixedPoint(8, 3, overflow=Overflow.AP_SAT)
    assert sat.quantize(np.array([np.inf, -np.inf])).tolist() == [sat.max_value, sat.min_value]
    assert FixedPoint(8, 3).quantize(math.inf) == 0.0  # inf is 2**1024: every kept bit is zero
    i8 = FixedPoint.parse("ap_int<8>")
    assert i8.quantize(np.array([-1.5, -0.6, -0.3, 1.7, 130.0])).tolist() == [-1, 0, 1, 1, -126]
    assert FixedPoint(8, 8).quantize(np.array([-1.5, -0.3])).tolist() == [-2, -1]
    # rounding up into overflow, then wrapping vs saturating
    assert FixedPoint(8, 3, rounding="RND").quantize(3.99) == -4.0
    assert FixedPoint(8, 3, rounding="RND", overflow="SAT").quantize(3.99) == 4 - 2**-5
    # unsigned AP_WRAP with saturation bits sets the MSBs to 1 even for negative inputs
    assert FixedPoint(8, 3, signed=False, overflow="WRAP", saturation_bits=2).quantize(-1.0) == 7.0
    ties = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]) * 2**-5
    lsb = 2**-5
    expected = {
        "RND": [-2, -1, 0, 1, 2, 3],
        "RND_ZERO": [-2, -1, 0, 0, 1, 2],
        "RND_MIN_INF": [-3, -2, -1, 0, 1, 2],
        "RND_INF": [-3, -2, -1, 1, 2, 3],
        "RND_CONV": [-2, -2, 0, 0, 2, 2],
        "TRN": [-3, -2, -1, 0, 1, 2],
        "TRN_ZERO": [-2, -1, 0, 0, 1, 2],
    }
    for mode, codes in expected.items():
        got = FixedPoint(8, 3, rounding=mode).quantize(ties)
        assert (got / lsb).tolist() == codes, mode


def test_containers_and_dtypes() -> None:
    fp = FixedPoint(8, 3, rounding="RND", overflow="SAT")
    assert isinstance(fp.quantize(1.01), float)
    assert fp.quantize(3) == 3.0
    t32 = torch.tensor([0.1, -7.3, 2.2], dtype=torch.float32, requires_grad=True)
    out = fp.quantize(t32)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and not out.requires_grad
    assert torch.equal(out.double(), torch.from_numpy(fp.quantize(t32.detach().double().numpy())))
    assert fp.quantize(torch.tensor([1, 2])).dtype == torch.float64
    assert fp.quantize(torch.tensor([0.1], dtype=torch.bfloat16)).dtype == torch.bfloat16
    a32 = np.array([[0.1, 5.0]], dtype=np.float32)
    q = fp.quantize(a32)
    assert q.dtype == np.float32 and q.shape == (1, 2)
    assert isinstance(fp.quantize(np.float32(0.3)), np.float32)
    assert fp.quantize(np.arange(3)).dtype == np.float64
    with pytest.raises(ConfigError):
        fp.quantize("1.0")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        fp.quantize(np.array(["a"]))


def test_integer_codes() -> None:
    fp = FixedPoint(8, 3, rounding="RND")
    x = np.array([-4.0, -0.03, 0.0, 1.0, 3.96875])
    k = fp.to_integer(x)
    assert k.dtype == np.int64 and k.tolist() == [-128, -1, 0, 32, 127]
    assert fp.from_integer(k).tolist() == fp.quantize(x).tolist()
    assert fp.to_integer(1.0) == 32 and isinstance(fp.to_integer(1.0), int)
    assert fp.from_integer(-128) == -4.0
    assert torch.equal(fp.to_integer(torch.tensor([1.0])), torch.tensor([32]))
    assert fp.from_integer(torch.tensor([32])).tolist() == [1.0]
    with pytest.raises(ConfigError):
        fp.from_integer(128)
    with pytest.raises(ConfigError):
        fp.from_integer(np.array([1.5]))
    u64 = FixedPoint(64, 64, signed=False)
    big = u64.to_integer(np.array([2.0**63 + 2.0**12]))
    assert big.dtype == np.uint64 and int(big[0]) == 2**63 + 2**12
    assert u64.from_integer(big)[0] == 2.0**63 + 2.0**12


# --------------------------------------------------------------------------- hypothesis properties


@st.composite
def fixed_types(draw: st.DrawFn, max_width: int = 32) -> FixedPoint:
    width = draw(st.integers(1, max_width))
    integer = draw(st.integers(-8, width + 8))
    signed = draw(st.booleans())
    rounding = draw(st.sampled_from(list(Rounding)))
    overflows = [o for o in Overflow if signed or o is not Overflow.AP_WRAP_SM]
    overflow = draw(st.sampled_from(overflows))
    n = draw(st.integers(0, min(width, 4))) if overflow in (Overflow.AP_WRAP, Overflow.AP_WRAP_SM) else 0
    return FixedPoint(width, integer, signed, rounding, overflow, n)


@st.composite
def values_for(draw: st.DrawFn, fp: FixedPoint) -> float:
    """Finite doubles, biased towards the type's grid, its ties and its range."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    code = draw(st.integers(fp.min_code - 2**fp.width, fp.max_code + 2**fp.width))
    return math.ldexp(code + (0.5 if kind == 1 else 0.0), -fp.fractional)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_quantize_is_idempotent_and_representable(data: st.DataObject) -> None:
    fp = data.draw(fixed_types())
    x = np.array([data.draw(values_for(fp)) for _ in range(8)])
    q = fp.quantize(x)
    assert np.array_equal(fp.quantize(q), q)
    assert fp.is_representable(q).all()
    assert np.array_equal(fp.is_representable(x), fp.quantize(x) == x)
    assert np.array_equal(fp.from_integer(fp.to_integer(x)), q)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_quantize_is_monotone_with_saturation(data: st.DataObject) -> None:
    fp = data.draw(fixed_types())
    fp = FixedPoint(fp.width, fp.integer, fp.signed, data.draw(st.sampled_from(["TRN", "RND"])), "SAT")
    x = np.sort(np.array([data.draw(values_for(fp)) for _ in range(16)]))
    assert (np.diff(fp.quantize(x)) >= 0).all()


def _math_reference(fp: FixedPoint, x: float) -> float:
    """The textbook rule: round x * 2**F to an integer, then clip / zero / wrap. Exact rationals."""
    scaled = Fraction(x) * Fraction(2) ** fp.fractional
    floor = math.floor(scaled)
    frac = scaled - floor
    half_up = {
        Rounding.AP_RND: frac >= Fraction(1, 2),
        Rounding.AP_RND_ZERO: frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x < 0),
        Rounding.AP_RND_MIN_INF: frac > Fraction(1, 2),
        Rounding.AP_RND_INF: frac > Fraction(1, 2) or (frac == Fraction(1, 2) and x > 0),
        Rounding.AP_RND_CONV: frac > Fraction(1, 2) or (frac == Fraction(1, 2) and floor % 2 == 1),
        Rounding.AP_TRN: False,
        Rounding.AP_TRN_ZERO: frac != 0 and x < 0,
    }[fp.rounding]
    k = floor + int(half_up)
    lo, hi = fp.min_code, fp.max_code
    if fp.overflow is Overflow.AP_WRAP:
        k %= 1 << fp.width
        if fp.signed and k >= 1 << (fp.width - 1):
            k -= 1 << fp.width
    elif not lo <= k <= hi:
        k = 0 if fp.overflow is Overflow.AP_SAT_ZERO else min(max(k, lo), hi)
    return math.ldexp(float(k), -fp.fractional)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_quantize_follows_the_textbook_rule_for_wrap_and_sat(data: st.DataObject) -> None:
    """For AP_WRAP (no saturation bits) and the SAT modes the header reduces to round-then-clip/wrap."""
    fp = data.draw(fixed_types())
    assume(fp.overflow is not Overflow.AP_WRAP_SM and fp.saturation_bits == 0)
    x = data.draw(values_for(fp))
    assume(abs(x) >= 2.0**-1000)  # the header reads subnormals with the hidden bit set
    assert fp.quantize(x) == _math_reference(fp, x), (fp.to_cpp(), x)
