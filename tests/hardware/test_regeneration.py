"""Pricing on-chip weight regeneration from CP factors: hand-computed cases and the exactness of the widths."""

from __future__ import annotations

import itertools
import math

import pytest

from tenfold.errors import ConfigError
from tenfold.hardware.cost import CostParams
from tenfold.hardware.regeneration import accumulator_bits, pipeline_depth, product_bits, regeneration_cost


def test_small_linear_on_luts_by_hand():
    # (4, 6) matrix, rank 2, 8-bit codes: every product is 8x8 (<= 9 bits: LUTs), every ROM is tiny (LUTRAM)
    cost = regeneration_cost((4, 6), 2, 8, "fixed<16,6>", 1, "xczu9eg")
    assert cost.multipliers == 2 and cost.lut_multipliers == 2 and cost.dsp == 0
    assert cost.products[-1]["widths"] == (8, 8)
    assert cost.bram18 == 0 and cost.lutram_lut == 16 + 16  # ceil(depth/64) * (2 * 8 bits), two ROMs
    assert cost.accumulator_bits == 16  # 127^2 * 2 = 32258 needs 15 magnitude bits + sign
    # 2 multipliers * 0.55 * 8 * 8 + adder 1.55 * 1 * 16 + LUTRAM 32 + output cast 0.263 * 16
    assert cost.lut == pytest.approx(2 * 0.55 * 64 + 1.55 * 16 + 32 + 0.263 * 16)
    assert cost.pipeline_depth == 4 and cost.cycles == 24 - 1 + 4
    assert cost.latency_ns == pytest.approx(27 * 5.0)
    assert cost.factor_storage_bits == (4 + 6) * 2 * 8 and cost.factor_bytes == 20
    assert cost.weight_bytes == 24 * 2 and cost.bytes_saved == 28
    assert cost.compression == pytest.approx(24 * 16 / 160)


def test_real_size_conv_with_dsps_and_brams_by_hand():
    cost = regeneration_cost((64, 64, 3, 3), 16, 12, "fixed<16,6>", 1, "xczu9eg")
    # prefix chain 12x12 and 23x12 (one DSP each), last mode 34x12 (two DSP48E2: 34 bits need two 26-bit limbs)
    assert [g["widths"] for g in cost.products] == [(12, 12), (23, 12), (34, 12)]
    assert cost.dsp == 16 * 1 + 16 * 1 + 16 * 2 and cost.dsp_multipliers == 48
    # factors 0 and 1: 64 rows of 16 * 12 = 192 bits -> 6 BRAM18 in 512x36 shape; factors 2, 3: 576 bits -> LUTRAM
    assert cost.bram18 == 12 and cost.lutram_lut == 2 * 192
    assert cost.accumulator_bits == (2047**4 * 16).bit_length() + 1 == 49
    assert cost.pipeline_depth == 1 + 2 + 1 + math.ceil(4 / 3) + 1
    assert cost.cycles == 36864 - 1 + 7
    assert cost.weight_bytes == 73728 and cost.factor_bytes == (64 + 64 + 3 + 3) * 16 * 12 // 8
    assert cost.bytes_saved == 73728 - 3216
    # all terms on DSPs with equal shifts: the DSP cascade absorbs the adder tree
    assert cost.lut == pytest.approx(2 * 192 + 0.263 * 16)


def test_parallel_lanes_share_the_prefix_and_bank_the_last_rom():
    one = regeneration_cost((4, 6), 2, 8, "fixed<16,6>", 1, "xczu9eg")
    three = regeneration_cost((4, 6), 2, 8, "fixed<16,6>", 3, "xczu9eg")
    assert three.multipliers == 3 * 2 and three.cycles == 24 // 3 - 1 + 4
    assert three.roms[-1] == {"what": "factor 1", "banks": 3, "depth": 2, "width": 16, "bram18": 0, "lutram_lut": 48}
    assert three.factor_bytes == one.factor_bytes  # banking splits the ROM, it does not copy it
    with pytest.raises(ConfigError, match=r"divide the last mode size 6.*\[1, 2, 3, 6\]"):
        regeneration_cost((4, 6), 2, 8, "fixed<16,6>", 4)


def test_shifts_widen_the_accumulator_and_block_the_dsp_cascade():
    flat = regeneration_cost((4, 6), 2, 12, "fixed<16,6>", 1, "xczu9eg")
    shifted = regeneration_cost((4, 6), 2, 12, "fixed<16,6>", 1, "xczu9eg", relative_shifts=[0, 3])
    assert shifted.accumulator_bits == (2047**2 * (1 + 8)).bit_length() + 1
    assert shifted.accumulator_bits == flat.accumulator_bits + 3
    assert flat.lut == pytest.approx(0.263 * 16 + flat.lutram_lut)  # adders absorbed by the DSPs
    assert shifted.lut == pytest.approx(flat.lut + 1.55 * shifted.accumulator_bits)


def test_the_lut_threshold_comes_from_cost_params():
    narrow = CostParams(lut_mult_max_bits=4)
    cost = regeneration_cost((4, 6), 2, 8, "fixed<16,6>", 1, "xczu9eg", params=narrow)
    assert cost.dsp == 2 and cost.lut_multipliers == 0
    assert pipeline_depth(4, 16, CostParams(adders_per_stage=1)) == 1 + 2 + 1 + 4 + 1


@pytest.mark.parametrize(("n", "bits"), [(1, 3), (2, 3), (3, 3), (2, 4), (4, 2)])
def test_product_width_is_exact_and_tight(n, bits):
    codes = range(-(2 ** (bits - 1)) + 1, 2 ** (bits - 1))  # symmetric codes, as quantized CP-ALS makes them
    largest = max(abs(math.prod(c)) for c in itertools.product(codes, repeat=n))
    width = product_bits(n, bits)
    assert largest <= 2 ** (width - 1) - 1  # fits
    assert largest > 2 ** (width - 2) - 1  # one bit fewer would not


def test_accumulator_width_covers_the_worst_sum():
    shifts = [0, 2, 5]
    width = accumulator_bits(2, 4, shifts)
    worst = sum(7 * 7 << d for d in shifts)
    assert worst <= 2 ** (width - 1) - 1 < 2 * worst


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (8,)}, "at least 2"),
        ({"rank": 0}, "rank"),
        ({"factor_bits": 1}, "factor_bits"),
        ({"weight_precision": "fixed<16"}, "precision"),
        ({"relative_shifts": [0]}, "one entry per rank-one term"),
        ({"device": "nosuchfpga"}, "unknown device"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    args = {"shape": (4, 6), "rank": 2, "factor_bits": 8, "weight_precision": "fixed<16,6>"} | kwargs
    with pytest.raises(ConfigError, match=message):
        regeneration_cost(**args)


def test_to_dict_is_plain_data():
    data = regeneration_cost((4, 6), 2, 8, "fixed<16,6>").to_dict()
    assert data["shape"] == (4, 6) and data["device"] == "xcvu13p" and data["products"][0]["count"] == 2
