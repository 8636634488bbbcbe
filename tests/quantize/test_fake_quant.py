"""Fake quantization must equal FixedPoint.quantize exactly, and the fake-quantized model must track emulate()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

from tenfold.errors import ConfigError, ModelError
from tenfold.hardware import FixedPoint, Overflow, Rounding, make_config
from tenfold.quantize import (
    FakeQuant,
    QuantizedModel,
    emulate,
    fake_quantize,
    quantize_model,
    quantize_tensor,
    strip_quantization,
    to_float,
)

# --------------------------------------------------------------------------- exactness against FixedPoint


@st.composite
def fixed_types(draw: st.DrawFn) -> FixedPoint:
    if draw(st.integers(0, 15)) == 0:  # ap_int / ap_uint
        return FixedPoint(*(2 * [draw(st.integers(1, 64))]), signed=draw(st.booleans()), int_type=True)
    width = draw(st.sampled_from([*range(1, 25), 31, 32, 53, 54, 63, 64]))
    integer = draw(st.integers(-10, width + 10))
    signed = draw(st.booleans())
    rounding = draw(st.sampled_from(list(Rounding)))
    overflow = draw(st.sampled_from([o for o in Overflow if signed or o is not Overflow.AP_WRAP_SM]))
    n = draw(st.integers(0, min(width, 4))) if overflow in (Overflow.AP_WRAP, Overflow.AP_WRAP_SM) else 0
    return FixedPoint(width, integer, signed, rounding, overflow, n)


@st.composite
def values_for(draw: st.DrawFn, fp: FixedPoint) -> list[float]:
    """Doubles of every kind: arbitrary (huge, subnormal, inf), on the grid, exact ties, around the range."""
    values = []
    for _ in range(draw(st.integers(1, 24))):
        kind = draw(st.integers(0, 4))
        if kind == 0:
            values.append(draw(st.floats(allow_nan=False)))
        elif kind == 3:
            values.append(draw(st.floats(-8.0, 8.0) if fp.fractional > 40 else st.floats(allow_nan=False, width=32)))
        else:
            span = 2 ** min(fp.width, 60)
            code = draw(st.integers(fp.min_code - span, fp.max_code + span))
            offset = {1: 0.0, 2: 0.5, 4: draw(st.sampled_from([0.25, 0.75, 1e-9, -1e-9]))}[kind]
            values.append(math.ldexp(code + offset, -fp.fractional))
    return values


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # FixedPoint's numpy at 64 bits
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fake_quantization_equals_fixed_point_quantize(data: st.DataObject) -> None:
    fp = data.draw(fixed_types())
    x = np.array(data.draw(values_for(fp)), dtype=np.float64)
    expected = fp.quantize(x)
    got = quantize_tensor(torch.from_numpy(x), fp)
    assert got.dtype == torch.float64
    assert np.array_equal(got.numpy(), expected), (fp.to_cpp(), x, got.numpy(), expected)
    x32 = torch.from_numpy(x).float()
    x32 = x32[~torch.isnan(x32)]
    assert torch.equal(quantize_tensor(x32, fp), fp.quantize(x32))


def test_every_mode_matches_on_awkward_values():
    """A deterministic sweep of all rounding x overflow modes on ties, edges, specials and random bit patterns."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 1 << 64, 2000, dtype=np.uint64).view(np.float64)
    specials = [0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 1.7976931348623157e308, -0.3, 0.3, -0.5, 0.5]
    for width, integer in [(8, 3), (5, -2), (6, 9), (1, 1)]:
        for signed in (True, False):
            for rounding in Rounding:
                for overflow in Overflow:
                    if overflow is Overflow.AP_WRAP_SM and not signed:
                        continue
                    for n in (0, 2) if overflow in (Overflow.AP_WRAP, Overflow.AP_WRAP_SM) and width > 1 else (0,):
                        fp = FixedPoint(width, integer, signed, rounding, overflow, n)
                        codes = rng.integers(fp.min_code - 300, fp.max_code + 300, 3000)
                        x = np.concatenate([
                            specials, raw[~np.isnan(raw)], np.ldexp(codes + 0.5, -fp.fractional),
                            np.ldexp(codes, -fp.fractional), np.nextafter(np.ldexp(codes + 0.5, -fp.fractional), 0),
                            rng.normal(0, 2.0**integer, 3000),
                        ])
                        got = quantize_tensor(torch.from_numpy(x), fp).numpy()
                        assert np.array_equal(got, fp.quantize(x)), fp.to_cpp()


def test_quantize_keeps_dtype_and_gives_positive_zero():
    fp = FixedPoint.parse("ap_fixed<8,3,AP_RND,AP_SAT>")
    x = torch.tensor([-0.001, 0.3, -7.0], dtype=torch.float32)
    q = quantize_tensor(x, fp)
    assert q.dtype == torch.float32
    assert q.tolist() == [0.0, 0.3125, -4.0]
    assert math.copysign(1.0, float(q[0])) == 1.0  # the C++ type has no negative zero


def test_nan_is_refused_with_a_clear_error():
    with pytest.raises(ConfigError, match="NaN"):
        quantize_tensor(torch.tensor([1.0, float("nan")]), FixedPoint.parse("fixed<8,3>"))


# --------------------------------------------------------------------------- straight-through gradient


def test_saturating_gradient_is_zero_only_where_clipped():
    x = torch.tensor([-9.0, -3.9, 0.1, 3.9, 9.0], requires_grad=True)
    y = fake_quantize(x, "ap_fixed<8,3,AP_RND,AP_SAT>")
    y.backward(torch.ones_like(y))
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert y.detach().tolist() == [-4.0, -3.90625, 0.09375, 3.90625, 3.96875]


def test_wrapping_gradient_passes_everywhere():
    x = torch.tensor([-9.0, 0.1, 9.0], dtype=torch.float64, requires_grad=True)
    y = fake_quantize(x, "ap_fixed<8,3>")
    (y * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0]
    assert y.detach().tolist() == [-1.0, 0.09375, 1.0]  # 9 wraps to 9 - 8 = 1


def test_fake_quant_module_can_be_switched_off():
    fq = FakeQuant("fixed<6,2,RND,SAT>")
    x = torch.linspace(-3, 3, 13)
    assert torch.equal(fq(x), fq.precision.quantize(x))
    fq.enabled = False
    assert torch.equal(fq(x), x)
    assert "ap_fixed<6,2,AP_RND,AP_SAT>" in repr(fq)


# --------------------------------------------------------------------------- the quantized model


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(dim=1) == b.argmax(dim=1)).double().mean())


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_fake_quantized_predictions_agree_with_emulation(which, trained_mlp, trained_cnn, digits_flat,
                                                         digits_images):
    model, data = (trained_mlp, digits_flat) if which == "mlp" else (trained_cnn, digits_images)
    inputs = data.test.tensors[0][: 359 if which == "mlp" else 200]
    config = make_config(precision="fixed<16,6>")  # hls4ml's default type: AP_TRN, AP_WRAP
    with torch.no_grad():
        fake = quantize_model(model, config)(inputs)
    exact = emulate(model, inputs, config)
    agreement = _agreement(fake, exact)
    print(f"{which}: argmax agreement of fake quantization with emulate(): {agreement:.4f}")
    assert agreement >= 0.99
    assert float((fake.double() - exact).abs().max()) < 0.1  # only the per-product accumulator casts differ


def test_hardware_mode_is_the_bit_exact_emulation(trained_cnn, digits_images):
    inputs = digits_images.test.tensors[0][:64]
    config = make_config(precision="fixed<10,4>")
    quantized = quantize_model(trained_cnn, config, hardware_mode=True)
    with torch.no_grad():
        assert torch.equal(quantized(inputs), emulate(trained_cnn, inputs, config))
    quantized.hardware_mode = False
    with torch.no_grad():
        assert not torch.equal(quantized(inputs).double(), emulate(trained_cnn, inputs, config))


def test_weights_biases_and_outputs_take_their_layer_types(trained_mlp, digits_flat):
    config = make_config(precision="fixed<16,6>").with_layer(
        "fc2", precision=make_config(precision="fixed<6,1,RND,SAT>").default.precision)
    quantized = quantize_model(trained_mlp, config)
    fc2 = quantized.model.fc2
    assert torch.equal(fc2.weight, FixedPoint.parse("fixed<6,1,RND,SAT>").quantize(trained_mlp.fc2.weight))
    assert torch.equal(quantized.model.fc1.bias, FixedPoint.parse("fixed<16,6>").quantize(trained_mlp.fc1.bias))
    kinds = {(site.layer, site.kind): site.quantizer.precision.to_hls4ml() for site in quantized.quantizer_sites()}
    assert kinds[("fc2", "result")] == "fixed<6,1,RND,SAT>" and kinds[("relu2", "result")] == "fixed<16,6>"
    assert kinds[("input", "result")] == "fixed<16,6>" and ("fc1", "accum") in kinds
    outputs = {}
    quantized.outputs["fc2"].register_forward_hook(lambda m, i, o: outputs.setdefault("fc2", o))
    quantized(digits_flat.test.tensors[0][:16])
    assert FixedPoint.parse("fixed<6,1,RND,SAT>").is_representable(outputs["fc2"].detach()).all()


def test_input_model_is_not_changed_and_to_float_bakes_quantized_weights(trained_mlp):
    before = {k: v.clone() for k, v in trained_mlp.state_dict().items()}
    quantized = quantize_model(trained_mlp, make_config(precision="fixed<6,2>"))
    plain = to_float(quantized)
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    assert type(plain) is type(trained_mlp) and not isinstance(plain, QuantizedModel)
    assert set(plain.state_dict()) == set(before)
    grid = FixedPoint.parse("fixed<6,2>")
    assert torch.equal(plain.fc1.weight, grid.quantize(trained_mlp.fc1.weight))
    assert not torch.equal(plain.fc1.weight, trained_mlp.fc1.weight)
    assert strip_quantization is to_float
    # the quantized model still works after a plain copy was made (no shared class was modified)
    quantized(torch.zeros(2, 64))
    float_again = to_float(quantized, quantized=False)
    assert torch.equal(float_again.fc1.weight, trained_mlp.fc1.weight)


def test_state_dict_round_trips_weights_and_types(trained_mlp, digits_flat, tmp_path):
    inputs = digits_flat.test.tensors[0][:50]
    narrow = make_config(precision="fixed<7,3,RND,SAT>")
    source = quantize_model(trained_mlp, narrow)
    with torch.no_grad():
        source.model.fc1.parametrizations.weight.original.add_(0.01)  # as if fine-tuned
    torch.save(source.state_dict(), tmp_path / "q.pt")
    target = quantize_model(trained_mlp, make_config(precision="fixed<16,6>"))  # other types on purpose
    target.load_state_dict(torch.load(tmp_path / "q.pt", weights_only=True))
    assert target.config.layer("fc1").precision.weight.to_cpp() == "ap_fixed<7,3,AP_RND,AP_SAT>"
    with torch.no_grad():
        assert torch.equal(target(inputs), source(inputs))


def test_pruning_masks_stay_applied(trained_mlp):
    import copy

    pruned = copy.deepcopy(trained_mlp)
    mask = (torch.rand_like(pruned.fc1.weight) > 0.5).float()
    torch_prune.custom_from_mask(pruned.fc1, "weight", mask)
    quantized = quantize_model(pruned, make_config(precision="fixed<8,2>"))
    assert torch.equal(quantized.model.fc1.weight == 0, (mask == 0) | (quantized.model.fc1.weight == 0))
    assert (quantized.model.fc1.weight[mask == 0] == 0).all()
    plain = to_float(quantized)
    assert (plain.fc1.weight[mask == 0] == 0).all() and not hasattr(plain.fc1, "weight_mask")


def test_untraceable_model_gives_a_model_error():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else -self.fc(x)

    with pytest.raises(ModelError, match="cannot trace"):
        quantize_model(Branchy(), make_config())
