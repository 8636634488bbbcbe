"""Tucker decompositions: HOOI, a quantized variant, and Tucker-2 for convolution kernels.

Tucker-2 (decompose only the output and input channel modes of a conv kernel) is the usual alternative when
CP degenerates: it becomes 1x1 conv → small kh x kw conv → 1x1 conv and is always well posed, because the
HOOI factors are orthonormal and the core is a projection of the kernel.

A mode whose rank is None is kept whole: its factor is None (identity) and it is not counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from tenfold.decompose._checks import as_float_tensor, check_int, check_tol, check_tucker_ranks
from tenfold.decompose.cp import _PARALLEL_WORK, solve_normal, torch_threads
from tenfold.decompose.init import leading_left_singular_vectors, orthonormal_padding, unfold
from tenfold.decompose.quantized import (
    _check_scale,
    as_precision,
    grid_exponents,
    project_error_feedback,
    project_to_grid,
)
from tenfold.errors import ConfigError, ModelError
from tenfold.hardware.fixed_point import FixedPoint

__all__ = [
    "QuantizedTuckerResult",
    "TuckerResult",
    "TuckerTensor",
    "mode_product",
    "quantized_tucker",
    "tucker2",
    "tucker_hooi",
]


def mode_product(tensor: torch.Tensor, matrix: torch.Tensor, mode: int, *, transpose: bool = False) -> torch.Tensor:
    """``tensor ×_mode matrix`` (matrix is J x I_mode), or with ``matrixᵀ`` when ``transpose`` (matrix I x J)."""
    mat = matrix.T if transpose else matrix
    out = torch.tensordot(mat, tensor, dims=([1], [mode]))
    return out.movedim(0, mode)


@dataclass
class TuckerTensor:
    """W ≈ core ×_0 U_0 ×_1 U_1 ... ; a None factor leaves that mode as it is in the core."""

    core: torch.Tensor
    factors: list[torch.Tensor | None]

    def __post_init__(self) -> None:
        if len(self.factors) != self.core.ndim:
            raise ModelError(f"Tucker core has {self.core.ndim} modes but {len(self.factors)} factors were given")
        for n, factor in enumerate(self.factors):
            if factor is not None and (factor.ndim != 2 or factor.shape[1] != self.core.shape[n]):
                raise ModelError(
                    f"Tucker factor {n} has shape {tuple(factor.shape)}; expected (I_{n}, {self.core.shape[n]})"
                )

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.core.shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(f.shape[0]) if f is not None else int(self.core.shape[n]) for n, f in enumerate(self.factors))

    def n_parameters(self) -> int:
        """Core entries plus factor entries."""
        return self.core.numel() + sum(f.numel() for f in self.factors if f is not None)

    def to_tensor(self) -> torch.Tensor:
        out = self.core
        for n, factor in enumerate(self.factors):
            if factor is not None:
                out = mode_product(out, factor, n)
        return out


@dataclass
class TuckerResult:
    """Outcome of a Tucker fit."""

    tucker: TuckerTensor
    relative_error: float
    iterations: int
    converged: bool
    errors: list[float] = field(repr=False)
    seconds: float


@dataclass
class QuantizedTuckerResult(TuckerResult):
    """Tucker decomposition in fixed point: factors and core are codes · lsb · 2^scale.

    ``scales`` / ``codes`` hold one entry per mode (None for undecomposed modes) followed by the core's.
    """

    precision: FixedPoint
    scale: str
    scales: list[torch.Tensor | None]
    codes: list[torch.Tensor | None] = field(repr=False)
    float_error: float = math.nan

    def factors_on_grid(self) -> bool:
        """True when every factor and the core divided by 2^scale are values of ``precision``."""
        parts = [*self.tucker.factors, self.tucker.core]
        for part, exps, codes in zip(parts, self.scales, self.codes, strict=True):
            if part is None:
                continue
            scaled = torch.ldexp(part.double(), -exps)
            if not bool(torch.as_tensor(self.precision.is_representable(scaled)).all()):
                return False
            if not torch.equal(torch.as_tensor(self.precision.to_integer(scaled)), codes):
                return False
        return True


def _project_all(tensor: torch.Tensor, factors: list[torch.Tensor | None], skip: int | None = None) -> torch.Tensor:
    """``tensor ×_m U_mᵀ`` for every decomposed mode m except ``skip``, largest reductions first."""
    order = [m for m, f in enumerate(factors) if f is not None and m != skip]
    order.sort(key=lambda m: factors[m].shape[1] / factors[m].shape[0])  # type: ignore[union-attr]
    out = tensor
    for m in order:
        out = mode_product(out, factors[m], m, transpose=True)  # type: ignore[arg-type]
    return out


def _leading_subspace(matrix: torch.Tensor, rank: int, generator: torch.Generator) -> torch.Tensor:
    vectors, _ = leading_left_singular_vectors(matrix, rank)
    return orthonormal_padding(vectors, rank, generator).contiguous()


def _hooi(data: torch.Tensor, ranks: list[int | None], n_iter_max: int, tol: float,
          generator: torch.Generator) -> tuple[list[torch.Tensor | None], torch.Tensor, list[float], int, bool]:
    norm_sq = float(data.double().square().sum())
    modes = [n for n, r in enumerate(ranks) if r is not None]
    factors: list[torch.Tensor | None] = [None] * data.ndim
    for n in modes:  # HOSVD start
        factors[n] = _leading_subspace(unfold(data, n), ranks[n], generator)  # type: ignore[arg-type]
    errors: list[float] = []
    converged = False
    iteration = 0
    core = _project_all(data, factors)
    if norm_sq == 0:
        return factors, core, errors, 0, True
    for iteration in range(1, n_iter_max + 1):  # noqa: B007
        for n in modes:
            partial = _project_all(data, factors, skip=n)
            factors[n] = _leading_subspace(unfold(partial, n), ranks[n], generator)  # type: ignore[arg-type]
        core = mode_product(partial, factors[modes[-1]], modes[-1], transpose=True)  # type: ignore[arg-type]
        errors.append(math.sqrt(max(norm_sq - float(core.double().square().sum()), 0.0) / norm_sq))
        if tol > 0 and len(errors) >= 2 and abs(errors[-2] - errors[-1]) < tol:
            converged = True
            break
    return factors, core, errors, iteration, converged


def _threads_for(data: torch.Tensor, ranks: list[int | None]) -> int:
    """torch's thread count for big problems, one thread for small ones (see cp._PARALLEL_WORK)."""
    work = data.numel() * max(r for r in ranks if r is not None)
    return torch.get_num_threads() if work >= _PARALLEL_WORK else 1


def _relative_error(data: torch.Tensor, tucker: TuckerTensor) -> float:
    norm = float(data.double().norm())
    if norm == 0:
        return 0.0 if float(tucker.core.abs().sum()) == 0 else math.inf
    return float((data - tucker.to_tensor()).double().norm()) / norm


def tucker_hooi(tensor: torch.Tensor, ranks: int | list[int | None] | tuple[int | None, ...], *,
                n_iter_max: int = 50, tol: float = 1e-6, seed: int = 0,
                dtype: torch.dtype | None = None) -> TuckerResult:
    """Tucker decomposition by higher-order orthogonal iteration (HOSVD start, orthonormal factors).

    ``ranks``: one int for all modes, or one int/None per mode (None keeps the mode whole). Stops after
    ``n_iter_max`` sweeps or when the relative error changes by less than ``tol``.
    """
    start = time.perf_counter()
    data = as_float_tensor(tensor, dtype=dtype, min_ndim=2)
    ranks = check_tucker_ranks(ranks, data.shape)
    n_iter_max = check_int(n_iter_max, "n_iter_max", minimum=0)
    tol = check_tol(tol)
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=-(2**62)))
    with torch_threads(_threads_for(data, ranks)):
        factors, core, errors, iterations, converged = _hooi(data, ranks, n_iter_max, tol, generator)
        tucker = TuckerTensor(core, factors)
        error = _relative_error(data, tucker)
    return TuckerResult(tucker, error, iterations, converged, errors, time.perf_counter() - start)


def tucker2(weight_conv: torch.Tensor, ranks: tuple[int, int], **kwargs) -> TuckerResult:
    """Tucker-2 of a layer weight (O, I, ...): decompose only the output and input channel modes.

    Gives U_out (O x r_out), a core (r_out, r_in, kh, kw) and U_in (I x r_in); ``kwargs`` go to
    :func:`tucker_hooi`.
    """
    if not isinstance(weight_conv, torch.Tensor) or weight_conv.ndim < 2:
        shape = tuple(weight_conv.shape) if isinstance(weight_conv, torch.Tensor) else type(weight_conv).__name__
        raise ModelError(f"tucker2 needs a weight of shape (out, in, ...), got {shape}")
    if not isinstance(ranks, tuple | list) or len(ranks) != 2:
        raise ModelError(f"tucker2 ranks must be (r_out, r_in), got {ranks!r}")
    full = [ranks[0], ranks[1]] + [None] * (weight_conv.ndim - 2)
    return tucker_hooi(weight_conv, full, **kwargs)


def quantized_tucker(tensor: torch.Tensor, ranks: int | list[int | None] | tuple[int | None, ...],
                     precision: FixedPoint | str, *, scale: str = "per_factor", n_iter_max: int = 30,
                     tol: float = 1e-6, hooi_iter: int = 20, seed: int = 0, keep_best: bool = True,
                     ridge: float = 0.0, rounding: str = "feedback", dtype: torch.dtype | None = None
                     ) -> QuantizedTuckerResult:
    """Tucker decomposition whose factors and core lie on the fixed-point grid.

    Starts from HOOI (``hooi_iter`` sweeps), rounds, then alternates least squares with projection: each
    factor is solved given the quantized core and the other quantized factors and projected at once; the
    core is then solved given the quantized factors (via their Gram inverses) and projected with one
    power-of-two scale. Factor scales follow ``scale`` ("per_component_pow2" = one exponent per column).
    The iterate with the lowest quantized error is kept when ``keep_best``. ``rounding="feedback"`` rounds
    factors by error feedback in the metric of their least-squares loss, "nearest" entry by entry; the core
    is rounded to nearest.
    """
    start = time.perf_counter()
    data = as_float_tensor(tensor, dtype=dtype, min_ndim=2)
    precision = as_precision(precision)
    scale = _check_scale(scale)
    ranks = check_tucker_ranks(ranks, data.shape)
    n_iter_max = check_int(n_iter_max, "n_iter_max", minimum=0)
    hooi_iter = check_int(hooi_iter, "hooi_iter", minimum=0)
    tol = check_tol(tol)
    ridge = check_tol(ridge, "ridge")
    if rounding not in ("feedback", "nearest"):
        raise ConfigError(f'rounding must be "feedback" or "nearest", got {rounding!r}')
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=-(2**62)))
    modes = [n for n, r in enumerate(ranks) if r is not None]
    norm_sq = float(data.double().square().sum())
    core_scale = "none" if scale == "none" else "per_factor"

    with torch_threads(_threads_for(data, ranks)):
        float_factors, float_core, _, _, _ = _hooi(data, ranks, hooi_iter, 0.0, generator)
        float_error = _relative_error(data, TuckerTensor(float_core, float_factors))

        def project_factor(factor: torch.Tensor, metric: torch.Tensor | None = None) -> torch.Tensor:
            if metric is None or rounding == "nearest":
                return project_to_grid(factor, precision, scale)[0]
            return project_error_feedback(factor, metric, precision, scale)

        factors: list[torch.Tensor | None] = [project_factor(f) if f is not None else None for f in float_factors]

        def solve_core(factors: list[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor, float]:
            """Least-squares core for the given factors, projected; returns it, Tᵀ-projection and the error."""
            projected = _project_all(data, factors)
            core = projected
            for n in modes:
                gram = factors[n].T @ factors[n]  # type: ignore[union-attr]
                core = mode_product(core, solve_normal(gram, torch.eye(gram.shape[0], dtype=gram.dtype), ridge), n)
            core = project_to_grid(core, precision, core_scale)[0]
            if norm_sq == 0:
                return core, projected, 0.0
            model = core
            for n in modes:
                model = mode_product(model, factors[n].T @ factors[n], n)  # type: ignore[union-attr]
            err_sq = norm_sq - 2 * float((projected.double() * core.double()).sum())
            err_sq += float((model.double() * core.double()).sum())
            return core, projected, math.sqrt(max(err_sq, 0.0) / norm_sq)

        core, _, error = solve_core(factors)
        best = ([f.clone() if f is not None else None for f in factors], core.clone(), error)
        errors: list[float] = []
        converged = False
        iteration = 0
        for iteration in range(1, n_iter_max + 1):  # noqa: B007
            for n in modes:
                partial = _project_all(data, factors, skip=n)  # T ×_{m≠n} Q_mᵀ
                weighted = core
                for m in modes:
                    if m != n:
                        weighted = mode_product(weighted, factors[m].T @ factors[m], m)  # type: ignore[union-attr]
                rhs = unfold(partial, n) @ unfold(core, n).T  # I_n x r_n
                gram = unfold(weighted, n) @ unfold(core, n).T  # r_n x r_n
                metric = gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype) if ridge else gram
                factors[n] = project_factor(solve_normal(gram, rhs, ridge), metric)
            core, _, error = solve_core(factors)
            errors.append(error)
            if error < best[2] or not keep_best:
                best = ([f.clone() if f is not None else None for f in factors], core.clone(), error)
            if tol > 0 and len(errors) >= 2 and abs(errors[-2] - errors[-1]) < tol:
                converged = True
                break
    factors, core, _ = best
    tucker = TuckerTensor(core, factors)
    scales: list[torch.Tensor | None] = []
    codes: list[torch.Tensor | None] = []
    for part, mode_scale in [*[(f, scale) for f in factors], (core, core_scale)]:
        if part is None:
            scales.append(None)
            codes.append(None)
            continue
        exps = grid_exponents(part, precision, mode_scale)
        scales.append(exps)
        codes.append(torch.as_tensor(precision.to_integer(torch.ldexp(part.double(), -exps))))
    return QuantizedTuckerResult(tucker, _relative_error(data, tucker), iteration, converged, errors,
                                 time.perf_counter() - start, precision, scale, scales, codes, float_error)
