"""Structures, budgets, importance and masks: the parts of the pruner that need no training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tenfold.errors import ConfigError
from tenfold.hardware import estimate, make_config
from tenfold.models import create
from tenfold.prune import (
    Budget,
    apply_masks,
    build_structures,
    current_masks,
    ensure_mask_buffers,
    shrink,
    structure_masks,
    structure_values,
    trace_couplings,
    weight_saliency,
)


def test_budget_parsing_and_resolution():
    budget = Budget.parse("dsp<=0.1x, bram<=20%; lut<=50000, fc1.dsp<=16, params<=0.5x")
    assert budget.caps("lut") and budget.caps("dsp") and not Budget.parse("dsp<=0.1x").caps("lut")
    assert [limit.describe() for limit in budget.limits] == [
        "dsp<=0.1x", "bram18<=20%", "lut<=50000", "fc1.dsp<=16", "params<=0.5x"]
    model = create("jet_mlp")
    cost = estimate(model, (16,), make_config(device="xczu9eg", strategy="Resource", reuse_factor=16))
    params = {layer.name: layer.n_nonzero for layer in cost.layers if layer.n_weights}
    resolved = dict((limit.describe(), value) for limit, value in budget.resolve(cost, params))
    assert resolved["dsp<=0.1x"] == pytest.approx(0.1 * cost.totals["dsp"])
    assert resolved["bram18<=20%"] == pytest.approx(0.2 * 1824)
    assert resolved["params<=0.5x"] == pytest.approx(0.5 * sum(params.values()))
    for bad, message in [("dsp<0.1x", "cannot parse"), ("gpu<=3", "unknown resource"), ("", "required"),
                         ("params<=10%", "device"), ("dsp<=-1", ">= 0")]:
        with pytest.raises(ConfigError, match=message):
            Budget.parse(bad)
    with pytest.raises(ConfigError, match="does not have"):
        Budget.parse("nolayer.dsp<=3").resolve(cost, params)


@pytest.mark.parametrize("structure", ["weight", "pattern", "block", "neuron"])
def test_structure_costs_add_up_to_the_removable_cost(structure):
    model = create("jet_mlp")
    config = make_config(strategy="Resource", reuse_factor=16)
    structures = build_structures(model, (16,), config, structure)
    total = structures.costs().sum(axis=0) + structures.fixed_cost
    assert total[0] == pytest.approx(structures.baseline.totals["dsp"])
    assert total[1] == pytest.approx(structures.baseline.totals["bram18"])
    if structure == "block":
        assert structures.layers[0].note == "9 pattern(s) per block"  # 9 lanes × 16 bits = 4 BRAM18 words
    if structure == "neuron":
        assert "output" in structures.skipped


def test_removing_patterns_saves_exactly_the_predicted_dsps():
    model = create("jet_mlp")
    config = make_config(strategy="Resource", reuse_factor=16)
    structures = build_structures(model, (16,), config, "pattern")
    rng = np.random.default_rng(0)
    keep = rng.random(structures.n_items) > 0.6
    predicted = structures.costs()[~keep, 0].sum()
    apply_masks(model, structure_masks(structures, keep.astype(float), model))
    after = estimate(model, (16,), config).totals["dsp"]
    assert structures.baseline.totals["dsp"] - after == pytest.approx(predicted)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.sampled_from([9, 12, 16, 18]))
def test_block_structures_free_whole_brams(seed, width):
    model = create("jet_mlp")
    config = make_config(strategy="Resource", reuse_factor=16, precision=f"fixed<{width},6>")
    structures = build_structures(model, (16,), config, "block")
    keep = np.random.default_rng(seed).random(structures.n_items) > 0.5
    apply_masks(model, structure_masks(structures, keep.astype(float), model))
    after = estimate(model, (16,), config).totals["bram18"]
    predicted = structures.baseline.totals["bram18"] - structures.costs()[~keep, 1].sum()
    assert after <= predicted + 1e-6 + len(structures.layers)  # within one BRAM per layer of rounding
    assert after < structures.baseline.totals["bram18"] or keep.all()


def test_importance_methods_and_normalisation():
    torch.manual_seed(0)
    model = create("jet_mlp")
    x, y = torch.randn(64, 16), torch.randint(0, 5, (64,))
    data = torch.utils.data.TensorDataset(x, y)
    layers = ["fc1", "fc2", "fc3", "output"]
    structures = build_structures(model, (16,), make_config(), "neuron")
    for method in ("l1", "l2", "taylor", "fisher"):
        saliency = weight_saliency(model, layers, method, data, batches=2, batch_size=32)
        assert set(saliency) == set(layers) and all(s.shape == model.get_submodule(n).weight.shape
                                                     for n, s in saliency.items())
        values = structure_values(structures, saliency, method=method, normalize="layer_mean")
        offset = 0
        for layer in structures.layers:  # each layer's live structures average 1 after normalisation
            layer_values = values[offset: offset + layer.n_groups]
            assert layer_values[layer_values > 0].mean() == pytest.approx(1.0)
            offset += layer.n_groups
    with pytest.raises(ConfigError, match="importance"):
        weight_saliency(model, layers, "random")
    with pytest.raises(Exception, match="needs data"):
        weight_saliency(model, layers, "taylor", None)


def test_masks_round_trip_through_state_dict():
    model = create("lenet")
    structures = build_structures(model, (1, 28, 28), make_config(), "neuron")
    keep = np.ones(structures.n_items)
    keep[:3] = 0
    apply_masks(model, structure_masks(structures, keep, model))
    masks = current_masks(model)
    assert "conv1:bias" in masks and int((masks["conv1"] == 0).sum()) == 3 * 25
    state = model.state_dict()
    fresh = create("lenet")
    ensure_mask_buffers(fresh, state)
    fresh.load_state_dict(state)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(fresh.eval()(x), model.eval()(x))


@pytest.mark.parametrize(("name", "shape"), [("jet_mlp", (16,)), ("lenet", (1, 28, 28)), ("vgg16", (3, 32, 32))])
def test_shrunk_model_computes_the_same_as_the_masked_one(name, shape):
    torch.manual_seed(0)
    model = create(name).eval()
    structures = build_structures(model, shape, make_config(), "neuron")
    keep = (np.random.default_rng(1).random(structures.n_items) > 0.4).astype(float)
    apply_masks(model, structure_masks(structures, keep, model))
    small, recipe = shrink(model)
    assert recipe and sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    x = torch.randn(3, *shape)
    assert torch.allclose(small.eval()(x), model.eval()(x), atol=1e-5)


def test_couplings_refuse_residual_and_output_layers():
    couplings = trace_couplings(create("resnet20"))
    assert couplings["layer1.0.conv1"].prunable and couplings["layer1.0.conv1"].next_layer == "layer1.0.conv2"
    assert not couplings["layer1.0.conv2"].prunable and "combines" in couplings["layer1.0.conv2"].reason
    assert not couplings["linear"].prunable


def test_unknown_structure_and_layer():
    model = create("jet_mlp")
    with pytest.raises(ConfigError, match="structure"):
        build_structures(model, (16,), make_config(), "channel")
    with pytest.raises(ConfigError, match="unknown layer"):
        build_structures(model, (16,), make_config(), "pattern", layers=["fc9"])


def test_nan_weights_are_reported():
    model = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(Exception, match="NaN"):
        build_structures(model, (4,), make_config(), "pattern")
