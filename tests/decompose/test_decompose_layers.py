"""One decomposed layer: exact initialisation from quantized CP/Tucker results, the original layer's forward
semantics, a state dict without the full weight, the factorized form computing the same function, the
straight-through gradient, and clear errors for layers that cannot be decomposed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tenfold.decompose import (
    FactorGrid,
    FactorizedLayer,
    as_factor_grid,
    compose_weight,
    cp_als,
    cp_reshape,
    decompose_layer,
    factor_shapes,
    layer_from_result,
    quantized_cp_als,
    quantized_tucker,
)
from tenfold.decompose.layers import decomposed_weight_of, plain_layer
from tenfold.errors import ConfigError, ModelError
from tenfold.hardware import make_config
from tenfold.hardware.fixed_point import FixedPoint
from tenfold.hardware.layers import extract_layers
from tenfold.quantize.emulate import emulate


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread is much faster than two on a busy shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def seeded(module: nn.Module, seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64))
    return module.to(dtype)


def originals(layer: nn.Module) -> list[torch.Tensor]:
    plist = layer.parametrizations.weight
    return [getattr(plist, f"original{i}") for i in range(len(plist._parameters))]


GRID8 = as_factor_grid("fixed<8,1>", "per_factor")


# ------------------------------------------------------------------------------ exact initialisation


@pytest.mark.parametrize("scale", ["per_factor", "per_component_pow2"])
@pytest.mark.parametrize(("make", "method", "rank"), [
    (lambda: nn.Conv2d(6, 8, 3), "cp", 5),
    (lambda: nn.Conv2d(6, 8, (3, 2)), "cp3", 4),
    (lambda: nn.Conv1d(5, 7, 3), "cp", 4),
    (lambda: nn.Linear(12, 9), "cp", 3),
])
def test_reconstructed_weight_equals_quantized_cp_result_exactly(make, method, rank, scale):
    layer = seeded(make(), dtype=torch.float32)
    result = quantized_cp_als(cp_reshape(layer.weight.detach(), "cp3" if method == "cp3" else "cp4"), rank,
                              "fixed<6,1>", scale=scale, n_iter_max=5)
    grid = FactorGrid(FixedPoint(6, 1), scale)
    new = decompose_layer(layer, method, rank, grid, factors=list(result.cp.factors))
    expected = result.dequantized.to_tensor().reshape(layer.weight.shape)
    assert torch.equal(new.weight, expected)
    error = float((new.weight - layer.weight).detach().norm() / layer.weight.detach().norm())
    assert error == pytest.approx(result.relative_error, rel=1e-4)


@pytest.mark.parametrize("scale", ["per_factor", "per_component_pow2", "none"])
def test_reconstructed_weight_equals_quantized_tucker_result_exactly(scale):
    layer = seeded(nn.Conv2d(7, 9, 3), dtype=torch.float32)
    result = quantized_tucker(layer.weight.detach(), [4, 3, None, None], "fixed<6,1>", scale=scale, n_iter_max=3,
                              hooi_iter=3)
    tucker = result.tucker
    factors = [tucker.factors[0], tucker.factors[1], tucker.core]
    new = decompose_layer(layer, "tucker2", (4, 3), FactorGrid(FixedPoint(6, 1), scale), factors=factors)
    assert torch.equal(new.weight, tucker.to_tensor())


def test_layer_from_result_reads_method_rank_and_grid_from_the_result():
    layer = seeded(nn.Conv2d(6, 8, (3, 3)), dtype=torch.float32)
    merged = quantized_cp_als(cp_reshape(layer.weight.detach(), "cp3"), 4, "fixed<5,1>", scale="per_component_pow2",
                              n_iter_max=3)
    new = layer_from_result(layer, merged, form="factorized")
    assert (new.method, new.rank, new.grid) == ("cp3", 4, FactorGrid(FixedPoint(5, 1), "per_component_pow2"))
    assert torch.equal(new.reconstruct_weight(), merged.dequantized.to_tensor().reshape(layer.weight.shape))
    tucker = quantized_tucker(layer.weight.detach(), [3, 2, None, None], "fixed<6,1>", n_iter_max=2, hooi_iter=2)
    assert torch.equal(layer_from_result(layer, tucker).weight, tucker.tucker.to_tensor())
    floating = cp_als(layer.weight.detach(), 3, n_iter_max=5)
    from_float = layer_from_result(layer, floating)
    assert decomposed_weight_of(from_float).grid is None
    torch.testing.assert_close(from_float.weight, floating.cp.to_tensor(), rtol=1e-5, atol=1e-6)
    full_tucker = quantized_tucker(layer.weight.detach(), [3, 2, 2, None], "fixed<6,1>", n_iter_max=1, hooi_iter=1)
    with pytest.raises(ModelError, match="only Tucker-2"):
        layer_from_result(layer, full_tucker)


# ------------------------------------------------------------------------------ forward semantics


@pytest.mark.parametrize("kwargs", [
    {"stride": 2, "padding": 1},
    {"stride": (2, 1), "padding": (2, 0), "dilation": (1, 2)},
    {"padding": "same", "dilation": 2},
])
def test_reconstructed_conv_behaves_like_a_conv_with_the_rebuilt_weight(kwargs):
    layer = seeded(nn.Conv2d(5, 6, (3, 5), **kwargs))
    new = decompose_layer(layer, "cp", 4, GRID8, n_iter_max=5)
    x = torch.randn(2, 5, 11, 12, dtype=torch.float64)
    expected = F.conv2d(x, new.weight, layer.bias, layer.stride, layer.padding, layer.dilation)
    assert torch.equal(new(x), expected)
    assert torch.equal(new.bias, layer.bias)
    assert isinstance(new, nn.Conv2d)
    assert (new.stride, new.padding, new.dilation) == (layer.stride, layer.padding, layer.dilation)


def test_input_layer_is_not_modified():
    layer = seeded(nn.Conv2d(4, 6, 3))
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    decompose_layer(layer, "cp", 3, GRID8, n_iter_max=3)
    decompose_layer(layer, "tucker2", (3, 2), GRID8, n_iter_max=3, form="factorized")
    assert type(layer) is nn.Conv2d
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


@pytest.mark.parametrize("form", ["reconstructed", "factorized"])
@pytest.mark.parametrize(("method", "rank"), [("cp", 4), ("cp3", 4), ("tucker2", (5, 3))])
def test_state_dict_holds_factors_and_bias_but_never_the_full_weight(form, method, rank):
    layer = seeded(nn.Conv2d(6, 8, 3))
    new = decompose_layer(layer, method, rank, GRID8, n_iter_max=3, form=form)
    state = new.state_dict()
    full = tuple(layer.weight.shape)
    assert all(tuple(v.shape) != full for v in state.values())
    assert "weight" not in state
    factor_entries = sum(math.prod(s) for s in factor_shapes(full, method, rank))
    assert sum(v.numel() for v in state.values()) == factor_entries + layer.bias.numel()
    assert sum(p.numel() for p in new.parameters()) == factor_entries + layer.bias.numel()


def test_assigning_a_full_weight_to_a_decomposed_layer_is_refused():
    new = decompose_layer(seeded(nn.Linear(6, 5)), "cp", 2, GRID8, n_iter_max=3)
    with pytest.raises(ModelError, match="decompose the original layer again"):
        new.weight = torch.zeros(5, 6, dtype=torch.float64)


# ------------------------------------------------------------------------------ factorized == reconstructed


CONV2D_SETTINGS = [
    {},
    {"stride": 2, "padding": 1},
    {"stride": (1, 2), "padding": (0, 2), "dilation": (2, 1)},
    {"padding": "same"},
    {"padding": 1, "padding_mode": "reflect"},
]


@pytest.mark.parametrize("grid", [None, GRID8, as_factor_grid(6, "per_component_pow2")], ids=["float", "p8", "pc6"])
@pytest.mark.parametrize(("method", "rank"), [("cp", 4), ("cp3", 5), ("tucker2", (4, 3))])
@pytest.mark.parametrize("settings", CONV2D_SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_factorized_conv2d_computes_the_reconstructed_function(settings, method, rank, grid):
    layer = seeded(nn.Conv2d(5, 7, (3, 4), **settings))
    reconstructed = decompose_layer(layer, method, rank, grid, n_iter_max=3)
    factorized = decompose_layer(layer, method, rank, grid, n_iter_max=3, form="factorized")
    assert isinstance(factorized, FactorizedLayer)
    x = torch.randn(3, 5, 10, 13, dtype=torch.float64)
    assert factorized(x).shape == layer(x).shape
    torch.testing.assert_close(factorized(x), reconstructed(x), rtol=1e-12, atol=1e-12)
    assert torch.equal(factorized.reconstruct_weight(), reconstructed.weight)


@pytest.mark.parametrize(("method", "rank"), [("cp", 3), ("cp3", 3), ("tucker2", (4, 2))])
@pytest.mark.parametrize(("make", "shape"), [
    (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2), (2, 4, 17)),
    (lambda: nn.Linear(10, 8), (5, 10)),
    (lambda: nn.Linear(10, 8, bias=False), (2, 3, 10)),
])
def test_factorized_conv1d_and_linear_compute_the_reconstructed_function(make, shape, method, rank):
    layer = seeded(make())
    reconstructed = decompose_layer(layer, method, rank, GRID8, n_iter_max=3)
    factorized = decompose_layer(layer, method, rank, GRID8, n_iter_max=3, form="factorized")
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(factorized(x), reconstructed(x), rtol=1e-12, atol=1e-12)


def test_factorized_cp4_is_the_documented_layer_sequence():
    layer = seeded(nn.Conv2d(5, 7, (3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 2)))
    factorized = decompose_layer(layer, "cp", 4, GRID8, n_iter_max=3, form="factorized")
    inputs, vertical, horizontal, outputs = factorized.children()
    assert (inputs.in_channels, inputs.out_channels, inputs.kernel_size) == (5, 4, (1, 1))
    assert (vertical.kernel_size, vertical.stride, vertical.padding, vertical.dilation, vertical.groups) == (
        (3, 1), (2, 1), (1, 0), (1, 1), 4)
    assert (horizontal.kernel_size, horizontal.stride, horizontal.padding, horizontal.dilation) == (
        (1, 2), (1, 3), (0, 0), (1, 2))
    assert (outputs.in_channels, outputs.out_channels, outputs.bias is not None) == (4, 7, True)
    assert torch.equal(outputs.bias, layer.bias)


# ------------------------------------------------------------------------------ grid and STE


def test_forward_uses_grid_values_and_the_gradient_passes_straight_through():
    layer = seeded(nn.Conv2d(4, 5, 3))
    new = decompose_layer(layer, "cp", 3, as_factor_grid(5, "per_component_pow2"), n_iter_max=3)
    latent = originals(new)
    with torch.no_grad():  # move the latent factors off the grid, as fine-tuning does
        for factor in latent:
            factor.add_(0.013 * torch.randn_like(factor))
    parametrization = decomposed_weight_of(new)
    snapped = [f.detach().clone().requires_grad_(True) for f in parametrization.snapped(latent)]
    assert any(not torch.equal(s, f) for s, f in zip(snapped, latent, strict=True))
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    new(x).square().sum().backward()
    reference = F.conv2d(x, compose_weight("cp", layer.weight.shape, snapped), layer.bias)
    reference.square().sum().backward()
    for factor, grid_factor in zip(latent, snapped, strict=True):
        assert factor.grad is not None and float(factor.grad.abs().sum()) > 0
        torch.testing.assert_close(factor.grad, grid_factor.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale", ["per_factor", "per_component_pow2", "none"])
def test_projected_factors_are_codes_times_power_of_two_and_projection_is_idempotent(scale):
    grid = as_factor_grid("fixed<6,2>", scale)
    values = torch.randn(9, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3
    snapped, exps, codes = grid.project(values, component_dim=1)
    lsb = grid.precision.lsb
    assert torch.equal(snapped, codes.double() * lsb * torch.pow(2.0, exps.double()))
    assert int(codes.abs().max()) <= grid.precision.max_code
    assert torch.equal(grid.project(snapped, component_dim=1)[0], snapped)
    if scale == "per_component_pow2":
        assert exps.shape == (4,)
        transposed = grid.project(values.T.contiguous(), component_dim=0)[0]
        assert torch.equal(transposed, snapped.T)


def test_factor_grid_inputs():
    assert as_factor_grid(8).precision == FixedPoint(8, 1)
    assert as_factor_grid(None) is None
    assert as_factor_grid("ap_fixed<6,3>", "per_component_pow2").to_dict() == {
        "precision": "fixed<6,3>", "scale": "per_component_pow2"}
    with pytest.raises(ConfigError, match="at least 2 bits"):
        as_factor_grid(1)
    with pytest.raises(ConfigError, match="signed"):
        as_factor_grid("ufixed<8,1>")
    with pytest.raises(ConfigError, match="scale must be one of"):
        as_factor_grid(8, "per_row")
    with pytest.raises(ConfigError, match="component axis"):
        as_factor_grid(8, "per_component_pow2").project(torch.ones(3, 2))


# ------------------------------------------------------------------------------ bad input


def test_layers_that_cannot_be_decomposed_give_clear_errors():
    with pytest.raises(ModelError, match=r"'grp'.*groups=2"):
        decompose_layer(nn.Conv2d(4, 4, 3, groups=2), "cp", 2, GRID8, name="grp")
    with pytest.raises(ModelError, match="BatchNorm2d is not a decomposable layer"):
        decompose_layer(nn.BatchNorm2d(4), "cp", 2, GRID8)
    bad = nn.Linear(5, 4)
    with torch.no_grad():
        bad.weight[1, 2] = float("nan")
    with pytest.raises(ModelError, match=r"'fc'.*NaN"):
        decompose_layer(bad, "cp", 2, GRID8, name="fc")
    already = decompose_layer(seeded(nn.Linear(6, 5)), "cp", 2, GRID8, n_iter_max=2)
    with pytest.raises(ModelError, match="already decomposed"):
        decompose_layer(already, "cp", 2, GRID8)
    with pytest.raises(ModelError, match="do not fit"):
        decompose_layer(nn.Linear(6, 5), "cp", 2, GRID8, factors=[torch.zeros(5, 2), torch.zeros(5, 2)])
    with pytest.raises(ConfigError, match="method must be one of"):
        decompose_layer(nn.Linear(6, 5), "parafac", 2, GRID8)
    with pytest.raises(ConfigError, match="form must be one of"):
        decompose_layer(nn.Linear(6, 5), "cp", 2, GRID8, form="merged")


# ------------------------------------------------------------------------------ tenfold's hardware model


def test_hardware_model_reads_reconstructed_layers_like_the_originals():
    model = seeded(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                                 nn.Flatten(), nn.Linear(8 * 3 * 3, 5)), dtype=torch.float32)
    decomposed = nn.Sequential(*[decompose_layer(m, "cp", 3, GRID8, n_iter_max=3)
                                 if isinstance(m, nn.Conv2d | nn.Linear) else m for m in model])
    before, after = extract_layers(model, (3, 8, 8)), extract_layers(decomposed, (3, 8, 8))
    assert [(s.kind, s.n_in, s.n_out, s.output_shape) for s in after] == [
        (s.kind, s.n_in, s.n_out, s.output_shape) for s in before]
    for spec, layer in zip([s for s in after if s.has_weights], [decomposed[0], decomposed[2], decomposed[4]],
                           strict=True):
        assert torch.equal(spec.weight, layer.weight.detach())


def test_bit_exact_emulation_reads_reconstructed_layers_like_plain_ones():
    model = seeded(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
                                 nn.Flatten(), nn.Linear(8 * 3 * 3, 5)), dtype=torch.float32)
    decomposed = nn.Sequential(*[decompose_layer(m, "cp", 3, GRID8, n_iter_max=3)
                                 if isinstance(m, nn.Conv2d | nn.Linear) else m for m in model])
    plain = nn.Sequential(*[plain_layer(m) if isinstance(m, nn.Conv2d | nn.Linear) else m for m in decomposed])
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    config = make_config()
    assert torch.equal(emulate(decomposed, x, config), emulate(plain, x, config))


def test_plain_layer_is_an_ordinary_layer_with_the_rebuilt_weight():
    new = decompose_layer(seeded(nn.Conv2d(4, 6, 3, padding=1)), "cp", 3, GRID8, n_iter_max=3)
    plain = plain_layer(new)
    assert type(plain) is nn.Conv2d
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    assert torch.equal(plain(x), new(x))
    assert new(x).shape == (2, 6, 6, 6)  # the source layer still works
