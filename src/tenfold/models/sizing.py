"""Fit a zoo architecture's input and output size to a dataset (e.g. the jet-tagger MLP on 8×8 digits)."""

from __future__ import annotations

import math
from typing import Any

from tenfold.errors import ModelError


def kwargs_for_data(name: str, input_shape: tuple[int, ...], num_classes: int) -> dict[str, Any]:
    """Constructor arguments that make zoo model `name` accept `input_shape` samples and emit `num_classes`."""
    shape = tuple(int(d) for d in input_shape)
    key = name.lower().replace("-", "_")
    if key in {"mlp", "jet_mlp", "jet_tagger"}:
        return {"in_features": math.prod(shape), "num_classes": num_classes, "flatten": len(shape) > 1}
    if key == "lenet":
        if len(shape) != 3:
            raise ModelError(f"lenet needs image data (C, H, W); the dataset gives samples of shape {shape}")
        return {"in_channels": shape[0], "image_size": shape[1], "num_classes": num_classes}
    if key.startswith("resnet") and len(shape) == 3:
        return {"num_classes": num_classes, "in_channels": shape[0], "image_size": shape[1]}
    if key.startswith("vgg") and len(shape) == 3:
        return {"num_classes": num_classes, "in_channels": shape[0]}
    return {"num_classes": num_classes}


def default_input_shape(model: Any) -> tuple[int, ...] | None:
    """The per-sample input shape a zoo model was built for, or None when it cannot tell."""
    if hasattr(model, "in_features"):  # MLPs take flat rows (a leading Flatten also accepts them)
        return (int(model.in_features),)
    if hasattr(model, "in_channels"):
        return (int(model.in_channels), int(getattr(model, "image_size", 32)), int(getattr(model, "image_size", 32)))
    return None
