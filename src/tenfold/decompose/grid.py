"""The fixed-point grid of trainable factors, with a straight-through estimator.

A decomposed layer keeps float "latent" factors as ``nn.Parameter``s so an ordinary optimizer can fine-tune
them, but its forward pass uses their nearest grid values, exactly as the chip would store them. Rounding
has a zero gradient almost everywhere, so the backward pass treats it as the identity (straight-through).

The grid is quantized.py's: value = code · lsb · 2^s with a power-of-two exponent s per factor
(``"per_factor"``), per rank-one component (``"per_component_pow2"``) or none, s being the smallest
exponent for which the largest magnitude fits the type. Grid values are fixed points of the projection,
so a factor that came out of :func:`~tenfold.decompose.quantized_cp_als` passes through unchanged and
fine-tuning never takes the forward pass off the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tenfold.decompose.quantized import _check_scale, as_precision, grid_exponents, project_to_grid
from tenfold.errors import ConfigError
from tenfold.hardware.fixed_point import FixedPoint

__all__ = ["FactorGrid", "as_factor_grid"]


class _StraightThrough(torch.autograd.Function):
    """Forward: the given grid values; backward: the gradient of the identity."""

    @staticmethod
    def forward(ctx, latent: torch.Tensor, snapped: torch.Tensor) -> torch.Tensor:
        return snapped

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


@dataclass(frozen=True)
class FactorGrid:
    """A fixed-point type plus the power-of-two scaling rule of a factor."""

    precision: FixedPoint
    scale: str = "per_factor"

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", as_precision(self.precision))
        object.__setattr__(self, "scale", _check_scale(self.scale))

    def for_whole_tensor(self) -> FactorGrid:
        """The grid of a tensor without rank-one components (a Tucker core): one exponent for all of it."""
        return self if self.scale != "per_component_pow2" else FactorGrid(self.precision, "per_factor")

    def project(self, values: torch.Tensor, component_dim: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Nearest grid values, exponents and integer codes of ``values`` (no gradient).

        ``component_dim`` is the axis that indexes rank-one components (the columns of an (I, R) factor are
        ``component_dim=1``); it is required for ``"per_component_pow2"``, whose exponents have that
        axis's length. Exponents have shape () otherwise.
        """
        if self.scale != "per_component_pow2":
            return project_to_grid(values.detach(), self.precision, self.scale)
        if component_dim is None:
            raise ConfigError("per_component_pow2 scaling needs the component axis of the factor")
        moved = values.detach().movedim(component_dim, -1)
        snapped, exps, codes = project_to_grid(moved.reshape(-1, moved.shape[-1]), self.precision, self.scale)
        return (snapped.reshape(moved.shape).movedim(-1, component_dim), exps,
                codes.reshape(moved.shape).movedim(-1, component_dim))

    def snap(self, latent: torch.Tensor, component_dim: int | None = None) -> torch.Tensor:
        """Grid values of ``latent`` in the forward pass, identity gradient in the backward pass."""
        snapped = self.project(latent, component_dim)[0]
        return _StraightThrough.apply(latent, snapped)

    def exponents(self, values: torch.Tensor, component_dim: int | None = None) -> torch.Tensor:
        """The power-of-two exponents the grid uses for ``values``."""
        if self.scale != "per_component_pow2":
            return grid_exponents(values, self.precision, self.scale)
        return self.project(values, component_dim)[1]

    def to_dict(self) -> dict[str, str]:
        return {"precision": self.precision.to_hls4ml(), "scale": self.scale}


def as_factor_grid(precision: FixedPoint | str | int | None, scale: str = "per_factor") -> FactorGrid | None:
    """A grid from a FixedPoint, a string such as ``"fixed<8,1>"``, a bit width (→ ``fixed<bits,1>``), or None
    for float factors. With power-of-two scaling only the width matters; the integer bits just shift the grid.
    """
    if precision is None:
        _check_scale(scale)
        return None
    if isinstance(precision, bool):
        raise ConfigError(f'precision must be a bit width, a FixedPoint or a string like "fixed<8,1>"; '
                          f"got {precision!r}")
    if isinstance(precision, int):
        if precision < 2:
            raise ConfigError(f"a factor precision needs at least 2 bits (sign + magnitude); got {precision}")
        precision = FixedPoint(precision, 1)
    return FactorGrid(as_precision(precision), scale)
