"""Accounting of decomposed layers, checked against real decompositions and instrumented regenerations."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tenfold.decompose import CPTensor, cp_reshape, quantized_cp_als, quantized_tucker
from tenfold.decompose.accounting import (
    account_layer,
    account_model,
    decomposed_shape,
    khatri_rao_multiplications,
    regenerated_layer_resources,
)
from tenfold.errors import ConfigError, ModelError
from tenfold.hardware import estimate, get_device, make_config


def random_cp(sizes, rank, seed=0) -> CPTensor:
    gen = torch.Generator().manual_seed(seed)
    factors = [torch.randn(s, rank, generator=gen, dtype=torch.float64) for s in sizes]
    return CPTensor(torch.ones(rank, dtype=torch.float64), factors)


def regenerate_counting(cp: CPTensor, order: list[int]) -> tuple[torch.Tensor, int]:
    """Build the tensor by growing Khatri-Rao products in ``order``, counting every scalar product."""
    rank = cp.rank
    partial = cp.factors[order[0]]
    multiplications = 0
    for mode in order[1:]:
        partial = (partial[:, None, :] * cp.factors[mode][None, :, :]).reshape(-1, rank)
        multiplications += partial.numel()
    tensor = partial.sum(dim=1).reshape([cp.shape[m] for m in order])
    return tensor.permute(*np.argsort(order).tolist()), multiplications


def naive_counting(cp: CPTensor) -> tuple[torch.Tensor, int]:
    """Every element as Σ_r ∏_n a_n[i_n, r], counting products element by element."""
    out = torch.zeros(cp.shape, dtype=torch.float64)
    multiplications = 0
    for index in itertools.product(*(range(s) for s in cp.shape)):
        for r in range(cp.rank):
            term = cp.factors[0][index[0], r]
            for mode in range(1, cp.ndim):
                term = term * cp.factors[mode][index[mode], r]
                multiplications += 1
            out[index] += term
    return out, multiplications


# ---------------------------------------------------------------------------------------------- CP counts


def test_cp4_multiplication_counts_match_instrumented_regeneration():
    shape, rank = (4, 3, 2, 3), 3
    account = account_layer(shape, "cp4", rank)
    cp = random_cp(shape, rank)
    stream, stream_count = regenerate_counting(cp, [0, 2, 3, 1])  # hls4ml order: out, kh, kw, in
    cheap, cheap_count = regenerate_counting(cp, sorted(range(4), key=lambda m: shape[m]))
    naive, naive_count = naive_counting(cp)
    for tensor in (stream, cheap, naive):
        torch.testing.assert_close(tensor, cp.to_tensor())
    assert account.multiplications_stream == stream_count
    assert account.multiplications_reuse == cheap_count
    assert account.multiplications_naive == naive_count == 3 * rank * math.prod(shape)
    assert account.multiplications_reuse < account.multiplications_naive


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=5), rank=st.integers(1, 30))
def test_reuse_order_is_never_worse_than_stream_or_naive(sizes, rank):
    reuse = khatri_rao_multiplications(sizes, rank, sorted(range(len(sizes)), key=lambda m: sizes[m]))
    for order in itertools.islice(itertools.permutations(range(len(sizes))), 30):
        assert reuse <= khatri_rao_multiplications(sizes, rank, order)
    assert reuse <= (len(sizes) - 1) * rank * math.prod(sizes)
    assert reuse >= rank * math.prod(sizes)  # the last step touches every element once per term


def test_cp_storage_matches_quantized_decomposition():
    weight = torch.randn(12, 6, 3, 3, generator=torch.Generator().manual_seed(1))
    for method in ("cp4", "cp3"):
        for scale in ("per_factor", "per_component_pow2"):
            result = quantized_cp_als(cp_reshape(weight, method), 4, "fixed<6,1>", scale=scale, n_iter_max=5)
            account = account_layer(weight.shape, method, 4, factor_bits=6, scale=scale, scale_bits=5)
            assert account.params_after == sum(codes.numel() for codes in result.codes)
            assert [tuple(c.shape) for c in result.codes] == list(account.stored_shapes)
            # the hardware applies one combined shift per rank-one term, or one per layer
            shifts = result.component_shifts.numel() if scale == "per_component_pow2" else 1
            assert account.scale_values == shifts
            assert account.bits_after == account.params_after * 6 + shifts * 5
    assert decomposed_shape((12, 6, 3, 3), "cp3") == (12, 6, 9)


def test_no_scale_storage_without_scales_and_keep_is_identity():
    none = account_layer((8, 8), "cp4", 2, scale="none")
    assert none.scale_values == 0 and none.bits_after == none.params_after * none.factor_bits
    keep = account_layer((8, 4, 3, 3), "cp4", None, weight_bits=12)
    assert keep.method == "keep" and not keep.decomposed
    assert keep.params_after == keep.params_before == 288
    assert keep.bits_after == keep.bits_before == 288 * 12
    assert keep.compression == 1.0 and keep.dram_bytes_saved == 0
    assert keep.multiplications_stream == keep.multiplications_naive == 0


def test_linear_cp_is_a_matrix_factorisation_for_every_cp_method():
    accounts = [account_layer((10, 30), method, 3) for method in ("cp3", "cp4")]
    for account in accounts:
        assert account.params_after == 3 * (10 + 30)
        assert account.multiplications_naive == account.multiplications_reuse == account.multiplications_stream
        assert account.multiplications_stream == 3 * 300
    assert accounts[0].to_dict() | {"method": "x"} == accounts[1].to_dict() | {"method": "x"}


def test_dram_traffic_counts_packed_bytes():
    account = account_layer((64, 32, 3, 3), "cp4", 8, factor_bits=6, weight_bits=16, scale_bits=8)
    assert account.dram_bytes_before == 64 * 32 * 9 * 2
    assert account.dram_bytes_after == math.ceil(account.bits_after / 8)
    assert account.dram_bytes_saved == account.dram_bytes_before - account.dram_bytes_after > 0
    assert account.bit_compression > account.compression  # 6-bit factors replace 16-bit weights


# ---------------------------------------------------------------------------------------------- Tucker-2


def test_tucker2_storage_and_stream_regeneration():
    weight = torch.randn(10, 7, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    result = quantized_tucker(weight, [4, 3, None, None], "fixed<8,1>", n_iter_max=3)
    account = account_layer(weight.shape, "tucker2", (4, 3))
    parts = [c for c in result.codes if c is not None]
    assert account.params_after == sum(c.numel() for c in parts)
    u_out, u_in, core = result.tucker.factors[0], result.tucker.factors[1], result.tucker.core
    # stream order: per output channel first contract U_out with the core, then with U_in
    partial = torch.einsum("oa,abk->obk", u_out, core.reshape(4, 3, 9))
    rebuilt = torch.einsum("obk,ib->oki", partial, u_in).permute(0, 2, 1).reshape(weight.shape)
    torch.testing.assert_close(rebuilt, result.tucker.to_tensor())
    stream_products = 10 * 4 * 3 * 9 + 10 * 9 * 7 * 3  # scalar products of the two contractions
    assert account.multiplications_stream == stream_products
    assert account.multiplications_reuse <= account.multiplications_stream < account.multiplications_naive
    assert account_layer(weight.shape, "tucker2", 50).rank == (10, 7)  # an int rank is clipped to the channels
    with pytest.raises(ConfigError, match="exceed the channel counts"):
        account_layer(weight.shape, "tucker2", (11, 3))


# ---------------------------------------------------------------------------------------------- models


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 10))


def test_account_model_totals_and_scopes():
    model = small_cnn()
    account = account_model(model, {"3": 4, "6": 2}, factor_bits=8)
    assert [a.name for a in account.layers] == ["0", "3", "6"]
    assert account.layer("0").method == "keep"
    weights = sum(m.weight.numel() for m in (model[0], model[3], model[6]))
    total = sum(p.numel() for p in model.parameters())
    assert account.params_before == weights and account.model_params_before == total
    assert account.other_params == total - weights > 0
    assert account.params_after == sum(a.params_after for a in account.layers) < weights
    assert 1 < account.model_compression < account.compression
    data = json.loads(json.dumps(account.to_dict()))
    assert data["totals"]["params_after"] == account.params_after
    assert data["totals"]["dram_bytes_saved"] > 0
    with pytest.raises(ModelError, match="not Conv1d/Conv2d/Linear"):
        account_model(model, {"1": 2})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "svd"}, ConfigError, "method must be one of"),
        ({"rank": 0}, ConfigError, ">= 1"),
        ({"rank": 2.5}, ConfigError, "integer"),
        ({"scale": "per_row"}, ConfigError, "scale must be one of"),
        ({"factor_bits": 0}, ConfigError, "factor_bits"),
        ({"shape": (5,)}, ModelError, "shape"),
    ],
)
def test_invalid_accounts_are_refused(kwargs, error, match):
    args = {"shape": (4, 4, 3, 3), "method": "cp4", "rank": 2} | kwargs
    shape, method, rank = args.pop("shape"), args.pop("method"), args.pop("rank")
    with pytest.raises(error, match=match):
        account_layer(shape, method, rank, **args)


# ---------------------------------------------------------------------------------------------- hardware


def test_regenerated_resources_trade_bram_for_regeneration_logic():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    config = make_config(strategy="Resource", reuse_factor=16)
    base = estimate(model, (64,), config)
    layer = base.layer("0")
    assert layer.bram18 > 0
    device = get_device(config.device)

    def resources(rank):
        account = account_layer((64, 64), "cp4", rank, factor_bits=8)
        return regenerated_layer_resources(account, layer, weight_width=16, data_width=16, device=device)

    np.testing.assert_array_equal(regenerated_layer_resources(account_layer((64, 64), "cp4", None), layer,
                                                              weight_width=16, data_width=16, device=device),
                                  layer.resources())
    low, high = resources(2), resources(16)
    assert low[1] < layer.bram18  # factors take less ROM than the weights
    assert high[2] > low[2] > layer.lut  # regeneration multipliers and adders grow with the rank
    assert low[0] == layer.dsp  # Resource strategy: the layer's own multipliers are unchanged
    latency = estimate(model, (64,), make_config(strategy="Latency"))
    folded = regenerated_layer_resources(account_layer((64, 64), "cp4", 2), latency.layer("0"), weight_width=16,
                                         data_width=16, device=device)
    assert folded[0] == 64 * 64  # regenerated weights cannot be folded: one 16x16 DSP per product at R=1
