"""HLS C++ that regenerates layer weights on chip from quantized CP factors, and a bit-exact check of it.

The chip stores only short fixed-point factor vectors (``ap_int`` codes; every factor's scale is a power of two,
so it is a constant shift) and rebuilds the weight tensor (Nekooei & Safari's "parameter reproduction"). The
C++ design is described in :mod:`tenfold.export.cp_templates`, its price in
:mod:`tenfold.hardware.regeneration`.

The check compiles the generated testbench with g++ against hls4ml's ``ap_types`` headers, runs it, and
compares every regenerated weight with tenfold's Python model of the same arithmetic: the accumulator is
computed exactly with integers, and its one rounding step (the cast to the weight type) is replayed by
:meth:`FixedPoint.quantize`. Anything but zero mismatches is a bug.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tenfold import __version__
from tenfold.decompose.quantized import QuantizedCPResult
from tenfold.errors import ConfigError
from tenfold.export.cp_templates import (
    COMPILE_FLAGS,
    UNITY_NAME,
    KernelSpec,
    build_script,
    kernel_header,
    kernel_source,
    testbench_source,
    unity_source,
)
from tenfold.export.hls4ml_project import ExportError
from tenfold.hardware.devices import DEFAULT_DEVICE, Device
from tenfold.hardware.fixed_point import FixedPoint, Overflow
from tenfold.hardware.regeneration import accumulator_bits, product_bits, regeneration_cost
from tenfold.io import atomic_write_json, atomic_write_text

__all__ = [
    "MODES",
    "CPCheckReport",
    "CPLayerCheck",
    "CPLayerExport",
    "CPProject",
    "check_cp_export",
    "compile_cp_project",
    "count_mismatches",
    "exact_accumulator",
    "export_cp_layer",
    "export_cp_model",
    "find_ap_types",
    "mode_sizes",
    "quantize_exact",
    "reference_weights",
    "run_cp_testbench",
]

MODES = ("cp4", "cp3", "linear")
_MAX_AP_WIDTH = 1024  # AP_INT_MAX_W of the ap_types headers
_EXACT_DOUBLE = 1 << 53
_BINARY = "tb_regenerate"

LayerEntry = tuple[QuantizedCPResult, tuple[int, ...], str]


@dataclass
class CPLayerExport:
    """One layer of a regeneration project: its factors, the C++ it became and what it will cost."""

    name: str
    result: QuantizedCPResult = field(repr=False)
    original_shape: tuple[int, ...]
    mode: str
    weight_precision: FixedPoint
    spec: KernelSpec = field(repr=False)
    cost: dict[str, Any] = field(repr=False)

    @property
    def ident(self) -> str:
        return self.spec.ident

    @property
    def n_weights(self) -> int:
        return self.spec.n_weights


@dataclass
class CPProject:
    """A written regeneration project: per-layer kernels, the testbench, build.sh and manifest.json."""

    output_dir: Path
    layers: list[CPLayerExport]
    ap_types: Path | None
    binary: Path | None = None
    compile_seconds: float = 0.0

    @property
    def sources(self) -> list[Path]:
        """The design files (one kernel per layer) for an HLS project; the testbench is tb_regenerate.cpp."""
        return [self.output_dir / x.spec.source_name for x in self.layers]

    def layer(self, name: str) -> CPLayerExport:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(f"no layer {name!r} in this project; layers: {', '.join(x.name for x in self.layers)}")


@dataclass
class CPLayerCheck:
    """C simulation vs Python model for one layer."""

    name: str
    n_weights: int
    mismatches: int
    max_abs_difference: float


@dataclass
class CPCheckReport:
    """Outcome of the bit-exact check of a regeneration project."""

    layers: list[CPLayerCheck]
    compile_seconds: float
    run_seconds: float

    @property
    def mismatches(self) -> int:
        return sum(layer.mismatches for layer in self.layers)

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0

    def to_dict(self) -> dict[str, Any]:
        return {"bit_exact": self.bit_exact, "mismatches": self.mismatches,
                "compile_seconds": self.compile_seconds, "run_seconds": self.run_seconds,
                "layers": [dataclasses.asdict(layer) for layer in self.layers]}


# ------------------------------------------------------------------------------------------------ shapes


def mode_sizes(original_shape: tuple[int, ...], mode: str) -> tuple[int, ...]:
    """Mode sizes of the tensor a layer weight is decomposed as: "cp4" keeps every mode, "cp3" merges the
    kernel modes (O, I, prod k), "linear" is the matrix (O, prod rest). Row-major order is unchanged by all."""
    shape = tuple(int(s) for s in original_shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ConfigError(f"a layer weight has at least 2 positive dimensions (out, in, ...); got {original_shape}")
    if mode == "cp4":
        return shape
    if mode == "cp3":
        return shape if len(shape) <= 3 else (shape[0], shape[1], math.prod(shape[2:]))
    if mode == "linear":
        return (shape[0], math.prod(shape[1:]))
    raise ConfigError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")


def _ident(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident and not ident[0].isdigit() else f"l_{ident}"


# ------------------------------------------------------------------------------------------------ the Python model


def _relative_shifts(result: QuantizedCPResult) -> tuple[list[int], int]:
    shifts = [int(s) for s in result.component_shifts.tolist()]
    low = min(shifts)
    return [s - low for s in shifts], low


def _check_codes(result: QuantizedCPResult) -> None:
    if not isinstance(result, QuantizedCPResult):
        raise ExportError(f"expected a QuantizedCPResult (from quantized_cp_als), got {type(result).__name__}")
    top = result.precision.max_code
    for n, codes in enumerate(result.codes):
        if codes.ndim != 2 or codes.shape[1] != result.cp.rank:
            raise ExportError(f"factor {n} codes have shape {tuple(codes.shape)}; expected (I_{n}, {result.cp.rank})")
        if codes.numel() and int(codes.abs().max()) > top:
            raise ExportError(
                f"factor {n} holds codes outside ±{top}, the symmetric range of {result.precision.to_cpp()} that "
                "the hardware's exact widths assume; re-run quantized_cp_als to get codes in range"
            )


def exact_accumulator(result: QuantizedCPResult) -> tuple[np.ndarray, int]:
    """The kernel's accumulator for every weight (flat, row-major) as exact integers, and its fractional bits.

    Weight k = acc[k] · 2^-frac before the cast to the weight type. int64 when the accumulator fits, else
    Python ints (dtype object).
    """
    _check_codes(result)
    shifts, low = _relative_shifts(result)
    n_modes = len(result.codes)
    frac = n_modes * result.precision.fractional - low
    width = accumulator_bits(n_modes, result.precision.width, shifts)
    dtype: Any = np.int64 if width <= 63 else object
    codes = [c.numpy().astype(dtype) for c in result.codes]
    acc = np.zeros(math.prod(c.shape[0] for c in codes), dtype=dtype)
    for r, shift in enumerate(shifts):
        term = codes[0][:, r]
        for factor in codes[1:]:
            term = np.multiply.outer(term, factor[:, r]).reshape(-1)
        acc += term << shift if dtype is object else term << np.int64(shift)
    return acc, frac


def quantize_exact(acc: np.ndarray, frac: int, precision: FixedPoint) -> np.ndarray:
    """``precision.quantize(acc · 2^-frac)`` for integers of any size, without a float rounding on the way.

    Values with more than 53 significant bits are first cut to the bits ap_fixed's cast looks at: everything
    down to one bit below the weight's LSB, plus a sticky bit that is set if any lower bit is (two's
    complement floor, so every rounding mode and every overflow mode decides the same way).
    """
    values = np.asarray(acc).reshape(-1)
    if values.dtype == object:
        values = np.array([int(v) for v in values], dtype=object)
    if values.size and max(abs(int(values.max())), abs(int(values.min()))) >= _EXACT_DOUBLE:
        cut = frac - (precision.fractional + 2)
        if cut > 0:
            mask = (1 << cut) - 1
            values = np.array([(int(v) >> cut) | (1 if int(v) & mask else 0) for v in values], dtype=object)
            frac -= cut
        if max(abs(int(values.max())), abs(int(values.min()))) >= _EXACT_DOUBLE:
            raise ExportError(
                f"the regenerated weights need more than 53 significant bits above {precision.to_cpp()}'s LSB, so "
                "the Python reference cannot be exact; use narrower factors or a lower rank"
            )
    doubles = np.ldexp(np.array([int(v) for v in values], dtype=np.float64) if values.dtype == object
                       else values.astype(np.float64), -frac)
    return np.asarray(precision.quantize(doubles), dtype=np.float64)


def reference_weights(result: QuantizedCPResult, weight_precision: FixedPoint | str, *, mode: str = "cp4",
                      original_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """What the generated kernel must produce: the exact CP reconstruction cast to ``weight_precision``,
    in the layer's weight shape."""
    precision = _weight_precision(weight_precision)
    sizes = tuple(int(c.shape[0]) for c in result.codes)
    shape = tuple(original_shape) if original_shape is not None else sizes
    _check_layout(shape, mode, sizes, "the result")
    acc, frac = exact_accumulator(result)
    return quantize_exact(acc, frac, precision).reshape(shape)


# ------------------------------------------------------------------------------------------------ export


def _weight_precision(precision: FixedPoint | str) -> FixedPoint:
    found = FixedPoint.parse(precision) if isinstance(precision, str) else precision
    if not isinstance(found, FixedPoint):
        raise ConfigError(f'weight precision must be a FixedPoint or a string like "fixed<16,6>", got {precision!r}')
    if found.int_type:
        raise ConfigError(f"{found.to_cpp()}: use ap_fixed<{found.width},{found.width}> for integer weights; ap_int's "
                          "conversion rules differ and are not modelled for this kernel")
    if found.width > 53:
        raise ConfigError(f"{found.to_cpp()} is wider than 53 bits; the check reads weights back as exact doubles")
    if found.overflow is Overflow.AP_WRAP_SM:
        raise ConfigError(f"{found.to_cpp()}: AP_WRAP_SM is not supported for regenerated weights; use AP_WRAP or "
                          "a SAT mode")
    return found


def _check_layout(shape: tuple[int, ...], mode: str, sizes: tuple[int, ...], what: str) -> None:
    expected = mode_sizes(shape, mode)
    if expected != sizes:
        raise ExportError(
            f"{what} has mode sizes {list(sizes)}, but a weight of shape {list(shape)} decomposed as {mode!r} has "
            f"{list(expected)}; pass the layer's original_shape and the mode used with cp_reshape"
        )


def _kernel_spec(name: str, result: QuantizedCPResult, shape: tuple[int, ...], mode: str, precision: FixedPoint,
                 lanes: int) -> KernelSpec:
    _check_codes(result)
    sizes = tuple(int(c.shape[0]) for c in result.codes)
    _check_layout(shape, mode, sizes, f"layer {name!r}")
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1 or sizes[-1] % lanes:
        divisors = [d for d in range(1, sizes[-1] + 1) if sizes[-1] % d == 0]
        raise ConfigError(f"layer {name!r}: parallelism {lanes!r} must divide the last mode size {sizes[-1]}; "
                          f"choose one of {divisors}")
    shifts, low = _relative_shifts(result)
    n_modes, bits = len(sizes), result.precision.width
    acc = accumulator_bits(n_modes, bits, shifts)
    if acc > _MAX_AP_WIDTH:
        raise ExportError(f"layer {name!r} needs a {acc}-bit accumulator (term shifts {shifts}); ap_int stops at "
                          f"{_MAX_AP_WIDTH} bits. Use scale='per_factor' or fewer factor bits")
    exponents = tuple(tuple(int(e) for e in s.expand(result.cp.rank).tolist()) for s in result.scales)
    return KernelSpec(
        name=name, ident=_ident(name), original_shape=shape, mode=mode, sizes=sizes, rank=result.cp.rank,
        code_bits=bits, factor_type=result.precision.to_cpp(), factor_frac_bits=result.precision.fractional,
        exponents=exponents,
        codes=tuple(c.numpy().astype(np.int64) for c in result.codes), shifts=tuple(shifts), min_shift=low,
        prefix_bits=product_bits(n_modes - 1, bits), term_bits=product_bits(n_modes, bits), acc_bits=acc,
        acc_frac_bits=n_modes * result.precision.fractional - low, weight_type=precision.to_cpp(), lanes=lanes,
    )


def _per_layer(value: Any, name: str, what: str) -> Any:
    if isinstance(value, Mapping):
        if name not in value:
            raise ConfigError(f"{what} has no entry for layer {name!r}; give one per layer or a single value")
        return value[name]
    return value


def export_cp_model(layers: Mapping[str, LayerEntry], out_dir: str | Path, *,
                    weight_precision: FixedPoint | str | Mapping[str, FixedPoint | str] = "fixed<16,6>",
                    parallelism: int | Mapping[str, int] = 1, device: str | Device = DEFAULT_DEVICE,
                    ap_types: str | Path | None = None) -> CPProject:
    """Write a regeneration project for several layers: ``layers[name] = (result, original_shape, mode)``.

    ``weight_precision`` and ``parallelism`` (weights per clock, dividing the last mode size) are one value for
    all layers or a mapping by layer name. Files are written atomically into ``out_dir``; the factors are not
    changed. ``ap_types`` (default: hls4ml's headers when installed) only sets build.sh's default include path.
    """
    if not layers:
        raise ConfigError("export_cp_model needs at least one layer")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give a folder for the regeneration project")
    exports: list[CPLayerExport] = []
    for name, entry in layers.items():
        if not (isinstance(entry, tuple | list) and len(entry) == 3):
            raise ConfigError(f"layers[{name!r}] must be (QuantizedCPResult, original_shape, mode)")
        result, shape, mode = entry
        precision = _weight_precision(_per_layer(weight_precision, name, "weight_precision"))
        spec = _kernel_spec(name, result, tuple(int(s) for s in shape), mode, precision,
                            _per_layer(parallelism, name, "parallelism"))
        cost = regeneration_cost(spec.sizes, spec.rank, spec.code_bits, precision, spec.lanes, device,
                                 relative_shifts=spec.shifts).to_dict()
        exports.append(CPLayerExport(name, result, spec.original_shape, mode, precision, spec, cost))
    idents = [x.ident for x in exports]
    clash = sorted({i for i in idents if idents.count(i) > 1})
    if clash:
        raise ExportError(f"layer names map to the same C identifier(s) {clash}; rename the layers")
    headers = _ap_types_or_none(ap_types)
    specs = [x.spec for x in exports]
    for spec in specs:
        atomic_write_text(out / spec.header_name, kernel_header(spec, __version__))
        atomic_write_text(out / spec.source_name, kernel_source(spec, __version__))
    atomic_write_text(out / "tb_regenerate.cpp", testbench_source(specs, __version__))
    atomic_write_text(out / UNITY_NAME, unity_source(specs, __version__))
    script = atomic_write_text(out / "build.sh", build_script(specs, str(headers or "/path/to/ap_types"), __version__))
    script.chmod(0o755)
    atomic_write_json(out / "manifest.json", _manifest(exports))
    return CPProject(out, exports, headers)


def export_cp_layer(result: QuantizedCPResult, name: str, out_dir: str | Path, *,
                    weight_precision: FixedPoint | str = "fixed<16,6>", mode: str = "cp4",
                    original_shape: tuple[int, ...] | None = None, parallelism: int = 1,
                    device: str | Device = DEFAULT_DEVICE, ap_types: str | Path | None = None) -> CPProject:
    """Write the regeneration project of one layer; ``original_shape`` defaults to the decomposed shape."""
    shape = tuple(original_shape) if original_shape is not None else tuple(int(c.shape[0]) for c in result.codes)
    return export_cp_model({name: (result, shape, mode)}, out_dir, weight_precision=weight_precision,
                           parallelism=parallelism, device=device, ap_types=ap_types)


def _manifest(exports: list[CPLayerExport]) -> dict[str, Any]:
    layers = []
    for x in exports:
        spec = x.spec
        layers.append({
            "name": x.name, "kernel": spec.kernel, "header": spec.header_name, "source": spec.source_name,
            "original_shape": list(x.original_shape), "mode": x.mode, "mode_sizes": list(spec.sizes),
            "rank": spec.rank, "factor_type": spec.factor_type, "scale": x.result.scale,
            "exponents": [list(e) for e in spec.exponents], "term_shifts": list(spec.shifts),
            "min_shift": spec.min_shift, "accumulator_bits": spec.acc_bits,
            "accumulator_fractional_bits": spec.acc_frac_bits, "weight_type": spec.weight_type,
            "parallelism": spec.lanes, "relative_error": float(x.result.relative_error), "cost": x.cost,
        })
    return {"tenfold_version": __version__, "testbench": "tb_regenerate.cpp", "build": "build.sh", "layers": layers}


# ------------------------------------------------------------------------------------------------ compile and check


def find_ap_types(ap_types: str | Path | None = None) -> Path:
    """The folder holding ``ap_fixed.h``: the given one, $TENFOLD_AP_TYPES, or hls4ml's bundled headers."""
    candidates = [Path(ap_types)] if ap_types is not None else []
    if ap_types is None and os.environ.get("TENFOLD_AP_TYPES"):
        candidates.append(Path(os.environ["TENFOLD_AP_TYPES"]))
    if ap_types is None:
        spec = importlib.util.find_spec("hls4ml")
        for root in (spec.submodule_search_locations or []) if spec is not None else []:
            candidates.append(Path(root) / "templates" / "vivado" / "ap_types")
    for candidate in candidates:
        if (candidate / "ap_fixed.h").is_file():
            return candidate
    raise ExportError(
        "the ap_types C++ headers (ap_fixed.h) were not found"
        + (f" in {ap_types}" if ap_types is not None else "")
        + "; pip install 'hls4ml>=1.3' (it ships them) or pass ap_types=<folder with ap_fixed.h>"
    )


def _ap_types_or_none(ap_types: str | Path | None) -> Path | None:
    try:
        return find_ap_types(ap_types)
    except ExportError:
        if ap_types is not None:
            raise
        return None


def _compiler(cxx: str | None) -> str:
    name = cxx or os.environ.get("CXX") or "g++"
    found = shutil.which(name)
    if found is None:
        raise ExportError(f"C++ compiler {name!r} was not found; install g++ (Debian/Ubuntu: apt-get install g++) "
                          "or point CXX at a C++14 compiler")
    return found


def compile_cp_project(project: CPProject, *, cxx: str | None = None, ap_types: str | Path | None = None,
                       timeout: float = 900.0) -> Path:
    """Compile the testbench and kernels with g++ into ``<project>/tb_regenerate``; returns the binary."""
    compiler = _compiler(cxx)
    headers = find_ap_types(ap_types if ap_types is not None else project.ap_types)
    out = project.output_dir
    fd, tmp_name = tempfile.mkstemp(prefix=f".{_BINARY}.", dir=out)
    os.close(fd)
    command = [compiler, *COMPILE_FLAGS, f"-I{headers}", f"-I{out}", str(out / UNITY_NAME), "-o", tmp_name]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise ExportError(f"compiling the regeneration testbench in {out} failed "
                              f"({' '.join(command[:3])} ...):\n{done.stderr[-3000:]}")
        os.replace(tmp_name, out / _BINARY)
    except subprocess.TimeoutExpired:
        raise ExportError(f"compiling the regeneration testbench in {out} took longer than {timeout:.0f}s") from None
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    project.compile_seconds = time.perf_counter() - start
    project.binary = out / _BINARY
    return project.binary


def run_cp_testbench(project: CPProject, *, cxx: str | None = None, ap_types: str | Path | None = None,
                     timeout: float = 600.0) -> dict[str, np.ndarray]:
    """Run the compiled testbench (compiling it first if needed); the regenerated weights by layer name."""
    if project.binary is None or not project.binary.is_file():
        compile_cp_project(project, cxx=cxx, ap_types=ap_types)
    assert project.binary is not None
    with tempfile.TemporaryDirectory(prefix="csim-", dir=project.output_dir) as scratch:
        try:
            done = subprocess.run([str(project.binary), scratch], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ExportError(f"the regeneration testbench ran longer than {timeout:.0f}s") from None
        if done.returncode != 0:
            raise ExportError(f"the regeneration testbench failed (exit {done.returncode}): {done.stderr[-2000:]}")
        out = {}
        for layer in project.layers:
            lines = (Path(scratch) / f"{layer.ident}.txt").read_text().split()
            if len(lines) != layer.n_weights:
                raise ExportError(f"testbench wrote {len(lines)} weights for {layer.name!r}, "
                                  f"expected {layer.n_weights}")
            out[layer.name] = np.array([float.fromhex(v) for v in lines]).reshape(layer.original_shape)
    return out


def count_mismatches(simulated: np.ndarray, expected: np.ndarray) -> tuple[int, float]:
    """Differing values (exact comparison) and the largest absolute difference."""
    if simulated.shape != expected.shape:
        raise ExportError(f"simulated weights have shape {simulated.shape}, expected {expected.shape}")
    diff = np.abs(simulated - expected)
    return int((simulated != expected).sum()), float(diff.max()) if diff.size else 0.0


def check_cp_export(project: CPProject, *, cxx: str | None = None, ap_types: str | Path | None = None
                    ) -> CPCheckReport:
    """Compile and run the C testbench and compare every weight with :func:`reference_weights` (0 = bit-exact)."""
    if project.binary is None or not project.binary.is_file():
        compile_cp_project(project, cxx=cxx, ap_types=ap_types)
    start = time.perf_counter()
    simulated = run_cp_testbench(project)
    run_seconds = time.perf_counter() - start
    checks = []
    for layer in project.layers:
        expected = reference_weights(layer.result, layer.weight_precision, mode=layer.mode,
                                     original_shape=layer.original_shape)
        mismatches, worst = count_mismatches(simulated[layer.name], expected)
        checks.append(CPLayerCheck(layer.name, layer.n_weights, mismatches, worst))
    return CPCheckReport(checks, project.compile_seconds, run_seconds)
