"""Argument checks shared by the model constructors, so bad sizes fail with a ModelError naming the argument."""

from __future__ import annotations

from typing import Any

from tenfold.errors import ModelError


def positive_int(model: str, arg: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``; ``ModelError`` naming ``arg`` otherwise."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):  # ints and numpy integers, not floats
        raise ModelError(f"{model}: argument {arg!r} must be an integer, got {value!r}")
    if value.__index__() < minimum:
        raise ModelError(f"{model}: argument {arg!r} must be >= {minimum}, got {value!r}")
    return value.__index__()


def int_tuple(model: str, arg: str, value: Any) -> tuple[int, ...]:
    """A sequence of positive ints (e.g. hidden widths) as a tuple; ``ModelError`` naming ``arg`` otherwise."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ModelError(f"{model}: argument {arg!r} must be a sequence of integers, got {value!r}")
    return tuple(positive_int(model, f"{arg}[{i}]", v) for i, v in enumerate(value))
