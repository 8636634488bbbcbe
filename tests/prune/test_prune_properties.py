"""Property tests: masks hold through any fine-tuning; the hardware model agrees with the structure costs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from tenfold.hardware import estimate, make_config
from tenfold.prune import MaskedFinetune, apply_masks, build_structures, current_masks, structure_masks
from tenfold.train import TrainConfig, fit


def small_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 1000),
    optimizer=st.sampled_from(["sgd", "adam", "adamw"]),
    weight_decay=st.sampled_from([0.0, 1e-2]),
    structure=st.sampled_from(["weight", "pattern", "neuron"]),
    keep_share=st.floats(0.1, 0.9),
)
def test_pruned_weights_stay_exactly_zero_through_fine_tuning(seed, optimizer, weight_decay, structure, keep_share):
    model = small_mlp(seed)
    config = make_config(strategy="Resource", reuse_factor=8).with_layer("4", reuse_factor=4)
    structures = build_structures(model, (16,), config, structure)
    keep = (np.random.default_rng(seed).random(structures.n_items) < keep_share).astype(float)
    apply_masks(model, structure_masks(structures, keep, model))
    masks = current_masks(model)
    generator = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(96, 16, generator=generator), torch.randint(0, 4, (96,), generator=generator))
    fit(model, data, None, TrainConfig(epochs=2, batch_size=16, optimizer=optimizer, lr=1e-2,
                                       weight_decay=weight_decay, seed=seed),
        callbacks=[MaskedFinetune(model)], progress=False)
    for key, mask in masks.items():
        name, _, param = key.partition(":")
        value = getattr(model.get_submodule(name), param or "weight")
        assert torch.all(value[mask == 0] == 0), key
        assert torch.equal(current_masks(model)[key], mask)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), reuse=st.sampled_from([2, 4, 8, 16]), keep_share=st.floats(0.0, 1.0))
def test_dsp_after_pattern_pruning_equals_the_structure_prediction(seed, reuse, keep_share):
    model = small_mlp(seed)
    config = make_config(strategy="Resource", reuse_factor=reuse).with_layer("4", reuse_factor=4)
    structures = build_structures(model, (16,), config, "pattern")
    keep = np.random.default_rng(seed).random(structures.n_items) < keep_share
    apply_masks(model, structure_masks(structures, keep.astype(float), model))
    after = estimate(model, (16,), config).totals["dsp"]
    assert after == pytest.approx(structures.baseline.totals["dsp"] - structures.costs()[~keep, 0].sum())


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), keep_share=st.floats(0.0, 1.0))
def test_latency_strategy_weight_costs_equal_the_dsp_change(seed, keep_share):
    model = small_mlp(seed)
    config = make_config(strategy="Latency", reuse_factor=1)
    structures = build_structures(model, (16,), config, "weight")
    keep = np.random.default_rng(seed).random(structures.n_items) < keep_share
    apply_masks(model, structure_masks(structures, keep.astype(float), model))
    after = estimate(model, (16,), config).totals["dsp"]
    assert after == pytest.approx(structures.baseline.totals["dsp"] - structures.costs()[~keep, 0].sum())
