"""Arithmetic facts the cost model needs: constant multipliers (CSD digits), DSP tiling and BRAM18 shapes."""

from __future__ import annotations

import numpy as np

# BRAM18 aspect ratios in simple-dual-port/ROM use: (max depth, width).
BRAM18_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


def csd_digit_counts(codes: np.ndarray) -> np.ndarray:
    """Non-zero digits of each integer in canonical signed-digit form, vectorised.

    A product by a constant with d non-zero CSD digits needs d-1 adders of shifted inputs: d=0 is free,
    d=1 is wiring, d=2 one adder — which is why synthesis keeps such products out of DSPs.
    The non-adjacent form of k has its non-zero digits exactly at the set bits of ((3k) XOR k) >> 1.
    """
    k = np.abs(np.asarray(codes, dtype=np.int64)).astype(np.uint64)
    mixed = (k * np.uint64(3)) ^ k
    return _popcount(mixed >> np.uint64(1))


def _popcount(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.uint64)
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((v * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def dsps_per_product(width_a: int, width_b: int, dsp_type: str = "DSP48E2") -> int:
    """DSP slices for one signed width_a × width_b product (tiling the wider operand if needed)."""
    port_a, port_b = (25, 18) if dsp_type == "DSP48E1" else (27, 18)
    if dsp_type == "DSP58":
        port_a, port_b = 27, 24
    wide, narrow = max(width_a, width_b), min(width_a, width_b)
    if wide <= port_a and narrow <= port_b:
        return 1

    def tiles(on_a: int, on_b: int) -> int:  # limbs of (port - 1) unsigned bits plus the signed top limb
        return -(-(on_a - 1) // (port_a - 1)) * -(-(on_b - 1) // (port_b - 1))

    return int(min(tiles(wide, narrow), tiles(narrow, wide)))


def bram18_for_rom(depth: np.ndarray | int, width: np.ndarray | int) -> np.ndarray:
    """BRAM18 primitives for a memory of `depth` words of `width` bits, choosing the best aspect ratio.

    Works for any width (not only divisors of 18/36): e.g. 512 × 48 bits needs 2 BRAM18 (36 + 12 bits),
    1024 × 48 needs 3 (18 + 18 + 12).
    """
    depth = np.asarray(depth, dtype=np.int64)
    width = np.asarray(width, dtype=np.int64)
    best = None
    for max_depth, bits in BRAM18_SHAPES:
        count = -(-depth // max_depth) * -(-width // bits)
        best = count if best is None else np.minimum(best, count)
    return np.where((depth <= 0) | (width <= 0), 0, best)
