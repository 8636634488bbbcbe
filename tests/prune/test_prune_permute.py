"""Channel reordering for pattern pruning: the function is unchanged and more importance fits the kept patterns."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from tenfold.errors import ConfigError, ModelError
from tenfold.hardware import make_config
from tenfold.hardware.estimate import uniform_reuse_config
from tenfold.prune import PruneConfig, Pruner
from tenfold.prune.masks import apply_masks
from tenfold.prune.permute import apply_orders, choose_orders
from tenfold.prune.structures import build_structures
from tenfold.train import TrainConfig


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(4, 6, 3), relu2=nn.ReLU(), flatten=nn.Flatten(),
        fc1=nn.Linear(6 * 2 * 2, 8), relu3=nn.ReLU(), fc2=nn.Linear(8, 3)))


def test_reordered_channels_compute_the_same_function():
    model = small_cnn()
    with torch.no_grad():  # non-trivial batch-norm statistics, so a wrongly permuted norm would show
        model.bn1.running_mean.uniform_(-1, 1)
        model.bn1.running_var.uniform_(0.5, 2)
        model.bn1.weight.uniform_(0.5, 2)
    model.eval()
    orders = {"conv1": [2, 0, 3, 1], "conv2": [5, 4, 3, 2, 1, 0], "fc1": [7, 1, 2, 6, 4, 5, 3, 0]}
    permuted = apply_orders(model, orders)
    x = torch.randn(5, 1, 8, 8)
    assert torch.allclose(model(x), permuted(x), atol=1e-5)
    assert torch.equal(permuted.conv1.weight, model.conv1.weight[orders["conv1"]])
    assert torch.equal(permuted.bn1.running_mean, model.bn1.running_mean[orders["conv1"]])
    # fc1's rows follow its own order; its first 4 inputs are now conv2 channel 5's flattened 2x2 map
    assert torch.equal(permuted.fc1.weight[:, :4], model.fc1.weight[orders["fc1"]][:, 20:24])
    assert not torch.equal(permuted.fc1.weight, model.fc1.weight)


def test_bad_orders_and_masked_models_are_refused():
    model = small_cnn()
    with pytest.raises(ConfigError, match=r"permutation of 0\.\.3"):
        apply_orders(model, {"conv1": [0, 0, 1, 2]})
    with pytest.raises(ConfigError, match="cannot reorder the channels of 'fc2'"):
        apply_orders(model, {"fc2": [0, 1, 2]})  # it produces the output
    apply_masks(model, {"fc1": torch.ones(8, 24)})
    with pytest.raises(ConfigError, match="before pruning"):
        apply_orders(model, {"conv1": [1, 0, 2, 3]})


def test_orders_put_important_inputs_into_the_same_multiplier_pattern():
    # Resource, reuse factor 2: fc2 (8 inputs, 2 outputs) shares one multiplier between inputs 2k and 2k + 1
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 8), relu=nn.ReLU(), fc2=nn.Linear(8, 2)))
    hls = make_config(strategy="Resource", reuse_factor=2)
    structures = build_structures(model, (4,), hls, "pattern")
    fc2 = next(layer for layer in structures.layers if layer.name == "fc2")
    assert fc2.group_of_weight.reshape(2, 8)[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    saliency = {"fc1": torch.ones(8, 4), "fc2": torch.full((2, 8), 0.01)}
    saliency["fc2"][0, 0] = saliency["fc2"][0, 2] = 1.0  # inputs 0 and 2 matter, but sit in different patterns
    chosen = choose_orders(model, structures, saliency, keep=1 / 8)
    assert chosen.kept_after > chosen.kept_before
    # the kept fc2 pattern now holds both important inputs: 2.0 of fc2's 2.14, instead of 1.01
    permuted = apply_orders(model, chosen.orders)
    new_position = {old: new for new, old in enumerate(chosen.orders["fc1"])}
    assert new_position[0] // 2 == new_position[2] // 2  # now one multiplier's pair
    x = torch.randn(3, 4)
    assert torch.allclose(model(x), permuted(x), atol=1e-6)


def test_orders_never_lose_importance_on_random_saliency():
    model = small_cnn()
    hls = uniform_reuse_config(make_config(strategy="Resource", reuse_factor=4), model, (1, 8, 8))
    structures = build_structures(model, (1, 8, 8), hls, "pattern")
    generator = torch.Generator().manual_seed(1)
    saliency = {layer.name: torch.rand(layer.weight_shape, generator=generator) ** 4 for layer in structures.layers}
    chosen = choose_orders(model, structures, saliency, keep=0.25, seed=3)
    assert chosen.kept_after >= chosen.kept_before
    assert chosen.orders == choose_orders(model, structures, saliency, keep=0.25, seed=3).orders  # seeded
    with pytest.raises(ConfigError, match="keep"):
        choose_orders(model, structures, saliency, keep=0.0)
    with pytest.raises(ConfigError, match=r"saliency of 'fc1' has shape \(24, 8\)"):
        choose_orders(model, structures, saliency | {"fc1": torch.rand(24, 8)}, keep=0.25)
    with pytest.raises(ConfigError, match="NaN"):
        choose_orders(model, structures, saliency | {"fc1": torch.full((8, 24), float("nan"))}, keep=0.25)


def test_pruner_reorders_before_the_first_step(trained_digits_mlp):
    model, splits = trained_digits_mlp
    hls = make_config(strategy="Resource", reuse_factor=16)
    config = PruneConfig(budget="dsp<=0.5x", structure="pattern", steps=2, tolerance=0.1, permute=True,
                         finetune=TrainConfig(epochs=1, lr=1e-3))
    result = Pruner(config, hls, (64,)).fit(model, splits.train, splits.val, progress=False)
    permutation = result.report.permutation
    assert permutation["keep"] == pytest.approx(0.5, abs=0.01)
    assert permutation["orders"] and permutation["kept_after"] > permutation["kept_before"]
    assert result.report.met_budget
    unpruned = apply_orders(model, permutation["orders"])  # the pruned model lives in the new channel order
    x = splits.val[:16][0]
    assert torch.allclose(model(x), unpruned(x), atol=1e-5)


def test_an_untraceable_model_gets_a_permutation_specific_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                x = x * 2
            return self.fc2(torch.relu(self.fc1(x)))

    with pytest.raises(ModelError, match=r"channel permutation needs a model torch\.fx can trace"):
        apply_orders(Branchy(), {"fc1": list(range(8))})
