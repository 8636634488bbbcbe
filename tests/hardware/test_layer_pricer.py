"""LayerPricer re-prices one layer exactly as a whole-model estimate would."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tenfold.errors import ModelError
from tenfold.hardware import FixedPoint, LayerPricer, estimate, make_config
from tenfold.models import create


@pytest.mark.parametrize(("name", "shape", "strategy"), [
    ("jet_mlp", (16,), "Latency"), ("lenet", (1, 28, 28), "Resource")])
def test_price_equals_whole_model_estimate_after_weight_and_precision_changes(name, shape, strategy):
    torch.manual_seed(0)
    model = create(name, **({"num_classes": 5, "in_features": 16} if name == "jet_mlp" else {}))
    hls = make_config(precision="fixed<16,6>", strategy=strategy, reuse_factor=1 if strategy == "Latency" else 4)
    from tenfold.hardware.estimate import uniform_reuse_config

    hls = uniform_reuse_config(hls, model, shape)
    pricer = LayerPricer(model, shape, hls)
    weighted = [layer.name for layer in estimate(model, shape, hls).layers if layer.n_weights]
    generator = torch.Generator().manual_seed(1)
    for layer in weighted:
        module = model.get_submodule(layer)
        new = module.weight.detach() * (torch.rand(module.weight.shape, generator=generator) > 0.7)
        narrow = hls.with_layer(layer, precision=dataclasses.replace(
            hls.layer(layer).precision, weight=FixedPoint.parse("fixed<8,2>")))
        assert pricer.price(layer) == estimate(model, shape, hls).layer(layer)
        saved = module.weight.detach().clone()
        with torch.no_grad():
            module.weight.copy_(new)
        try:
            expected = estimate(model, shape, narrow).layer(layer)
        finally:
            with torch.no_grad():
                module.weight.copy_(saved)
        priced = pricer.price(layer, weight=new, config=narrow)
        assert priced == expected
        assert priced.dsp < pricer.price(layer).dsp or pricer.price(layer).dsp == 0


def test_unknown_layer_and_wrong_shape_are_clear_errors():
    model = create("jet_mlp", num_classes=5, in_features=16)
    pricer = LayerPricer(model, (16,), make_config())
    with pytest.raises(ModelError, match="weighted layers"):
        pricer.price("nope")
    first = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    with pytest.raises(ModelError, match="does not match"):
        pricer.price(first, weight=torch.zeros(3, 3))
