"""Whole-model decomposition: layer selection and ranks, the report, errors for bad input, fine-tuning through
the straight-through grid, requantization, export copies, checkpoints and the zoo's large networks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from tenfold.data import make_synthetic
from tenfold.decompose import (
    FactorizedLayer,
    apply_decomposition_recipe_,
    compose_weight,
    decompose_model,
    decomposed_layers,
    decomposition_recipe,
    factor_shapes,
    materialize,
    rank_for_ratio,
    requantize_,
)
from tenfold.decompose.layers import decomposed_weight_of
from tenfold.decompose.model import EXPONENT_BITS
from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.layers import extract_layers
from tenfold.models import create
from tenfold.train import TrainConfig, evaluate, fit, load_checkpoint, load_model, save_checkpoint


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread is much faster than two on a busy shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def lenet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create("lenet", in_channels=1, image_size=8, num_classes=4).eval()


def weighted_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)]


def originals(layer: nn.Module) -> list[torch.Tensor]:
    plist = layer.parametrizations.weight
    return [getattr(plist, f"original{i}") for i in range(len(plist._parameters))]


X = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------------------------ selection and ranks


def test_input_model_is_never_modified():
    model = lenet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types = [type(m) for m in model.modules()]
    for form in ("reconstructed", "factorized"):
        decompose_model(model, 0.5, form=form, n_iter_max=3, skip=())
    assert [type(m) for m in model.modules()] == types
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_default_skips_the_first_and_last_weighted_layers_and_says_why():
    model = lenet()
    new, report = decompose_model(model, 0.5, n_iter_max=3)
    names = weighted_names(model)
    assert [layer.name for layer in report.layers] == names
    by_name = {layer.name: layer for layer in report.layers}
    assert not by_name[names[0]].decomposed and "first" in by_name[names[0]].reason
    assert not by_name[names[-1]].decomposed and "last" in by_name[names[-1]].reason
    assert [layer.name for layer in report.decomposed] == names[1:-1]
    modules = dict(new.named_modules())
    assert type(modules[names[0]]) is nn.Conv2d and type(modules[names[-1]]) is nn.Linear
    assert all(decomposed_weight_of(modules[name]) is not None for name in names[1:-1])
    assert new(X).shape == model(X).shape


def test_ranks_as_int_ratio_and_per_layer_dict():
    model = lenet()
    _, by_int = decompose_model(model, 3, n_iter_max=2, skip=())
    assert all(layer.rank == 3 for layer in by_int.decomposed) and len(by_int.decomposed) == 5
    _, by_ratio = decompose_model(model, 0.3, n_iter_max=2, skip=())
    for layer in by_ratio.decomposed:
        assert layer.rank == rank_for_ratio(layer.weight_shape, 0.3, "cp")
        assert layer.params_after <= 0.3 * layer.params_before
    _, by_dict = decompose_model(model, {"conv2": 2, "fc1": 0.1}, method="tucker2", n_iter_max=2)
    assert [layer.name for layer in by_dict.layers] == ["conv2", "fc1"]
    assert by_dict.layers[0].rank == (2, 2)
    assert by_dict.layers[1].rank == rank_for_ratio(tuple(model.fc1.weight.shape), 0.1, "tucker2")


@pytest.mark.parametrize("method", ["cp", "cp3", "tucker2"])
@pytest.mark.parametrize("shape", [(64, 32, 3, 3), (10, 300), (48, 16, 5), (8, 3, 3, 3)])
@pytest.mark.parametrize("ratio", [0.05, 0.3, 0.8])
def test_rank_for_ratio_keeps_at_most_the_ratio_and_is_the_largest_such_rank(shape, ratio, method):
    rank = rank_for_ratio(shape, ratio, method)
    entries = sum(math.prod(s) for s in factor_shapes(shape, method, rank))
    budget = ratio * math.prod(shape)
    minimal = rank == 1 or rank == (1, 1)
    assert entries <= budget or minimal
    if method != "tucker2":
        assert sum(math.prod(s) for s in factor_shapes(shape, method, rank + 1)) > budget
    else:
        assert 1 <= rank[0] <= shape[0] and 1 <= rank[1] <= shape[1]
        # one more of each channel rank would overshoot unless both ranks are already full
        bigger = (min(rank[0] + 1, shape[0]), min(rank[1] + 1, shape[1]))
        assert bigger == rank or sum(math.prod(s) for s in factor_shapes(shape, method, bigger)) > budget


def test_useless_ranks_leave_the_layer_unchanged_with_a_reason():
    model = lenet()
    new, report = decompose_model(model, {"conv2": 400, "fc2": 2}, n_iter_max=2)
    conv2, fc2 = report.layers
    assert not conv2.decomposed and "not fewer than" in conv2.reason
    assert conv2.params_after == conv2.params_before
    assert type(new.conv2) is nn.Conv2d and torch.equal(new.conv2.weight, model.conv2.weight)
    assert fc2.decomposed


# ------------------------------------------------------------------------------ report


def test_report_counts_parameters_bits_and_error_of_what_the_model_computes_with():
    model = lenet()
    new, report = decompose_model(model, 0.25, precision="fixed<6,1>", scale="per_component_pow2", n_iter_max=3)
    for layer in report.decomposed:
        module = new.get_submodule(layer.name)
        entries = sum(p.numel() for name, p in module.named_parameters() if "original" in name)
        assert layer.params_after == entries
        assert layer.params_before == model.get_submodule(layer.name).weight.numel()
        weight = model.get_submodule(layer.name).weight.detach()
        error = float((module.weight.detach() - weight).norm() / weight.norm())
        assert layer.relative_error == pytest.approx(error, rel=1e-6)
        assert layer.quantized and layer.precision == "fixed<6,1>"
        components = sum(s[1] for s in factor_shapes(layer.weight_shape, "cp", layer.rank))
        assert layer.bits_after == 6 * layer.params_after + EXPONENT_BITS * components
        assert layer.bits_before == 32 * layer.params_before
    assert report.params_before == sum(layer.params_before for layer in report.layers)
    assert report.compression_ratio == pytest.approx(report.params_before / report.params_after)
    assert report.compression_ratio > 1.5
    assert report.model_params_after == sum(p.numel() for p in new.parameters())
    assert report.model_params_before == sum(p.numel() for p in model.parameters())
    data = json.loads(json.dumps(report.to_dict()))
    assert data["compression_ratio"] == pytest.approx(report.compression_ratio)
    assert [layer["name"] for layer in data["layers"]] == [layer.name for layer in report.layers]


def test_bits_of_a_small_linear_layer_by_hand():
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 4))
    _, report = decompose_model(model, 3, precision=8, layers=["0"], n_iter_max=2)
    (layer,) = report.layers
    assert layer.params_after == 3 * (30 + 20) and layer.params_before == 600
    assert layer.bits_after == 150 * 8 + 2 * EXPONENT_BITS  # two factors, one exponent each
    _, float_report = decompose_model(model, 3, precision=None, layers=["0"], n_iter_max=2)
    assert not float_report.layers[0].quantized and float_report.layers[0].bits_after == 150 * 32


def test_progress_is_called_after_each_layer():
    calls = []
    decompose_model(lenet(), 0.5, n_iter_max=2, progress=lambda done, total, name: calls.append((done, total, name)))
    assert calls == [(1, 3, "conv2"), (2, 3, "fc1"), (3, 3, "fc2")]


# ------------------------------------------------------------------------------ bad input


def test_bad_input_gives_clear_errors():
    model = lenet()
    with pytest.raises(ConfigError, match=">= 1"):
        decompose_model(model, 0)
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        decompose_model(model, 1.5)
    with pytest.raises(ConfigError, match="needs method='tucker2'"):
        decompose_model(model, {"fc1": (3, 2)})
    with pytest.raises(ConfigError, match=r"input rank .* must be an int in 1\.\.64"):
        decompose_model(model, {"fc1": (3, 99)}, method="tucker2")
    with pytest.raises(ModelError, match="did you mean fc1"):
        decompose_model(model, 2, layers=["fc_1"])
    with pytest.raises(ModelError, match="ReLU is not a decomposable layer"):
        decompose_model(model, 2, layers=["relu1"])
    with pytest.raises(ModelError, match="skip entry 'conv9'"):
        decompose_model(model, 2, skip=["conv9"])
    with pytest.raises(ModelError, match="skip entry 'relu1' is a ReLU"):
        decompose_model(model, 2, skip=["relu1"])
    _, report = decompose_model(model, 2, skip=["fc1"], n_iter_max=1)
    assert [(layer.name, layer.reason) for layer in report.layers if not layer.decomposed] == [
        ("fc1", "skipped: named in skip")]
    with pytest.raises(ConfigError, match="no entry for layer 'fc2'"):
        decompose_model(model, {"fc1": 2}, layers=["fc1", "fc2"])
    with pytest.raises(ConfigError, match="own argument"):
        decompose_model(model, 2, solver_options={"seed": 3})
    with pytest.raises(ModelError, match=r"takes an nn\.Module"):
        decompose_model("lenet", 2)
    broken = lenet()
    with torch.no_grad():
        broken.fc1.weight[0, 0] = float("nan")
    with pytest.raises(ModelError, match="'fc1' has NaN"):
        decompose_model(broken, 2)


def test_grouped_convolutions_are_skipped_automatically_and_refused_when_named():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=4), nn.Conv2d(8, 8, 3), nn.Flatten(),
                          nn.Linear(8, 6))
    new, report = decompose_model(model, 2, skip=(), n_iter_max=2)
    grouped = report.layers[1]
    assert not grouped.decomposed and "groups=4" in grouped.reason
    assert len(report.decomposed) == 3 and type(new[1]) is nn.Conv2d
    with pytest.raises(ModelError, match=r"'1'.*groups=4"):
        decompose_model(model, 2, layers=["1"])


# ------------------------------------------------------------------------------ fine-tuning, requantize


def test_fine_tuning_lowers_the_loss_and_the_forward_factors_stay_on_the_grid():
    splits = make_synthetic(480, (1, 8, 8), 4, seed=0, separation=0.7)
    model = lenet(seed=3)
    new, _ = decompose_model(model, 0.4, precision=6, scale="per_component_pow2", n_iter_max=3, skip=())
    start = {k: v.clone() for k, v in new.state_dict().items()}
    before = evaluate(new, splits.train).loss
    fit(new, splits.train, splits.val, TrainConfig(epochs=4, lr=1e-2, batch_size=32, seed=0, restore_best=False),
        progress=False)
    after = evaluate(new, splits.train).loss
    assert after < 0.8 * before
    moved_off_grid = 0
    for info in decomposed_layers(new):
        module = new.get_submodule(info.name)
        latent = originals(module)
        parametrization = decomposed_weight_of(module)
        snapped = [grid.project(f, dim)[0] for f, grid, dim in
                   zip(latent, parametrization.grids(), parametrization.component_dims(), strict=True)]
        assert torch.equal(module.weight.detach(), compose_weight(info.method, info.weight_shape, snapped))
        for factor, (codes, exps) in zip(info.factors, info.codes(), strict=True):
            grid_values = codes.double() * info.grid.precision.lsb * torch.pow(2.0, exps.double())
            assert torch.equal(factor.double(), grid_values)
            assert int(codes.abs().max()) <= info.grid.precision.max_code
        moved_off_grid += sum(not torch.equal(f.detach(), s) for f, s in zip(latent, snapped, strict=True))
    assert moved_off_grid > 0  # the optimizer moved latent factors between grid points; forward never left it
    assert any(not torch.equal(start[k], v) for k, v in new.state_dict().items() if "original" in k)


@pytest.mark.parametrize("form", ["reconstructed", "factorized"])
def test_requantize_snaps_stored_factors_without_changing_outputs(form):
    new, _ = decompose_model(lenet(), 0.4, precision=5, scale="per_component_pow2", form=form, n_iter_max=2)
    with torch.no_grad():
        for name, param in new.named_parameters():
            if "original" in name:
                param.add_(0.01 * torch.randn_like(param))
        output = new(X)
    stored = [p for n, p in new.named_parameters() if "original" in n]
    assert requantize_(new) is new
    assert torch.equal(new(X), output)
    snapped_again = {n: p.detach().clone() for n, p in new.named_parameters()}
    requantize_(new)
    assert all(torch.equal(snapped_again[n], p) for n, p in new.named_parameters())
    assert len(stored) > 0


def test_decomposed_layers_lists_both_forms_with_their_settings():
    new, _ = decompose_model(lenet(), {"conv2": 3}, method="cp3", n_iter_max=2)
    new, _ = decompose_model(new, {"fc1": (4, 3)}, method="tucker2", form="factorized", precision=None,
                             n_iter_max=2)
    listed = decomposed_layers(new)
    assert [(d.name, d.form, d.method, d.rank, d.quantized) for d in listed] == [
        ("conv2", "reconstructed", "cp3", 3, True), ("fc1", "factorized", "tucker2", (4, 3), False)]
    assert [tuple(f.shape) for f in listed[0].factors] == factor_shapes((16, 6, 5, 5), "cp3", 3) == [
        (16, 3), (6, 3), (25, 3)]
    with pytest.raises(ConfigError, match="float factors"):
        listed[1].codes()
    _, report = decompose_model(new, 2, n_iter_max=2, skip=())
    reasons = {layer.name: layer.reason for layer in report.layers}
    assert "already decomposed" in reasons["conv2"]
    assert "fc1.inputs" not in reasons  # layers inside a factorized layer are not candidates


# ------------------------------------------------------------------------------ export copies


@pytest.mark.parametrize("form", ["reconstructed", "factorized"])
def test_materialize_gives_plain_layers_with_the_same_outputs(form):
    new, _ = decompose_model(lenet(), 0.4, form=form, n_iter_max=2)
    plain = materialize(new)
    assert not any(hasattr(m, "parametrizations") or isinstance(m, FactorizedLayer) for m in plain.modules())
    assert torch.equal(plain(X), new(X))
    assert decomposed_layers(new)  # the decomposed model is untouched
    merged = materialize(new, merge_factorized=True)
    assert [type(m) for m in merged.modules()] == [type(m) for m in lenet().modules()]
    torch.testing.assert_close(merged(X), new(X), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("form", ["reconstructed", "factorized"])
def test_checkpoint_round_trip_rebuilds_the_decomposed_model(tmp_path, form):
    new, report = decompose_model(lenet(), 0.4, method="tucker2" if form == "factorized" else "cp",
                                  form=form, n_iter_max=2)
    path = save_checkpoint(tmp_path / "decomposed.pt", new)
    loaded = load_model(path)
    assert torch.equal(loaded(X), new(X))
    checkpoint = load_checkpoint(path)
    assert checkpoint.metadata["decomposition"] == decomposition_recipe(new)
    for layer in report.decomposed:
        assert f"{layer.name}.weight" not in checkpoint.state_dict
        shapes = {tuple(v.shape) for k, v in checkpoint.state_dict.items() if k.startswith(layer.name + ".")}
        assert tuple(layer.weight_shape) not in shapes
    assert torch.equal(checkpoint.build_model()(X), new(X))
    assert [(d.name, d.rank) for d in decomposed_layers(loaded)] == [(d.name, d.rank) for d in decomposed_layers(new)]


def test_checkpoint_of_a_plain_model_has_no_recipe(tmp_path):
    path = save_checkpoint(tmp_path / "plain.pt", lenet())
    assert "decomposition" not in load_checkpoint(path).metadata


def test_recipe_replay_names_what_is_wrong():
    entry = {"form": "reconstructed", "method": "cp", "rank": 2, "precision": "fixed<8,1>", "scale": "per_factor"}
    rebuilt = apply_decomposition_recipe_(lenet(), {"fc1": entry})
    assert decomposition_recipe(rebuilt) == {"fc1": entry}
    with pytest.raises(ModelError, match=r"recipe layer 'fc9'.*did you mean .*fc1"):
        apply_decomposition_recipe_(lenet(), {"fc9": entry})
    with pytest.raises(ModelError, match="'fc1' is malformed"):
        apply_decomposition_recipe_(lenet(), {"fc1": {"method": "cp"}})
    with pytest.raises(ModelError, match="no weight"):
        apply_decomposition_recipe_(lenet(), {"relu1": entry})


# ------------------------------------------------------------------------------ the zoo


def test_resnet20_decomposes_quickly_and_keeps_its_output_shape():
    model = create("resnet20").eval()
    new, report = decompose_model(model, 0.3, method="cp3", n_iter_max=1)
    assert new(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert len(report.decomposed) == len(weighted_names(model)) - 2
    assert report.compression_ratio > 3
    specs = extract_layers(new, (3, 32, 32))
    assert [s.n_out for s in specs if s.has_weights] == [s.n_out for s in extract_layers(model, (3, 32, 32))
                                                         if s.has_weights]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "form"), [("vgg16", "reconstructed"), ("vgg19", "factorized"),
                                            ("resnet50", "reconstructed"), ("resnet50", "factorized")])
def test_large_zoo_models_go_through_decomposition(name, form):
    model = create(name).eval()
    new, report = decompose_model(model, 4, form=form, n_iter_max=1, solver_options={"init": "random"})
    with torch.no_grad():
        assert new.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert len(report.decomposed) == len(weighted_names(model)) - 2
    assert report.model_compression_ratio > 10
