"""Registry: names, aliases, user registration, errors and the model_spec round trip."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import tenfold.models as models
from tenfold.errors import ModelError, TenfoldError
from tenfold.models import create, list_models, model_spec, register, unregister

BUILTINS = {
    "mlp", "jet_mlp", "lenet", "resnet20", "resnet32", "resnet44", "resnet56", "resnet_cifar",
    "resnet50", "vgg16", "vgg19",
}  # fmt: skip


@pytest.fixture
def user_model() -> Iterator[str]:
    """Register a tiny user architecture for one test and remove it afterwards."""

    @register("tiny_user_net", aliases=("tiny",), description="test-only model")
    class TinyUserNet(nn.Module):
        def __init__(self, width: int = 4, *, bias: bool = True) -> None:
            super().__init__()
            self.fc = nn.Linear(3, width, bias=bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    yield "tiny_user_net"
    unregister("tiny_user_net")


def test_list_models_is_sorted_canonical_names() -> None:
    names = list_models()
    assert names == sorted(names) and set(names) == BUILTINS
    assert {"jet-tagger", "jet_tagger"} <= set(list_models(include_aliases=True))
    assert set(models.describe_models()) == BUILTINS and all(models.describe_models().values())


@pytest.mark.parametrize("alias", ["jet-tagger", "jet_tagger", "JET_MLP", " Jet-Tagger "])
def test_aliases_resolve_to_canonical_name(alias: str) -> None:
    model = create(alias)
    assert model_spec(model)["name"] == "jet_mlp"
    assert model(torch.zeros(1, 16)).shape == (1, 5)


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(ModelError) as info:
        create("resnet18")
    message = str(info.value)
    assert "resnet18" in message and all(name in message for name in BUILTINS)
    assert "Did you mean" in message
    assert isinstance(info.value, TenfoldError)


def test_unknown_argument_is_named() -> None:
    with pytest.raises(ModelError, match=r"'num_class'.*did you mean 'num_classes'"):
        create("resnet20", num_class=100)
    with pytest.raises(ModelError, match="'in_features'"):
        create("mlp")  # required argument missing


def test_register_user_model(user_model: str) -> None:
    assert user_model in list_models()
    model = create("tiny", width=7, bias=False)
    assert model.fc.out_features == 7 and model.fc.bias is None
    assert model_spec(model) == {"name": "tiny_user_net", "kwargs": {"width": 7, "bias": False}}
    twin = create(**model_spec(model))
    assert type(twin) is type(model) and twin.fc.out_features == 7


def test_register_function_factory_and_duplicates() -> None:
    @register("two_layer_test")
    def two_layer(hidden: int = 8) -> nn.Sequential:
        return nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    try:
        assert create("two_layer_test", hidden=3)[0].out_features == 3
        with pytest.raises(ModelError, match="already registered"):
            register("Two_Layer_Test")(two_layer)
        with pytest.raises(ModelError, match="already registered"):
            register("fresh_name", aliases=("jet-tagger",))(two_layer)
        register("two_layer_test", overwrite=True)(lambda: nn.Linear(1, 1))
        assert isinstance(create("two_layer_test"), nn.Linear)
    finally:
        unregister("two_layer_test")
    assert "two_layer_test" not in list_models()
    assert "fresh_name" not in list_models()


def test_spec_round_trip_with_var_keyword_factory() -> None:
    @register("var_kw_test")
    def var_kw(width: int = 2, **extra: object) -> nn.Module:
        model = nn.Linear(1, width)
        model.extra = dict(extra)
        return model

    try:
        model = create("var_kw_test", width=3, flavour="x")
        assert model_spec(model) == {"name": "var_kw_test", "kwargs": {"width": 3, "flavour": "x"}}
        twin = create(**model_spec(model))
        assert twin.out_features == 3 and twin.extra == {"flavour": "x"}
    finally:
        unregister("var_kw_test")


def test_register_rejects_bad_input() -> None:
    with pytest.raises(ModelError):
        register("")
    with pytest.raises(ModelError):
        register("x", aliases=("",))
    register("returns_tensor_test")(lambda: torch.zeros(1))
    try:
        with pytest.raises(ModelError, match=r"not a torch\.nn\.Module"):
            create("returns_tensor_test")
    finally:
        unregister("returns_tensor_test")


def test_constructor_type_errors_become_model_errors() -> None:
    @register("fragile_test")
    def fragile(n: int = 1) -> nn.Module:
        return nn.Linear(n, "x")  # type: ignore[arg-type]

    try:
        with pytest.raises(ModelError, match="fragile_test"):
            create("fragile_test")
    finally:
        unregister("fragile_test")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("mlp", {"in_features": 12, "hidden": (9, 5), "num_classes": 3, "activation": "sigmoid"}),
        ("jet_mlp", {"in_features": 64, "num_classes": 10}),
        ("lenet", {"image_size": 8, "num_classes": 4}),
        ("resnet32", {"num_classes": 100}),
        ("resnet_cifar", {"depth": 14}),
        ("vgg19", {"num_classes": 7}),
    ],
)
def test_model_spec_round_trip(name: str, kwargs: dict) -> None:
    model = create(name, **kwargs)
    spec = model_spec(model)
    assert spec["name"] == name
    assert json.loads(json.dumps(spec)) == spec  # JSON-friendly, tuples stored as lists
    for rebuilt in (create(**spec), create(spec["name"], **spec["kwargs"]), create(**json.loads(json.dumps(spec)))):
        assert str(rebuilt) == str(model)
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()
        }
        assert model_spec(rebuilt) == spec


def test_model_spec_is_complete_and_a_copy() -> None:
    model = create("resnet20")
    spec = model_spec(model)
    assert spec == {"name": "resnet20", "kwargs": {"num_classes": 10, "in_channels": 3, "image_size": 32}}
    spec["kwargs"]["num_classes"] = 3
    assert model_spec(model)["kwargs"]["num_classes"] == 10
    assert create(**spec).linear.out_features == 3


def test_model_spec_of_foreign_module() -> None:
    with pytest.raises(ModelError, match=r"not built by tenfold\.models\.create"):
        model_spec(nn.Linear(2, 2))
