"""Quantized CP decomposition: ALS whose factors stay on an ``ap_fixed`` grid (Nekooei & Safari, 2022).

Rounding the factors of a float decomposition once ("round after ALS") throws away the chance to correct
the rounding error. Here every least-squares factor update is projected onto the fixed-point grid at once,
so the next factor update sees the quantized factors and absorbs their error; the best iterate by the error
of the *quantized* reconstruction is kept.

No float weight remains: the CP weights λ are absorbed into the factors. Before a factor is projected, its
columns are rescaled to the geometric mean of the component's column norms (|λ_r|^(1/N) for a normalised
decomposition), which keeps each factor's dynamic range small; the next least-squares solve undoes the
rescaling exactly. Each factor ``n`` is stored as integer codes ``k`` of the fixed-point type times a
power of two: value = k · lsb · 2^s, with

* ``scale="per_factor"``: one exponent s_n per factor (a constant shift for the whole layer),
* ``scale="per_component_pow2"``: one exponent s_{n,r} per column; hardware applies the shift
  Σ_n s_{n,r} to rank-one term r,
* ``scale="none"``: s = 0, values saturate at the type's range.

The exponent is the smallest one for which the column's (or factor's) largest magnitude fits the type, and
values are rounded to the nearest grid point. Grid points are fixed points of every ``ap_fixed`` rounding
mode, so the codes survive hls4ml's conversion bit for bit whatever rounding the type declares.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from tenfold.decompose._checks import as_float_tensor, check_cp_rank, check_int
from tenfold.decompose.cp import (
    Callback,
    CPResult,
    CPTensor,
    _check_common,
    _Workspace,
    cp_als,
    initial_factors,
    run_als,
    torch_threads,
)
from tenfold.errors import ConfigError
from tenfold.hardware.fixed_point import FixedPoint

__all__ = [
    "SCALE_MODES",
    "QuantizedCPResult",
    "absorb_weights",
    "as_precision",
    "grid_exponents",
    "project_error_feedback",
    "project_to_grid",
    "quantized_cp_als",
    "round_after_als",
]

SCALE_MODES = ("per_factor", "per_component_pow2", "none")
_MAX_WIDTH = 53  # codes times a power of two stay exact doubles


def as_precision(precision: FixedPoint | str) -> FixedPoint:
    """A signed FixedPoint from an instance or a string such as ``"fixed<8,1>"``."""
    if isinstance(precision, str):
        precision = FixedPoint.parse(precision)
    if not isinstance(precision, FixedPoint):
        raise ConfigError(f'precision must be a FixedPoint or a string like "fixed<8,1>", got {precision!r}')
    if not precision.signed:
        raise ConfigError(
            f"factor vectors have both signs, so the factor type must be signed; got {precision.to_cpp()}"
        )
    if precision.width < 2 or precision.width > _MAX_WIDTH:
        raise ConfigError(f"factor types need 2..{_MAX_WIDTH} bits; got {precision.to_cpp()}")
    return precision


def _check_scale(scale: str) -> str:
    if scale not in SCALE_MODES:
        raise ConfigError(f"scale must be one of {', '.join(SCALE_MODES)}; got {scale!r}")
    return scale


def grid_exponents(values: torch.Tensor, precision: FixedPoint, scale: str) -> torch.Tensor:
    """Smallest power-of-two exponents s with max|values| / 2^s <= the type's largest value.

    Shape () for "per_factor" (whole tensor) and "none" (always 0), (R,) for "per_component_pow2"
    (one per column of a 2-D factor).
    """
    if scale == "none":
        return torch.zeros((), dtype=torch.int64)
    absmax = values.detach().double().abs()
    absmax = absmax.amax(dim=0) if scale == "per_component_pow2" else absmax.max()
    top = precision.max_value
    with torch.no_grad():
        exps = torch.ceil(torch.log2(absmax / top))
        exps = torch.where(absmax > 0, exps, torch.zeros_like(exps)).to(torch.int64)
        exps = torch.where(torch.ldexp(torch.full_like(absmax, top), exps) < absmax, exps + 1, exps)
    return exps


def project_to_grid(values: torch.Tensor, precision: FixedPoint | str, scale: str = "per_factor"
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest grid values of ``values`` under ``precision`` and a power-of-two scale.

    Returns (dequantized values in the input dtype, exponents, integer codes) with
    ``dequantized = codes · lsb · 2^exponents``.
    """
    precision = as_precision(precision)
    scale = _check_scale(scale)
    exps = grid_exponents(values, precision, scale)
    scaled = torch.ldexp(values.detach().double(), -exps)
    # symmetric range: the exponent guarantees |code| <= max_code, and keeping off the extra negative code
    # lets the exponent be recomputed from the values alone (see _encode)
    codes = torch.round(scaled / precision.lsb).clamp_(-precision.max_code, precision.max_code)
    dequantized = torch.ldexp(codes * precision.lsb, exps).to(values.dtype)
    return dequantized, exps, codes.to(torch.int64)


def project_error_feedback(target: torch.Tensor, metric: torch.Tensor, precision: FixedPoint,
                           scale: str = "per_factor") -> torch.Tensor:
    """Grid point A near ``target`` (I x R) in the metric of the least-squares loss tr((A-T) M (A-T)ᵀ).

    Rows are independent closest-vector problems; Babai's nearest-plane rounding solves them approximately:
    with M = L Lᵀ, columns are rounded from last to first and the error already made in later columns is fed
    back into the target of the current one (the idea of GPTQ/OPTQ). With a diagonal M it is plain rounding.
    Falls back to nearest rounding when M is not positive definite. Exponents come from ``target``.
    """
    exps = grid_exponents(target, precision, scale)
    chol, info = torch.linalg.cholesky_ex(metric.double())
    if info.item():
        return project_to_grid(target, precision, scale)[0]
    rank = target.shape[1]
    steps = torch.ldexp(torch.full((rank,), precision.lsb, dtype=torch.float64), exps.expand(rank)).to(target.dtype)
    feedback = (chol / chol.diagonal()[None, :]).to(target.dtype)  # column j: L[:, j] / L[j, j]
    low, high = -float(precision.max_code), float(precision.max_code)  # symmetric, as in project_to_grid
    out = torch.empty_like(target)
    error = torch.zeros_like(target)
    for j in range(rank - 1, -1, -1):
        goal = target[:, j]
        if j < rank - 1:
            goal = goal - error[:, j + 1 :] @ feedback[j + 1 :, j]
        value = torch.round(goal / steps[j]).clamp_(low, high).mul_(steps[j])
        out[:, j] = value
        error[:, j] = value - target[:, j]
    return out


def absorb_weights(cp: CPTensor) -> list[torch.Tensor]:
    """Factors with the CP weights absorbed evenly: column r of every factor gets norm |λ_r|^(1/N)
    (the sign of λ_r goes into the first factor). Keeps every factor's dynamic range small."""
    ndim = cp.ndim
    unit = cp.normalized()
    magnitude = unit.weights.abs().double().pow(1.0 / ndim).to(unit.weights.dtype)
    factors = [f * magnitude for f in unit.factors]
    factors[0] = factors[0] * torch.where(unit.weights < 0, -1.0, 1.0).to(unit.weights.dtype)
    return factors


@dataclass
class QuantizedCPResult(CPResult):
    """A CP decomposition stored in fixed point. ``cp`` is the dequantized tensor (weights all 1)."""

    precision: FixedPoint
    scale: str
    scales: list[torch.Tensor]  # int64 exponent per factor: shape () or (R,) for per_component_pow2
    codes: list[torch.Tensor] = field(repr=False)  # int64 codes (I_n, R): factor = codes · lsb · 2^scales
    float_error: float = math.nan  # error of the float ALS result it started from / was rounded from

    @property
    def dequantized(self) -> CPTensor:
        return self.cp

    @property
    def component_shifts(self) -> torch.Tensor:
        """Total power-of-two exponent of each rank-one term (what the hardware shifts by), shape (R,)."""
        total = torch.zeros(self.cp.rank, dtype=torch.int64)
        for exps in self.scales:
            total = total + exps
        return total

    def factors_on_grid(self) -> bool:
        """True when every factor / 2^scale is a value of ``precision`` and matches its stored codes."""
        for factor, exps, codes in zip(self.cp.factors, self.scales, self.codes, strict=True):
            scaled = torch.ldexp(factor.double(), -exps)
            if not bool(torch.as_tensor(self.precision.is_representable(scaled)).all()):
                return False
            if not torch.equal(torch.as_tensor(self.precision.to_integer(scaled)), codes):
                return False
        return True


def _encode(factors: list[torch.Tensor], precision: FixedPoint, scale: str) -> tuple[list, list]:
    """Exponents and bit-exact codes (``FixedPoint.to_integer``) of factors that already lie on the grid."""
    scales, codes = [], []
    for factor in factors:
        exps = grid_exponents(factor, precision, scale)
        scaled = torch.ldexp(factor.double(), -exps)
        scales.append(exps)
        codes.append(torch.as_tensor(precision.to_integer(scaled)))
    return scales, codes


def _quantized_result(workspace: _Workspace, factors: list[torch.Tensor], precision: FixedPoint, scale: str, *,
                      iterations: int, converged: bool, errors: list[float], restarts: int,
                      float_error: float) -> QuantizedCPResult:
    rank = factors[0].shape[1]
    cp = CPTensor(torch.ones(rank, dtype=factors[0].dtype), factors)
    scales, codes = _encode(factors, precision, scale)
    return QuantizedCPResult(cp, workspace.exact_error(cp), iterations, converged, errors, 0.0, restarts,
                             precision, scale, scales, codes, float_error)


def round_after_als(tensor: torch.Tensor, rank: int, precision: FixedPoint | str, *, scale: str = "per_factor",
                    **kwargs) -> QuantizedCPResult:
    """Baseline: float CP-ALS (``kwargs`` go to :func:`cp_als`), absorb λ evenly, round once to the grid."""
    start = time.perf_counter()
    precision = as_precision(precision)
    scale = _check_scale(scale)
    result = cp_als(tensor, rank, **kwargs)
    workspace = _Workspace(as_float_tensor(tensor, dtype=kwargs.get("dtype")), result.cp.rank)
    factors = [project_to_grid(f, precision, scale)[0] for f in absorb_weights(result.cp)]
    out = _quantized_result(workspace, factors, precision, scale, iterations=result.iterations,
                            converged=result.converged, errors=list(result.errors), restarts=result.restarts,
                            float_error=result.relative_error)
    out.seconds = time.perf_counter() - start
    return out


def quantized_cp_als(tensor: torch.Tensor, rank: int, precision: FixedPoint | str, *, scale: str = "per_factor",
                     n_iter_max: int = 100, tol: float = 1e-6, init: str | CPTensor = "svd", ridge: float = 0.0,
                     n_restarts: int = 1, seed: int = 0, keep_best: bool = True, warm_start: int | None = None,
                     rounding: str = "feedback", dtype: torch.dtype | None = None, callback: Callback | None = None
                     ) -> QuantizedCPResult:
    """CP-ALS with every factor projected onto the fixed-point grid right after its least-squares update.

    First ``warm_start`` float ALS sweeps (default ``n_iter_max``; same stopping rule as :func:`cp_als`)
    from ``init``; then λ is absorbed evenly and the factors are rounded to the nearest grid point — exactly
    the :func:`round_after_als` result — and up to ``n_iter_max`` quantized sweeps refine it. With
    ``warm_start=0`` the quantized sweeps start from ``init`` directly. ``rounding="feedback"`` rounds each
    solved factor by error feedback in the metric of its least-squares loss (see
    :func:`project_error_feedback`), "nearest" rounds each entry on its own. With ``keep_best`` the iterate
    with the lowest quantized error (the rounded start included, so never worse than round-after-ALS) is
    returned, since projected ALS need not decrease the error monotonically. Restarts 1.. start from
    random factors (seed + i). Other arguments as in :func:`cp_als`; the module docstring explains scales.
    """
    start = time.perf_counter()
    data = as_float_tensor(tensor, dtype=dtype)
    precision = as_precision(precision)
    scale = _check_scale(scale)
    if dtype is None and precision.width > 24 and data.dtype == torch.float32:
        data = data.double()  # float32 cannot hold wider codes exactly
    rank = check_cp_rank(rank, data.shape)
    n_iter_max, tol, ridge, n_restarts = _check_common(n_iter_max, tol, ridge, n_restarts)
    warm_start = n_iter_max if warm_start is None else check_int(warm_start, "warm_start", minimum=0)
    if rounding not in ("feedback", "nearest"):
        raise ConfigError(f'rounding must be "feedback" (error-feedback, default) or "nearest", got {rounding!r}')
    seed = check_int(seed, "seed", minimum=-(2**62))
    workspace = _Workspace(data, rank)

    def project(mode: int, factor: torch.Tensor, metric: torch.Tensor | None = None) -> torch.Tensor:
        if metric is None or rounding == "nearest":
            return project_to_grid(factor, precision, scale)[0]
        return project_error_feedback(factor, metric, precision, scale)

    best: QuantizedCPResult | None = None
    with torch_threads(1):
        for restart in range(n_restarts):
            generator = torch.Generator().manual_seed(seed + restart)
            start_init = init if restart == 0 else "random"
            float_error = math.nan
            with torch_threads(workspace.threads):
                factors = initial_factors(data, rank, start_init, generator, skip_first=warm_start > 0)
            if warm_start > 0:
                warm = run_als(workspace, factors, n_iter_max=warm_start, tol=tol, ridge=ridge, generator=generator)
                float_cp = CPTensor(warm.weights, warm.factors)
                float_error = workspace.exact_error(float_cp)
                factors = absorb_weights(float_cp)
            elif isinstance(start_init, CPTensor):
                factors = absorb_weights(CPTensor(torch.ones(rank, dtype=data.dtype), factors))
            factors = [project(n, f) for n, f in enumerate(factors)]
            start_error = workspace.exact_error(CPTensor(torch.ones(rank, dtype=data.dtype), factors))
            outcome = run_als(workspace, factors, n_iter_max=n_iter_max, tol=tol, ridge=ridge, generator=generator,
                              project=project, keep_best=keep_best, callback=callback,
                              start_error=start_error if keep_best else None)
            result = _quantized_result(workspace, outcome.factors, precision, scale, iterations=outcome.iterations,
                                       converged=outcome.converged, errors=outcome.errors, restarts=restart,
                                       float_error=float_error)
            if best is None or result.relative_error < best.relative_error:
                best = result
    assert best is not None
    best.restarts = n_restarts
    best.seconds = time.perf_counter() - start
    return best
