"""Shapes, sizes and hls4ml-friendly structure of every built-in architecture."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

from tenfold.errors import ModelError
from tenfold.models import MLP, LeNet, ResNetCifar, create, list_models

# name -> (create kwargs, input shape without batch, number of classes)
CASES: dict[str, tuple[dict, tuple[int, ...], int]] = {
    "mlp": ({"in_features": 20}, (20,), 10),
    "jet_mlp": ({}, (16,), 5),
    "lenet": ({}, (1, 28, 28), 10),
    "resnet20": ({}, (3, 32, 32), 10),
    "resnet32": ({}, (3, 32, 32), 10),
    "resnet44": ({}, (3, 32, 32), 10),
    "resnet56": ({}, (3, 32, 32), 10),
    "resnet_cifar": ({"depth": 8}, (3, 32, 32), 10),
    "resnet50": ({"num_classes": 100}, (3, 32, 32), 100),
    "vgg16": ({}, (3, 32, 32), 10),
    "vgg19": ({}, (3, 32, 32), 10),
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def built() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: create(name, **kwargs).eval() for name, (kwargs, _, _) in CASES.items()}


def test_every_builtin_is_covered() -> None:
    assert set(CASES) == set(list_models())


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("batch", [1, 2])
def test_output_shape(built: dict[str, nn.Module], name: str, batch: int) -> None:
    _, shape, classes = CASES[name]
    with torch.no_grad():
        out = built[name](torch.randn(batch, *shape))
    assert out.shape == (batch, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("resnet20", 269_722), ("resnet32", 464_154), ("resnet44", 658_586), ("resnet56", 853_018)],
)
def test_cifar_resnet_parameter_counts(built: dict[str, nn.Module], name: str, expected: int) -> None:
    # He et al. 2016 quote 0.27M / 0.46M / 0.66M / 0.85M.
    assert n_params(built[name]) == expected


def test_jet_mlp_parameter_count(built: dict[str, nn.Module]) -> None:
    assert n_params(built["jet_mlp"]) == 16 * 64 + 64 + 64 * 32 + 32 + 32 * 32 + 32 + 32 * 5 + 5 == 4389


def test_large_model_parameter_counts(built: dict[str, nn.Module]) -> None:
    assert n_params(create("resnet50")) == pytest.approx(23.5e6, rel=0.01)
    assert n_params(built["vgg16"]) == pytest.approx(14.73e6, rel=0.01)
    assert n_params(built["vgg19"]) == pytest.approx(20.04e6, rel=0.01)


def test_jet_mlp_layers_match_hls4ml_model() -> None:
    model = create("jet-tagger")
    assert [name for name, _ in model.named_children()] == [
        "fc1", "relu1", "fc2", "relu2", "fc3", "relu3", "output",
    ]  # fmt: skip
    assert [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)] == [
        (16, 64), (64, 32), (32, 32), (32, 5),
    ]  # fmt: skip


def test_jet_mlp_on_digits_sized_input() -> None:
    model = create("jet_mlp", in_features=64, num_classes=10)
    assert model(torch.randn(3, 64)).shape == (3, 10)
    images = create("jet_mlp", in_features=64, num_classes=10, flatten=True)
    assert images(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_mlp_flattens_images_and_options() -> None:
    model = create("mlp", in_features=784, hidden=[128], num_classes=10, activation="tanh")
    assert isinstance(model, MLP) and isinstance(model[0], nn.Flatten)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert any(isinstance(m, nn.Tanh) for m in model.modules())
    linear = create("mlp", in_features=5, hidden=(), num_classes=3, flatten=False)
    assert [type(m) for m in linear.children()] == [nn.Linear]


@pytest.mark.parametrize(
    ("kwargs", "shape", "flat"),
    [
        ({}, (1, 28, 28), 16 * 5 * 5),
        ({"image_size": 8}, (1, 8, 8), 16 * 2 * 2),
        ({"image_size": 4}, (1, 4, 4), 16 * 1 * 1),
        ({"image_size": 32, "in_channels": 3}, (3, 32, 32), 16 * 6 * 6),
        ({"image_size": (28, 12)}, (1, 28, 12), 16 * 5 * 1),
    ],
)
def test_lenet_sizes(kwargs: dict, shape: tuple[int, ...], flat: int) -> None:
    model = create("lenet", **kwargs)
    assert isinstance(model, LeNet)
    assert model.flat_features == flat
    assert model.fc1.in_features == flat
    assert model(torch.randn(2, *shape)).shape == (2, 10)


def test_lenet_classic_parameter_count() -> None:
    # conv 6·25+6, conv 16·6·25+16, fc 400·120+120, 120·84+84, 84·10+10
    assert n_params(create("lenet")) == 156 + 2416 + 48120 + 10164 + 850


@pytest.mark.parametrize("name", ["resnet20", "resnet50"])
def test_resnets_accept_other_image_sizes(name: str) -> None:
    model = create(name, image_size=16, num_classes=4).eval()
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 4)


def test_cifar_resnet_parameter_names_match_public_checkpoints(built: dict[str, nn.Module]) -> None:
    keys = list(built["resnet20"].state_dict())
    assert keys[:2] == ["conv1.weight", "bn1.weight"]
    assert "layer3.2.bn2.running_var" in keys and keys[-2:] == ["linear.weight", "linear.bias"]
    assert not any("shortcut" in k for k in keys)  # option A has no parameters


def test_option_a_shortcut_pads_channels_symmetrically() -> None:
    model = create("resnet20")
    assert model.layer1[0].shortcut is None and model.layer2[1].shortcut is None  # plain identity
    x = torch.randn(1, 16, 8, 8)
    out = model.layer2[0].shortcut(x)
    assert out.shape == (1, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()


@pytest.mark.parametrize("name", sorted(CASES))
def test_hls4ml_friendly_structure(built: dict[str, nn.Module], name: str) -> None:
    model = built[name]
    kinds = {type(m) for m in model.modules()}
    # hls4ml has no converter for these; identity shortcuts are plain additions instead.
    assert nn.Identity not in kinds and nn.AdaptiveAvgPool2d not in kinds
    if name not in ("mlp",):
        assert nn.ReLU in kinds
    traced = torch.fx.symbolic_trace(model)  # hls4ml's PyTorch front end traces with torch.fx
    functional_relus = [n for n in traced.graph.nodes if n.op == "call_function" and "relu" in str(n.target)]
    assert not functional_relus


@pytest.mark.parametrize("name", ["resnet20", "lenet", "jet_mlp"])
def test_models_pickle_and_deepcopy(built: dict[str, nn.Module], name: str) -> None:
    model = built[name]
    x = torch.randn(2, *CASES[name][1])
    clone = pickle.loads(pickle.dumps(model))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        assert torch.equal(clone(x), model(x)) and torch.equal(twin(x), model(x))
    assert clone.tenfold_spec == model.tenfold_spec


@pytest.mark.parametrize(
    ("name", "kwargs", "argument"),
    [
        ("mlp", {"in_features": 0}, "in_features"),
        ("mlp", {"in_features": 4, "hidden": (8, -1)}, "hidden[1]"),
        ("mlp", {"in_features": 4, "hidden": 8}, "hidden"),
        ("mlp", {"in_features": 4.5}, "in_features"),
        ("mlp", {"in_features": 4, "activation": "gelu"}, "activation"),
        ("jet_mlp", {"num_classes": True}, "num_classes"),
        ("lenet", {"image_size": 3}, "image_size"),
        ("lenet", {"image_size": (28, 28, 1)}, "image_size"),
        ("resnet_cifar", {"depth": 21}, "depth"),
        ("resnet20", {"num_classes": 0}, "num_classes"),
        ("resnet50", {"in_channels": "3"}, "in_channels"),
        ("vgg16", {"num_classes": -1}, "num_classes"),
    ],
)
def test_bad_arguments_name_the_argument(name: str, kwargs: dict, argument: str) -> None:
    with pytest.raises(ModelError, match=f"'{argument}'".replace("[", r"\[").replace("]", r"\]")):
        create(name, **kwargs)


def test_resnet_cifar_generic_depth() -> None:
    model = create("resnet_cifar", depth=110)
    assert isinstance(model, ResNetCifar) and len(model.layer1) == 18
    assert n_params(model) == pytest.approx(1.7e6, rel=0.02)


@pytest.mark.parametrize(
    ("name", "kwargs", "input_shape"),
    [("jet_mlp", {}, (16,)), ("lenet", {"image_size": 8}, (1, 8, 8)), ("resnet50", {"image_size": 8}, (3, 8, 8))],
)
def test_hls4ml_front_end_converts(tmp_path, name: str, kwargs: dict, input_shape: tuple[int, ...]) -> None:
    """hls4ml's PyTorch converter accepts the models (graph building only: no HLS tools needed)."""
    hls4ml = pytest.importorskip("hls4ml")
    model = create(name, **kwargs).eval()
    config = hls4ml.utils.config_from_pytorch_model(
        model, input_shape=input_shape, granularity="name", backend="Vivado"
    )
    graph = hls4ml.converters.convert_from_pytorch_model(
        model, hls_config=config, output_dir=str(tmp_path / "prj"), backend="Vivado", io_type="io_stream"
    )
    weighted = {n.replace(".", "_") for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}
    assert weighted <= {layer.name for layer in graph.get_layers()}
