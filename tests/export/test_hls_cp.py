"""HLS C++ weight regeneration from quantized CP factors: g++ + ap_types C simulation vs the Python model.

One project with every kind of layer is exported and compiled once per module (one translation unit, a few
seconds); the tests then read its files and its regenerated weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from tenfold.decompose.cp import cp_reshape
from tenfold.decompose.quantized import quantized_cp_als
from tenfold.errors import ConfigError
from tenfold.export.hls4ml_project import ExportError
from tenfold.export.hls_cp import (
    check_cp_export,
    compile_cp_project,
    count_mismatches,
    exact_accumulator,
    export_cp_layer,
    export_cp_model,
    find_ap_types,
    mode_sizes,
    quantize_exact,
    reference_weights,
    run_cp_testbench,
)
from tenfold.hardware.fixed_point import FixedPoint
from tenfold.hardware.regeneration import accumulator_bits

WEIGHT = "fixed<16,6,RND_CONV,SAT>"


def _needs_toolchain() -> None:
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("g++ is needed to compile the regeneration testbench")
    try:
        find_ap_types()
    except ExportError:
        pytest.skip("hls4ml's ap_types headers are needed to compile the regeneration testbench")


def _decompose(weight: torch.Tensor, mode: str, rank: int, precision: str = "fixed<8,1>", scale: str = "per_factor"):
    tensor = weight.reshape(weight.shape[0], -1) if mode == "linear" else cp_reshape(weight, mode)
    return quantized_cp_als(tensor, rank, precision, scale=scale, n_iter_max=30)


def _spread_matrix() -> torch.Tensor:
    """Rank-3 matrix whose terms differ in size by 2^6: per-component exponents really differ."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(12, 3, generator=g), torch.randn(10, 3, generator=g)
    return (a * torch.tensor([1.0, 2.0**-6, 2.0**-12])) @ b.T


def _layers() -> dict:
    g = torch.Generator().manual_seed(0)
    conv = torch.randn(16, 8, 3, 3, generator=g)
    conv1d = torch.randn(6, 4, 5, generator=g)
    small = torch.randn(4, 3, 2, 2, generator=g)
    big = torch.randn(64, 64, 3, 3, generator=g)
    return {
        "conv.cp4": (_decompose(conv, "cp4", 5), (16, 8, 3, 3), "cp4"),
        "conv_cp3": (_decompose(conv, "cp3", 5, scale="per_component_pow2"), (16, 8, 3, 3), "cp3"),
        "fc": (_decompose(torch.randn(10, 12, generator=g), "linear", 4), (10, 12), "linear"),
        "spread": (quantized_cp_als(_spread_matrix(), 3, "fixed<8,1>", scale="per_component_pow2"), (12, 10), "linear"),
        "conv_matrix": (_decompose(conv, "linear", 4, scale="per_component_pow2"), (16, 8, 3, 3), "linear"),
        "conv1d": (_decompose(conv1d, "cp3", 3, "fixed<6,2>"), (6, 4, 5), "cp3"),
        "wide": (_decompose(small, "cp4", 2, "fixed<18,2>", "per_component_pow2"), (4, 3, 2, 2), "cp4"),
        "big": (_decompose(big, "cp4", 16, scale="per_component_pow2"), (64, 64, 3, 3), "cp4"),
    }


PRECISIONS = {"conv.cp4": WEIGHT, "conv_cp3": "fixed<16,6>", "fc": "fixed<10,2,RND,SAT_SYM>", "spread": WEIGHT,
              "conv_matrix": "fixed<12,3,RND_ZERO,WRAP>", "conv1d": "fixed<8,2,TRN_ZERO,SAT>",
              "wide": "fixed<24,4,RND_INF,SAT>", "big": WEIGHT}
LANES = {"conv.cp4": 3, "conv_cp3": 9, "fc": 4, "spread": 2, "conv_matrix": 1, "conv1d": 5, "wide": 2, "big": 3}


@pytest.fixture(scope="module")
def layers():
    return _layers()


@pytest.fixture(scope="module")
def project(layers, tmp_path_factory):
    _needs_toolchain()
    out = tmp_path_factory.mktemp("regen") / "prj"
    return export_cp_model(layers, out, weight_precision=PRECISIONS, parallelism=LANES, device="xczu9eg")


@pytest.fixture(scope="module")
def simulated(project):
    compile_cp_project(project)
    return run_cp_testbench(project)


def test_every_layer_is_bit_exact(project, simulated):
    report = check_cp_export(project)
    assert report.bit_exact and report.mismatches == 0
    assert {c.name: c.n_weights for c in report.layers} == {
        "conv.cp4": 1152, "conv_cp3": 1152, "fc": 120, "spread": 120, "conv_matrix": 1152, "conv1d": 120,
        "wide": 48, "big": 36864}
    assert all(c.mismatches == 0 and c.max_abs_difference == 0.0 for c in report.layers)
    assert report.compile_seconds > 0 and report.to_dict()["bit_exact"] is True


def test_the_check_is_not_vacuous(project, simulated, layers):
    for name in ("conv.cp4", "big"):
        result, shape, mode = layers[name]
        wrong = reference_weights(result, "fixed<16,7,RND_CONV,SAT>", mode=mode, original_shape=shape)
        mismatches, worst = count_mismatches(simulated[name], wrong)
        assert mismatches > simulated[name].size // 4 and worst > 0
    # the weights are not trivial: they track the float reconstruction to within the weight LSB
    result, shape, mode = layers["conv.cp4"]
    lsb = FixedPoint.parse(WEIGHT).lsb
    float_weights = result.cp.to_tensor().double().numpy().reshape(shape)
    assert np.abs(simulated["conv.cp4"] - float_weights).max() <= lsb / 2 + 1e-12
    assert np.count_nonzero(simulated["conv.cp4"]) > 1000


def test_regenerated_weights_match_the_dequantized_factors(simulated, layers):
    for name, (result, shape, _) in layers.items():
        precision = FixedPoint.parse(PRECISIONS[name])
        exact = precision.quantize(result.cp.to_tensor().double().numpy().reshape(shape))
        # the float reconstruction rounds differently only at the rare exact ties / last-bit cases
        assert np.mean(simulated[name] == exact) > 0.99, name


def test_per_component_shifts_are_real(project):
    manifest = json.loads((project.output_dir / "manifest.json").read_text())
    by_name = {layer["name"]: layer for layer in manifest["layers"]}
    shifts = by_name["spread"]["term_shifts"]
    assert len(set(shifts)) > 1 and min(shifts) == 0
    source = (project.output_dir / "cp_spread.cpp").read_text()
    assert f"static const int SHIFT[RANK] = {{{', '.join(map(str, shifts))}}};" in source
    assert by_name["spread"]["accumulator_bits"] == accumulator_bits(2, 8, shifts)
    assert set(by_name["conv.cp4"]["term_shifts"]) == {0}  # one scale per factor: no shifts


def test_generated_code_is_a_pipelined_kernel(project):
    out = project.output_dir
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # atomic writes left nothing
    source = (out / "cp_conv_cp4.cpp").read_text()
    header = (out / "cp_conv_cp4.h").read_text()
    assert "void regenerate_conv_cp4(cp_conv_cp4::weight_t w[cp_conv_cp4::N_WEIGHTS]);" in header
    assert f"typedef {FixedPoint.parse(WEIGHT).to_cpp()} weight_t;" in header
    assert "typedef ap_int<8> code_t;" in header and "typedef ap_int<29> term_t;" in header
    for pragma in ("PIPELINE II=1", "ARRAY_PARTITION variable=F3 cyclic factor=3 dim=1",
                   "ARRAY_PARTITION variable=w cyclic factor=3 dim=1", "ARRAY_PARTITION variable=F0 complete dim=2",
                   "UNROLL"):
        assert f"#pragma HLS {pragma}" in source
    assert "cyclic" not in (out / "cp_conv_matrix.cpp").read_text()  # one lane: no banking
    assert (out / "build.sh").stat().st_mode & 0o111
    assert "csim_all.cpp" in (out / "build.sh").read_text()
    layer = json.loads((out / "manifest.json").read_text())["layers"][-1]
    assert layer["name"] == "big" and layer["cost"]["n_weights"] == 36864 and layer["cost"]["parallelism"] == 3


def test_accumulator_values_fit_their_declared_width(project):
    for layer in project.layers:
        acc, frac = exact_accumulator(layer.result)
        largest = max(abs(int(acc.max())), abs(int(acc.min())))
        assert largest < 2 ** (layer.spec.acc_bits - 1), layer.name
        assert frac == layer.spec.acc_frac_bits
    assert exact_accumulator(project.layer("wide").result)[0].dtype == object  # wider than int64


@pytest.mark.parametrize("precision", ["fixed<16,6>", "fixed<12,2,RND_CONV,SAT>", "fixed<10,4,RND,WRAP>",
                                       "fixed<9,1,RND_MIN_INF,SAT_ZERO>", "fixed<8,3,TRN_ZERO,WRAP,2>",
                                       "ufixed<8,2,RND_INF,SAT>"])
def test_exact_quantization_of_huge_accumulators(precision):
    """Cutting a >53-bit value to guard + sticky bits gives the same cast as the exact double path."""
    fp = FixedPoint.parse(precision)
    rng = np.random.default_rng(0)
    values = rng.integers(-(2**40), 2**40, 5000)
    values[:64] = np.arange(-32, 32) << 30  # exact ties and values on the grid
    values[64:128] = (np.arange(-32, 32) << 30) + 1  # just above a tie: only the sticky bit says so
    frac = 40 - fp.integer
    direct = quantize_exact(values, frac, fp)
    huge = np.array([int(v) << 40 for v in values], dtype=object)
    assert np.array_equal(quantize_exact(huge, frac + 40, fp), direct)
    assert np.array_equal(direct, fp.quantize(np.ldexp(values.astype(np.float64), -frac)))


def test_missing_compiler_is_an_export_error(layers, tmp_path, monkeypatch):
    result, shape, mode = layers["fc"]
    project = export_cp_layer(result, "fc", tmp_path / "p", mode=mode, original_shape=shape)
    monkeypatch.setenv("CXX", "/nonexistent/bogus-g++")
    with pytest.raises(ExportError, match="bogus-g\\+\\+' was not found; install g\\+\\+"):
        compile_cp_project(project)
    with pytest.raises(ExportError, match="bogus-compiler-xyz"):
        check_cp_export(project, cxx="bogus-compiler-xyz")
    assert project.binary is None and not (tmp_path / "p" / "tb_regenerate").exists()


def test_missing_headers_is_an_export_error(tmp_path):
    with pytest.raises(ExportError, match="hls4ml"):
        find_ap_types(tmp_path)


def test_bad_layouts_and_settings_are_refused(layers, tmp_path):
    result, shape, _ = layers["conv.cp4"]
    with pytest.raises(ExportError, match="original_shape"):
        export_cp_layer(result, "c", tmp_path / "a", mode="cp3", original_shape=shape)
    with pytest.raises(ConfigError, match=r"parallelism 2 must divide the last mode size 3; choose one of \[1, 3\]"):
        export_cp_layer(result, "c", tmp_path / "b", original_shape=shape, parallelism=2)
    with pytest.raises(ExportError, match="same C identifier"):
        export_cp_model({"a.b": layers["fc"], "a_b": layers["fc"]}, tmp_path / "c")
    with pytest.raises(ConfigError, match="ap_fixed<8,8>"):
        export_cp_layer(result, "c", tmp_path / "d", weight_precision="int<8>", original_shape=shape)
    with pytest.raises(ConfigError, match="mode must be one of"):
        mode_sizes((4, 4), "cp5")
    assert mode_sizes((16, 8, 3, 3), "cp3") == (16, 8, 9) and mode_sizes((16, 8, 3, 3), "linear") == (16, 72)
    assert not (tmp_path / "a").exists()  # nothing written for a refused layer


def test_export_leaves_the_factors_alone(layers, tmp_path):
    result, shape, mode = layers["fc"]
    before = [c.clone() for c in result.codes], [f.clone() for f in result.cp.factors]
    export_cp_layer(result, "fc", tmp_path / "p", weight_precision="fixed<16,6>", mode=mode, original_shape=shape)
    assert all(torch.equal(a, b) for a, b in zip(before[0], result.codes, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before[1], result.cp.factors, strict=True))


@pytest.mark.slow
def test_build_script_builds_and_writes_the_same_weights(project, simulated):
    done = subprocess.run(["sh", str(project.output_dir / "build.sh")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = (project.output_dir / "csim" / "fc.txt").read_text().split()
    assert np.array_equal(np.array([float.fromhex(v) for v in lines]).reshape(10, 12), simulated["fc"])
