"""Input validation shared by the decompositions, so every entry point fails early with a message that says
what to fix instead of returning NaN factors from deep inside a solver."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tenfold.errors import ConfigError, ModelError

_FLOATS = (torch.float32, torch.float64)


def as_float_tensor(tensor: Any, *, dtype: torch.dtype | None = None, min_ndim: int = 2,
                    what: str = "tensor") -> torch.Tensor:
    """A detached, contiguous CPU float32/float64 copy-or-view of ``tensor`` after checking it is finite.

    ``dtype=None`` keeps float32/float64 and turns anything else (ints, float16, bfloat16) into float32.
    """
    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(tensor))
    if not isinstance(tensor, torch.Tensor):
        raise ModelError(f"{what} must be a torch.Tensor or numpy array, got {type(tensor).__name__}")
    if tensor.is_complex():
        raise ModelError(f"{what} is complex ({tensor.dtype}); decompositions here are for real weights")
    if dtype is not None and dtype not in _FLOATS:
        raise ConfigError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if dtype is None:
        dtype = tensor.dtype if tensor.dtype in _FLOATS else torch.float32
    if tensor.ndim < min_ndim:
        raise ModelError(
            f"{what} has {tensor.ndim} dimension(s) (shape {tuple(tensor.shape)}); need at least {min_ndim}. "
            "Pass a weight matrix (out, in) or a convolution kernel (out, in, kh, kw)"
        )
    if any(size == 0 for size in tensor.shape):
        raise ModelError(f"{what} is empty (shape {tuple(tensor.shape)}); there is nothing to decompose")
    out = tensor.detach().to("cpu", dtype).contiguous()
    finite = torch.isfinite(out)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(out).sum())
        n_inf = int(out.numel() - finite.sum() - n_nan)
        raise ModelError(
            f"{what} contains NaN or inf values ({n_nan} NaN, {n_inf} inf of {out.numel()}); "
            "the layer was probably trained with a diverging loss: fix or reload the weights before decomposing"
        )
    return out


def check_int(value: Any, name: str, *, minimum: int = 0) -> int:
    """An int (not bool) >= minimum, or ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_tol(value: Any, name: str = "tol") -> float:
    """A finite float >= 0."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


def max_cp_rank(shape: Sequence[int]) -> int:
    """Any tensor of this shape is exactly a CP tensor of at most this rank (numel / largest mode)."""
    return math.prod(shape) // max(shape)


def check_cp_rank(rank: Any, shape: Sequence[int]) -> int:
    """A CP rank in 1..max_cp_rank(shape); beyond that the decomposition only adds parameters."""
    if isinstance(rank, bool) or not isinstance(rank, int | np.integer):
        raise ConfigError(f"CP rank must be a positive integer, got {rank!r}")
    rank = int(rank)
    if rank < 1:
        raise ConfigError(f"CP rank must be >= 1, got {rank}; rank is the number of rank-one terms to keep")
    bound = max_cp_rank(shape)
    if rank > bound:
        raise ConfigError(
            f"CP rank {rank} is larger than sensible for shape {tuple(shape)}: every tensor of that shape is "
            f"exactly a sum of at most {bound} rank-one terms (numel / largest mode); use rank <= {bound}"
        )
    return rank


def check_tucker_ranks(ranks: Any, shape: Sequence[int]) -> list[int | None]:
    """Per-mode Tucker ranks: an int (all modes) or a sequence with an int or None (mode kept whole) per mode."""
    ndim = len(shape)
    if isinstance(ranks, int | np.integer) and not isinstance(ranks, bool):
        ranks = [int(ranks)] * ndim
    if not isinstance(ranks, Sequence) or isinstance(ranks, str):
        raise ConfigError(f"Tucker ranks must be an int or a sequence of {ndim} ints/None, got {ranks!r}")
    if len(ranks) != ndim:
        raise ConfigError(
            f"Tucker ranks {tuple(ranks)} has {len(ranks)} entries but the tensor has {ndim} modes "
            f"(shape {tuple(shape)}); give one rank per mode, None to leave a mode undecomposed"
        )
    out: list[int | None] = []
    for mode, (rank, size) in enumerate(zip(ranks, shape, strict=True)):
        if rank is None:
            out.append(None)
            continue
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer) or rank < 1:
            raise ConfigError(f"Tucker rank of mode {mode} must be an integer >= 1 or None, got {rank!r}")
        if rank > size:
            raise ConfigError(
                f"Tucker rank {rank} of mode {mode} exceeds that mode's size {size} (shape {tuple(shape)}); "
                f"use a rank <= {size}"
            )
        out.append(int(rank))
    if all(rank is None for rank in out):
        raise ConfigError("Tucker ranks are all None: at least one mode must be decomposed")
    return out
