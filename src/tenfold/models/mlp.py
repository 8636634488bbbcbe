"""Fully connected networks, including the hls4ml LHC jet-tagging MLP (16-64-32-32-5, ReLU).

The model is a flat ``nn.Sequential`` of named layers (``[flatten,] fc1, relu1, ..., output``) because
that is what hls4ml's PyTorch front end and tenfold's pruning passes handle most directly: every
Linear is followed by its activation, with no functional calls hidden in ``forward``.

The leading ``nn.Flatten`` (so (N, C, H, W) images can be fed) is optional: hls4ml 1.3's PyTorch
converter crashes on a Flatten of input that is already flat (IndexError in its channels-last pass),
so ``jet_mlp`` — flat features by definition, and the model most often exported — leaves it out by
default, while the generic ``mlp`` includes it by default.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from tenfold.errors import ModelError
from tenfold.models._checks import int_tuple, positive_int
from tenfold.models.registry import register

__all__ = ["ACTIVATIONS", "MLP", "jet_mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
"""Activations hls4ml implements natively for Dense layers."""


@register("mlp", description="Multi-layer perceptron: flatten, then Linear+activation per hidden width")
class MLP(nn.Sequential):
    """Multi-layer perceptron returning logits (no softmax: pair it with ``CrossEntropyLoss``).

    With ``flatten=True`` an ``nn.Flatten`` is the first layer, so (N, C, H, W) images work as well as
    flat (N, in_features) rows; use ``flatten=False`` for flat features that go to hls4ml (see the
    module note). Layers are named ``fc1, relu1, fc2, relu2, ..., output`` like the Keras
    jet-tagging model in the hls4ml tutorial.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (64, 32, 32),
        num_classes: int = 10,
        activation: str = "relu",
        flatten: bool = True,
    ) -> None:
        in_features = positive_int("mlp", "in_features", in_features)
        widths = int_tuple("mlp", "hidden", hidden)
        num_classes = positive_int("mlp", "num_classes", num_classes)
        if activation not in ACTIVATIONS:
            raise ModelError(f"mlp: argument 'activation' must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if not isinstance(flatten, bool):
            raise ModelError(f"mlp: argument 'flatten' must be True or False, got {flatten!r}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if flatten:
            layers["flatten"] = nn.Flatten()
        prev = in_features
        for i, width in enumerate(widths, start=1):
            layers[f"fc{i}"] = nn.Linear(prev, width)
            layers[f"{activation}{i}"] = ACTIVATIONS[activation]()
            prev = width
        layers["output"] = nn.Linear(prev, num_classes)
        super().__init__(layers)
        self.in_features = in_features
        self.hidden = widths
        self.num_classes = num_classes
        self.activation = activation
        self.flatten_input = flatten


@register(
    "jet_mlp",
    aliases=("jet-tagger", "jet_tagger"),
    description="hls4ml LHC jet-tagging MLP 16-64-32-32-5 with ReLU (in/out sizes overridable)",
)
def jet_mlp(in_features: int = 16, num_classes: int = 5, flatten: bool = False) -> MLP:
    """The hls4ml jet-tagging benchmark architecture (4,389 parameters at 16 inputs / 5 classes).

    ``in_features``/``num_classes`` can be changed so the same architecture runs on data that is
    available offline (e.g. 64 inputs / 10 classes for scikit-learn's 8×8 digits, fed as (N, 64)).
    No Flatten layer by default, exactly like the hls4ml model; ``flatten=True`` accepts images.
    """
    return MLP(in_features, hidden=(64, 32, 32), num_classes=num_classes, activation="relu", flatten=flatten)
