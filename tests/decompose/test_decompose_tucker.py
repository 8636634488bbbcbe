"""Tucker: HOOI and Tucker-2 recover planted Tucker tensors; the quantized variant stays on its grid."""

from __future__ import annotations

import pytest
import torch

from tenfold.decompose import (
    QuantizedTuckerResult,
    TuckerResult,
    TuckerTensor,
    mode_product,
    quantized_tucker,
    tucker2,
    tucker_hooi,
    unfold,
)
from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.fixed_point import FixedPoint


def planted_tucker(shape, ranks, seed=0, noise=0.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    core_shape = [r if r is not None else s for s, r in zip(shape, ranks, strict=True)]
    core = torch.randn(core_shape, generator=gen, dtype=torch.float64)
    factors = [torch.randn(s, r, generator=gen, dtype=torch.float64) if r is not None else None
               for s, r in zip(shape, ranks, strict=True)]
    tensor = TuckerTensor(core, factors).to_tensor()
    if noise:
        extra = torch.randn(shape, generator=gen, dtype=torch.float64)
        tensor = tensor + noise * extra * tensor.norm() / extra.norm()
    return tensor


def test_tucker_tensor_reconstruction_and_parameter_count():
    gen = torch.Generator().manual_seed(0)
    core = torch.randn(2, 3, 4, generator=gen)
    u0, u2 = torch.randn(5, 2, generator=gen), torch.randn(6, 4, generator=gen)
    tucker = TuckerTensor(core, [u0, None, u2])
    assert tucker.shape == (5, 3, 6) and tucker.ranks == (2, 3, 4)
    assert tucker.n_parameters() == 24 + 10 + 24
    expected = torch.einsum("abc,ia,kc->ibk", core, u0, u2)
    torch.testing.assert_close(tucker.to_tensor(), expected)
    torch.testing.assert_close(mode_product(core, u0, 0), torch.einsum("abc,ia->ibc", core, u0))
    with pytest.raises(ModelError, match="factor 1"):
        TuckerTensor(core, [u0, torch.randn(3, 2), None])


@pytest.mark.parametrize(("shape", "ranks"), [((12, 10, 8), (4, 3, 2)), ((10, 9, 4, 3), (3, 4, 2, 3)),
                                              ((12, 10, 8), (4, None, 3))])
def test_hooi_recovers_planted_tucker_tensors(shape, ranks):
    tensor = planted_tucker(shape, ranks, seed=1)
    result = tucker_hooi(tensor, ranks)
    assert isinstance(result, TuckerResult)
    assert result.relative_error < 1e-10
    for factor in result.tucker.factors:
        if factor is not None:  # orthonormal columns
            torch.testing.assert_close(factor.T @ factor, torch.eye(factor.shape[1], dtype=torch.float64))


def test_hooi_with_noise_reaches_the_noise_level_and_beats_hosvd():
    tensor = planted_tucker((14, 12, 10), (4, 4, 3), seed=2, noise=0.1)
    hosvd = tucker_hooi(tensor, (4, 4, 3), n_iter_max=0)
    hooi = tucker_hooi(tensor, (4, 4, 3), tol=1e-10)
    assert hooi.relative_error <= hosvd.relative_error + 1e-12
    assert hooi.relative_error < 0.1
    assert hooi.errors[-1] == pytest.approx(hooi.relative_error, rel=1e-6)


def test_tucker2_recovers_a_planted_conv_kernel():
    weight = planted_tucker((16, 12, 3, 3), (5, 4, None, None), seed=3)
    result = tucker2(weight, (5, 4))
    assert result.relative_error < 1e-10
    assert result.tucker.ranks == (5, 4, 3, 3)
    assert result.tucker.factors[2] is None and result.tucker.factors[3] is None
    assert result.tucker.n_parameters() == 5 * 4 * 9 + 16 * 5 + 12 * 4
    assert tucker2(torch.randn(10, 8), (3, 2)).tucker.ranks == (3, 2)  # a linear layer works too


def test_tucker2_on_full_ranks_is_exact_and_truncation_matches_the_svd_for_a_matrix():
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(6, 5, 3, 3, generator=gen, dtype=torch.float64)
    assert tucker2(weight, (6, 5)).relative_error < 1e-12
    matrix = torch.randn(20, 9, generator=gen, dtype=torch.float64)
    singular = torch.linalg.svdvals(matrix)
    result = tucker2(matrix, (3, 3))
    assert result.relative_error == pytest.approx(float(singular[3:].norm() / singular.norm()), rel=1e-8)


@pytest.mark.parametrize("scale", ["per_factor", "per_component_pow2", "none"])
def test_quantized_tucker_is_on_the_grid(scale):
    weight = planted_tucker((12, 10, 3, 3), (4, 3, None, None), seed=5)
    result = quantized_tucker(weight, (4, 3, None, None), "fixed<6,1>", scale=scale, n_iter_max=10)
    assert isinstance(result, QuantizedTuckerResult) and result.factors_on_grid()
    fixed = FixedPoint(6, 1)
    parts = [*result.tucker.factors, result.tucker.core]
    for part, exps, codes in zip(parts, result.scales, result.codes, strict=True):
        if part is None:
            assert exps is None and codes is None
            continue
        scaled = torch.ldexp(part, -exps)
        assert torch.equal(fixed.quantize(scaled), scaled)
        torch.testing.assert_close(codes.double() * fixed.lsb * torch.pow(2.0, exps.double()), part, rtol=0, atol=0)
    if scale != "none":
        assert result.relative_error < 0.2
    rebuilt = result.tucker.to_tensor()
    assert float((rebuilt - weight).norm() / weight.norm()) == pytest.approx(result.relative_error, rel=1e-9)


def test_quantized_tucker_improves_on_rounding_hooi_and_more_bits_help():
    weight = planted_tucker((16, 12, 3, 3), (6, 5, None, None), seed=6, noise=0.02)
    errors = []
    for bits in (4, 6, 8):
        once = quantized_tucker(weight, (6, 5, None, None), FixedPoint(bits, 1), n_iter_max=0)
        refined = quantized_tucker(weight, (6, 5, None, None), FixedPoint(bits, 1), n_iter_max=20)
        assert refined.relative_error <= once.relative_error
        errors.append(refined.relative_error)
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < refined.float_error + 0.01


def test_tucker_is_deterministic_and_handles_zero_and_nan():
    weight = torch.randn(8, 6, 3, 3, generator=torch.Generator().manual_seed(0))
    a, b = tucker2(weight, (3, 2), seed=1), tucker2(weight, (3, 2), seed=1)
    assert torch.equal(a.tucker.core, b.tucker.core)
    zero = tucker_hooi(torch.zeros(5, 4, 3), (2, 2, 2))
    assert zero.relative_error == 0.0 and torch.isfinite(zero.tucker.to_tensor()).all()
    qzero = quantized_tucker(torch.zeros(5, 4, 3), (2, 2, 2), "fixed<8,1>")
    assert qzero.relative_error == 0.0 and qzero.factors_on_grid()
    bad = weight.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ModelError, match="NaN"):
        tucker2(bad, (3, 2))


def test_rank_deficient_tucker_stays_finite():
    tensor = planted_tucker((8, 7, 6), (2, 2, 2), seed=8)
    result = tucker_hooi(tensor, (5, 5, 4))  # more than the true multilinear rank
    assert result.relative_error < 1e-10
    torch.testing.assert_close(unfold(result.tucker.to_tensor(), 0), unfold(tensor, 0))
    quantized = quantized_tucker(tensor, (5, 5, 4), "fixed<8,1>", n_iter_max=5)
    assert quantized.factors_on_grid() and torch.isfinite(quantized.tucker.core).all()


def test_bad_tucker_arguments_are_refused():
    with pytest.raises(ConfigError, match="exceeds"):
        tucker_hooi(torch.randn(4, 3, 2), (5, 2, 2))
    with pytest.raises(ConfigError, match="one rank per mode"):
        tucker_hooi(torch.randn(4, 3, 2), (2, 2))
    with pytest.raises(ConfigError, match="all None"):
        tucker_hooi(torch.randn(4, 3, 2), (None, None, None))
    with pytest.raises(ConfigError, match=">= 1"):
        tucker_hooi(torch.randn(4, 3, 2), (0, 2, 2))
    with pytest.raises(ModelError, match=r"\(r_out, r_in\)"):
        tucker2(torch.randn(4, 3, 3, 3), (2,))
    with pytest.raises(ModelError, match="out, in"):
        tucker2(torch.randn(4), (2, 2))
    with pytest.raises(ConfigError, match="rounding"):
        quantized_tucker(torch.randn(4, 3, 2), 2, "fixed<8,1>", rounding="up")
