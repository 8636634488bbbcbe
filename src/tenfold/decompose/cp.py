"""CP (CANDECOMP/PARAFAC) decomposition by alternating least squares, in PyTorch.

Why not TensorLy: its ALS forms the Khatri-Rao product of all other factors and multiplies the unfolding
by it for every mode, which for a 512x512x3x3 kernel is four tensor-sized products per sweep. Here the modes
are split into a left group and a right group (for a conv kernel: {out} | {in, kh, kw}) and each sweep does
two tensor-sized matrix products (Phan, Tichavsky & Cichocki, "Fast alternating LS algorithms for high
order CANDECOMP/PARAFAC tensor factorizations", IEEE TSP 2013):

* ``P = T(left x right) @ KR(right factors)`` serves every left mode's MTTKRP;
* ``Q = T(left x right)ᵀ @ KR(left factors)`` (left factors already updated) serves every right mode.

Each mode's MTTKRP then contracts the small ``P`` or ``Q`` with the other factors of its group. The
Khatri-Rao products are only of one group and are built in row blocks when they would be large. The normal
equations use the Hadamard product of the factor Grams (plus an optional ridge), solved by Cholesky with
a pseudo-inverse fallback for (near-)singular Grams, and the fit is read from the Grams and the last MTTKRP
instead of reconstructing the tensor each sweep.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from tenfold.decompose._checks import as_float_tensor, check_cp_rank, check_int, check_tol
from tenfold.decompose.init import random_factors, svd_factors
from tenfold.errors import ConfigError, ModelError

__all__ = [
    "CPResult",
    "CPTensor",
    "cp_als",
    "cp_reshape",
    "cp_unreshape",
    "khatri_rao",
]

_BLOCK_ENTRIES = 1 << 22  # largest Khatri-Rao block (entries) formed at once
# Multiply-adds of one tensor-sized product from which torch's thread pool pays off. Everything else (R x R
# Cholesky, small contractions) runs on one thread: on a busy 2-core machine MKL's threaded 27 x 27
# Cholesky took milliseconds instead of microseconds.
_PARALLEL_WORK = 1 << 24
_BALANCE_EVERY = 8  # sweeps between column-norm balancing in float ALS


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    previous = torch.get_num_threads()
    if count != previous:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)

Callback = Callable[[int, float, "CPTensor"], "bool | None"]


def khatri_rao(matrices: list[torch.Tensor]) -> torch.Tensor:
    """Column-wise Kronecker product; row index runs over the matrices' rows in C order (first slowest)."""
    rank = matrices[0].shape[1]
    out = matrices[0]
    for matrix in matrices[1:]:
        out = (out[:, None, :] * matrix[None, :, :]).reshape(-1, rank)
    return out


@dataclass
class CPTensor:
    """W ≈ Σ_r weights[r] · a_r ∘ b_r ∘ ... with factor n of shape (I_n, R)."""

    weights: torch.Tensor
    factors: list[torch.Tensor]

    def __post_init__(self) -> None:
        if not self.factors:
            raise ModelError("CPTensor needs at least one factor matrix")
        rank = self.factors[0].shape[-1] if self.factors[0].ndim == 2 else -1
        for n, factor in enumerate(self.factors):
            if factor.ndim != 2 or factor.shape[1] != rank:
                raise ModelError(
                    f"CP factor {n} has shape {tuple(factor.shape)}; every factor must be (I_n, R) with the "
                    f"same R = {rank}"
                )
        if self.weights.shape != (rank,):
            raise ModelError(f"CP weights have shape {tuple(self.weights.shape)}, expected ({rank},)")

    @property
    def rank(self) -> int:
        return int(self.weights.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(f.shape[0]) for f in self.factors)

    @property
    def ndim(self) -> int:
        return len(self.factors)

    def n_parameters(self, include_weights: bool = True) -> int:
        """Stored numbers: Σ I_n·R, plus R for the weights (drop them when they are absorbed)."""
        return sum(f.numel() for f in self.factors) + (self.rank if include_weights else 0)

    def to_tensor(self) -> torch.Tensor:
        """The full tensor (one matrix product of the first factor with the Khatri-Rao of the rest)."""
        first = self.factors[0] * self.weights
        if len(self.factors) == 1:
            return first.sum(dim=1)
        return (first @ khatri_rao(self.factors[1:]).T).reshape(self.shape)

    def normalized(self) -> CPTensor:
        """Same tensor with unit-norm factor columns; the norms move into ``weights``."""
        weights = self.weights.clone()
        factors = []
        for factor in self.factors:
            norms = factor.norm(dim=0)
            safe = torch.where(norms > 0, norms, torch.ones_like(norms))
            factors.append(factor / safe)
            weights = weights * norms
        return CPTensor(weights, factors)

    def to(self, dtype: torch.dtype) -> CPTensor:
        return CPTensor(self.weights.to(dtype), [f.to(dtype) for f in self.factors])


@dataclass
class CPResult:
    """Outcome of one CP fit: the best decomposition found and how the fit went."""

    cp: CPTensor
    relative_error: float  # ||W - Ŵ||_F / ||W||_F of the returned iterate (computed exactly)
    iterations: int
    converged: bool
    errors: list[float] = field(repr=False)  # relative error after each sweep (cheap formula)
    seconds: float
    restarts: int


# ---------------------------------------------------------------------------------------------- engine


class _Workspace:
    """The tensor viewed as a (left x right) matrix plus the cached partial MTTKRPs of the current sweep."""

    def __init__(self, tensor: torch.Tensor, rank: int = 1, threads: int | None = None) -> None:
        threads = torch.get_num_threads() if threads is None else threads
        self.threads = threads if tensor.numel() * rank >= _PARALLEL_WORK else 1  # for tensor-sized products
        self.shape = tuple(tensor.shape)
        self.ndim = tensor.ndim
        self.dtype = tensor.dtype
        self.split = _best_split(self.shape)
        self.left_shape = self.shape[: self.split]
        self.right_shape = self.shape[self.split :]
        self.matrix = tensor.reshape(math.prod(self.left_shape), math.prod(self.right_shape))
        self.norm_sq = float(tensor.double().square().sum())
        self.norm = math.sqrt(self.norm_sq)
        self._partial: torch.Tensor | None = None
        self._plans = [self._plan(mode) for mode in range(self.ndim)]

    def _plan(self, mode: int) -> list[tuple[int, int, list[int]]]:
        """Steps (factor, axis, broadcast shape) contracting the mode's group partial down to that mode:
        broadcast multiply-and-sum, largest mode first; several times faster than ``torch.einsum`` here."""
        if mode < self.split:
            group, local, base = self.left_shape, mode, 0
        else:
            group, local, base = self.right_shape, mode - self.split, self.split
        alive = list(range(len(group)))
        steps = []
        for m in sorted((m for m in alive if m != local), key=lambda m: -group[m]):
            axis = alive.index(m)
            shape = [1] * (len(alive) + 1)
            shape[axis], shape[-1] = group[m], -1
            steps.append((base + m, axis, shape))
            alive.pop(axis)
        return steps

    def mttkrp(self, factors: list[torch.Tensor], mode: int) -> torch.Tensor:
        """MTTKRP of ``mode``; call for modes 0, 1, ... in order within a sweep (caches are refreshed)."""
        if mode == 0 or mode == self.split:
            group = factors[self.split :] if mode == 0 else factors[: self.split]
            if self.threads == 1:
                self._partial = _blocked_product(self.matrix, group, transpose=mode != 0)
            else:
                with torch_threads(self.threads):
                    self._partial = _blocked_product(self.matrix, group, transpose=mode != 0)
        assert self._partial is not None
        out = self._partial
        plan = self._plans[mode]
        if plan:
            out = out.reshape(*(self.left_shape if mode < self.split else self.right_shape), -1)
            for factor, axis, shape in plan:
                out = (out * factors[factor].reshape(shape)).sum(axis)
        return out

    def fit_error(self, mttkrp: torch.Tensor, factor: torch.Tensor, hadamard: torch.Tensor,
                  gram: torch.Tensor | None = None) -> float:
        """Relative error of the model whose last-updated factor is ``factor`` (its MTTKRP, the Hadamard
        product of the other Grams and optionally its own Gram given), without forming the model:
        ||T||² - 2<T,T̂> + ||T̂||²."""
        if self.norm_sq == 0:
            return 0.0
        gram = factor.T @ factor if gram is None else gram
        inner = float((mttkrp * factor).sum(dtype=torch.float64))
        model_sq = float((gram * hadamard).sum(dtype=torch.float64))
        return math.sqrt(max(self.norm_sq - 2 * inner + model_sq, 0.0)) / self.norm

    def exact_error(self, cp: CPTensor) -> float:
        if self.norm_sq == 0:
            return 0.0 if float(cp.to_tensor().abs().sum()) == 0 else math.inf
        with torch_threads(self.threads):
            diff = self.matrix - cp.to_tensor().reshape(self.matrix.shape)
        return float(diff.double().norm()) / self.norm


def _best_split(shape: tuple[int, ...]) -> int:
    """Split point k minimising prod(shape[:k]) + prod(shape[k:]) (the size of the two partial MTTKRPs)."""
    costs = [math.prod(shape[:k]) + math.prod(shape[k:]) for k in range(1, len(shape))]
    return 1 + min(range(len(costs)), key=costs.__getitem__)


def _blocked_product(matrix: torch.Tensor, group: list[torch.Tensor], *, transpose: bool) -> torch.Tensor:
    """``matrix @ KR(group)`` (or ``matrixᵀ @ KR(group)``), forming the Khatri-Rao product in row blocks."""
    rank = group[0].shape[1]
    rows = math.prod(f.shape[0] for f in group)
    if len(group) == 1:
        kr = group[0]
        return matrix.T @ kr if transpose else matrix @ kr
    if rows * rank <= _BLOCK_ENTRIES:
        kr = khatri_rao(group)
        return matrix.T @ kr if transpose else matrix @ kr
    # Block over the rows of the group's first factor: each block of KR is KR([first[block], rest]).
    rest = khatri_rao(group[1:])
    step = max(1, _BLOCK_ENTRIES // max(1, rest.shape[0] * rank))
    out = None
    for start in range(0, group[0].shape[0], step):
        stop = min(start + step, group[0].shape[0])
        block = khatri_rao([group[0][start:stop], rest])
        lo, hi = start * rest.shape[0], stop * rest.shape[0]
        piece = matrix[lo:hi].T @ block if transpose else matrix[:, lo:hi] @ block
        out = piece if out is None else out.add_(piece)
    assert out is not None
    return out


def _contract_except(partial: torch.Tensor, others: list[torch.Tensor], keep: int) -> torch.Tensor:
    """Contract every mode of ``partial`` (d_0, ..., d_m, R) except ``keep`` with its factor, column-wise.

    Broadcast multiply-and-sum, largest mode first: for these small, skinny contractions it is several
    times faster than ``torch.einsum``, which permutes everything into a batched matrix product.
    """
    ndim = partial.ndim - 1
    modes = [m for m in range(ndim) if m != keep]
    factor_of = dict(zip(modes, others, strict=True))
    out = partial
    alive = list(range(ndim))  # original mode held by each remaining dimension of ``out``
    for mode in sorted(modes, key=lambda m: -partial.shape[m]):
        axis = alive.index(mode)
        shape = [1] * out.ndim
        shape[axis], shape[-1] = partial.shape[mode], partial.shape[-1]
        out = (out * factor_of[mode].reshape(shape)).sum(axis)
        alive.pop(axis)
    return out


def hadamard_gram(grams: list[torch.Tensor], skip: int) -> torch.Tensor:
    """Hadamard product of all Gram matrices except ``skip`` (the normal-equation matrix of that mode)."""
    others = [gram for n, gram in enumerate(grams) if n != skip]
    if len(others) == 1:
        return others[0]
    out = others[0] * others[1]
    for gram in others[2:]:
        out.mul_(gram)
    return out


def solve_normal(gram: torch.Tensor, rhs: torch.Tensor, ridge: float = 0.0, *, robust: bool = False) -> torch.Tensor:
    """Solve ``X @ gram = rhs`` for X (rhs is I x R), gracefully when ``gram`` is (near-)singular.

    Cholesky first; if it fails (or ``robust``), an eigendecomposition pseudo-inverse that drops directions
    below ``R · eps · λ_max`` (the minimum-norm least-squares answer).
    """
    size = gram.shape[0]
    system = gram + ridge * torch.eye(size, dtype=gram.dtype) if ridge else gram
    if not robust:
        chol, info = torch.linalg.cholesky_ex(system)
        if not info.item():  # R x R inverse then one product: fewer copies than cholesky_solve for I x R
            return torch.cholesky_solve(rhs.T, chol).T
    values, vectors = torch.linalg.eigh(system.double())
    cutoff = max(float(values.max()), 0.0) * size * torch.finfo(gram.dtype).eps
    inverse = torch.where(values > cutoff, 1.0 / values.clamp_min(cutoff), torch.zeros_like(values))
    out = ((rhs.double() @ vectors) * inverse) @ vectors.T
    return out.to(gram.dtype)


@dataclass
class _RunOutcome:
    factors: list[torch.Tensor]
    weights: torch.Tensor
    errors: list[float]
    iterations: int
    converged: bool
    best_error: float


# project(mode, factor, metric): a grid point near ``factor``; ``metric`` (R x R) is the normal-equation matrix
# in which the fit loss of this factor is (A - factor) metric (A - factor)ᵀ, for error-aware rounding.
Projector = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def run_als(workspace: _Workspace, factors: list[torch.Tensor], *, n_iter_max: int, tol: float, ridge: float,
            generator: torch.Generator, project: Projector | None = None, keep_best: bool = False,
            callback: Callback | None = None, start_error: float | None = None) -> _RunOutcome:
    """The ALS sweeps shared by float and quantized CP.

    Float mode (``project is None``): factors are solved unnormalised (weights 1), their column norms are
    balanced every few sweeps, and the result is normalised into weights at the end. Quantized mode:
    weights stay 1; a solved factor is rebalanced (columns rescaled to the geometric mean of the
    component's column norms, which the next least-squares solve undoes) and then projected by
    ``project(mode, factor, metric)``; the last factor of a sweep is not rebalanced, so the model that the
    error is measured on is exactly the projected one. ``factors[0]`` is never read before it is updated.
    With ``keep_best`` the best sweep (by the fit error) is returned, seeded by ``start_error``
    for the incoming factors.
    """
    ndim = workspace.ndim
    rank = factors[-1].shape[1]
    dtype = workspace.dtype
    weights = torch.ones(rank, dtype=dtype)
    grams: list[torch.Tensor] = [f.T @ f for f in factors]
    errors: list[float] = []
    converged = False
    best_error = math.inf if start_error is None else start_error
    best: tuple[list[torch.Tensor], torch.Tensor] | None = None
    if keep_best and start_error is not None:
        best = ([f.clone() for f in factors], weights.clone())
    iteration = 0
    if workspace.norm_sq == 0:
        factors = [torch.zeros_like(f) for f in factors]
        return _RunOutcome(factors, torch.zeros(rank, dtype=dtype), [], 0, True, 0.0)
    robust = False  # switched on for good if a Cholesky sweep ever produces a non-finite fit
    while iteration < n_iter_max:
        iteration += 1
        saved = (list(factors), list(grams), weights)
        error = math.nan
        for mode in range(ndim):
            mttkrp = workspace.mttkrp(factors, mode)
            hadamard = hadamard_gram(grams, mode)
            factor = solve_normal(hadamard, mttkrp, ridge, robust=robust)
            if project is None:  # columns are not normalised per update (fewer ops); see _balance below
                gram = factor.T @ factor
                if mode == ndim - 1:
                    error = workspace.fit_error(mttkrp, factor, hadamard, gram)
                factors[mode], grams[mode] = factor, gram
                continue
            else:
                metric = hadamard + ridge * torch.eye(rank, dtype=dtype) if ridge else hadamard
                if mode < ndim - 1:
                    factor, ratio = _rebalance(factor, factors, mode)
                    metric = metric / (ratio[:, None] * ratio[None, :])
                factor = project(mode, factor, metric)
                if mode == ndim - 1:
                    error = workspace.fit_error(mttkrp, factor, hadamard)
            factors[mode] = factor
            grams[mode] = factor.T @ factor
        if not math.isfinite(error) and not robust:  # an ill-conditioned Cholesky blew up: redo robustly
            factors, grams, weights = list(saved[0]), list(saved[1]), saved[2]
            robust = True
            iteration -= 1
            continue
        if project is None and iteration % _BALANCE_EVERY == 0:
            factors = _balance(factors)
            grams = [f.T @ f for f in factors]
        errors.append(error)
        if keep_best and error < best_error:
            best_error = error
            best = ([f.clone() for f in factors], weights.clone())
        elif not keep_best:
            best_error = error
        if callback is not None and callback(iteration, error, CPTensor(weights, list(factors))) is True:
            break
        if tol > 0 and len(errors) >= 2 and abs(errors[-2] - errors[-1]) < tol:
            converged = True
            break
        if error == 0.0:
            converged = True
            break
    if keep_best and best is not None:
        factors, weights = best
    if project is None:
        normalized = CPTensor(weights, factors).normalized()
        factors, weights = normalized.factors, normalized.weights
    return _RunOutcome(factors, weights, errors, iteration, converged, best_error)


def _balance(factors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Give column r of every factor the same norm (the geometric mean), leaving the tensor unchanged.

    Float ALS does not normalise after each update (the least-squares solve does not need it); this keeps
    the column scales from drifting apart over long runs. Zero columns are left alone.
    """
    logs = torch.stack([torch.linalg.vector_norm(f, dim=0).double().log() for f in factors])
    ratios = torch.exp(logs.mean(dim=0, keepdim=True) - logs)
    ratios = torch.where(torch.isfinite(ratios), ratios, torch.ones_like(ratios))
    return [f * r.to(f.dtype) for f, r in zip(factors, ratios, strict=True)]


def _rebalance(factor: torch.Tensor, factors: list[torch.Tensor], mode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale the columns of a freshly solved factor to |component|^(1/N), the geometric mean of the
    component's column norms; keeps every factor's dynamic range small for shared quantisation scales.
    Returns the factor and the per-column ratios applied."""
    ndim = len(factors)
    log_norm = factor.norm(dim=0).double().log()
    total = log_norm.clone()
    for n, other in enumerate(factors):
        if n != mode:
            total += other.norm(dim=0).double().log()
    ratio = torch.exp(total / ndim - log_norm)
    ratio = torch.where(torch.isfinite(ratio) & (ratio > 0), ratio, torch.ones_like(ratio)).to(factor.dtype)
    return factor * ratio, ratio


# ---------------------------------------------------------------------------------------------- public API


def initial_factors(tensor: torch.Tensor, rank: int, init: str | CPTensor, generator: torch.Generator,
                    *, skip_first: bool) -> list[torch.Tensor]:
    """Factors to start ALS from: "svd", "random" or a given CPTensor (weights folded into the first factor)."""
    shape = tuple(tensor.shape)
    if isinstance(init, CPTensor):
        if init.shape != shape or init.rank != rank:
            raise ConfigError(
                f"initial CPTensor has shape {init.shape} and rank {init.rank}; expected {shape} and rank {rank}"
            )
        factors = [f.detach().to(tensor.dtype).clone() for f in init.factors]
        factors[0] = factors[0] * init.weights.to(tensor.dtype)
        return factors
    if init == "random":
        return random_factors(shape, rank, generator, tensor.dtype)
    if init == "svd":
        modes = list(range(1, tensor.ndim)) if skip_first else None
        found = svd_factors(tensor, rank, generator, modes)
        return [f if f is not None else torch.zeros(shape[n], rank, dtype=tensor.dtype) for n, f in enumerate(found)]
    raise ConfigError(f'init must be "svd", "random" or a CPTensor, got {init!r}')


def _check_common(n_iter_max: int, tol: float, ridge: float, n_restarts: int) -> tuple[int, float, float, int]:
    n_iter_max = check_int(n_iter_max, "n_iter_max", minimum=0)
    tol = check_tol(tol)
    ridge = check_tol(ridge, "ridge")
    n_restarts = check_int(n_restarts, "n_restarts", minimum=1)
    return n_iter_max, tol, ridge, n_restarts


def cp_als(tensor: torch.Tensor, rank: int, *, n_iter_max: int = 100, tol: float = 1e-6,
           init: str | CPTensor = "svd", ridge: float = 0.0, n_restarts: int = 1, seed: int = 0,
           dtype: torch.dtype | None = None, callback: Callback | None = None) -> CPResult:
    """Rank-``rank`` CP decomposition of ``tensor`` (2nd order or higher) by alternating least squares.

    Stops after ``n_iter_max`` sweeps or when the relative error changes by less than ``tol`` between
    sweeps (``tol=0`` runs every sweep). ``ridge`` adds ``ridge·I`` to each normal-equation matrix
    (Tikhonov), which tames degenerate, diverging components. Restart 0 uses ``init``; restarts 1.. use
    random factors with seed ``seed + i``; the best final error wins. ``dtype`` (float32/float64; default:
    the tensor's, float32 for other dtypes) is the arithmetic precision. ``callback(iteration, error, cp)``
    runs after every sweep and stops the fit by returning True. The returned weights carry the scale and
    the factor columns have unit norm.
    """
    start = time.perf_counter()
    data = as_float_tensor(tensor, dtype=dtype)
    rank = check_cp_rank(rank, data.shape)
    n_iter_max, tol, ridge, n_restarts = _check_common(n_iter_max, tol, ridge, n_restarts)
    seed = check_int(seed, "seed", minimum=-(2**62))
    workspace = _Workspace(data, rank)
    best_result: CPResult | None = None
    with torch_threads(1):
        for restart in range(n_restarts):
            generator = torch.Generator().manual_seed(seed + restart)
            start_init = init if restart == 0 else "random"
            with torch_threads(workspace.threads):
                factors = initial_factors(data, rank, start_init, generator, skip_first=n_iter_max > 0)
            outcome = run_als(workspace, factors, n_iter_max=n_iter_max, tol=tol, ridge=ridge, generator=generator,
                              callback=callback)
            if n_iter_max == 0 or workspace.norm_sq == 0:  # unnormalised start factors or the zero tensor
                cp = CPTensor(outcome.weights, outcome.factors).normalized()
            else:
                cp = CPTensor(outcome.weights, outcome.factors)
            error = workspace.exact_error(cp)
            if best_result is None or error < best_result.relative_error:
                best_result = CPResult(cp, error, outcome.iterations, outcome.converged, outcome.errors, 0.0, restart)
    assert best_result is not None
    best_result.restarts = n_restarts
    best_result.seconds = time.perf_counter() - start
    return best_result


# ---------------------------------------------------------------------------------------------- reshaping


def cp_reshape(weight: torch.Tensor, mode: str = "cp4") -> torch.Tensor:
    """View a layer weight as the tensor to decompose.

    Conv weights (O, I, k...) keep every mode with "cp4" (a 2-D conv gives 4 modes) and merge the kernel
    modes into one with "cp3" → (O, I, prod k). Linear weights (O, I) are returned as they are.
    """
    if mode not in ("cp3", "cp4"):
        raise ConfigError(f'reshape mode must be "cp3" or "cp4", got {mode!r}')
    if not isinstance(weight, torch.Tensor):
        raise ModelError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.ndim < 2:
        raise ModelError(
            f"a layer weight has at least 2 dimensions (out, in, ...); got shape {tuple(weight.shape)}"
        )
    if weight.ndim <= 3 or mode == "cp4":
        return weight
    return weight.reshape(weight.shape[0], weight.shape[1], -1)


def cp_unreshape(tensor: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Inverse of :func:`cp_reshape`: give the decomposed (or reconstructed) tensor the layer's weight shape."""
    shape = tuple(int(s) for s in shape)
    if tensor.numel() != math.prod(shape) or tuple(tensor.shape[:2]) != shape[:2]:
        raise ModelError(
            f"cannot turn a tensor of shape {tuple(tensor.shape)} back into a weight of shape {shape}; "
            "pass the original weight's shape"
        )
    return tensor.reshape(shape)
