"""Initial factors for CP-ALS and Tucker/HOOI.

The SVD initialisation needs the leading left singular vectors of each unfolding. Conv weights give
unfoldings such as 512 x 4608 whose full SVD costs far more than a few ALS sweeps, so the vectors come from
the eigendecomposition of the small Gram matrix (I_n x I_n, or the other side when that is smaller).
Everything draws from a seeded ``torch.Generator`` so a seed fixes the result.
"""

from __future__ import annotations

import torch

__all__ = ["leading_left_singular_vectors", "random_factors", "svd_factors", "unfold"]


def unfold(tensor: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-n unfolding (I_n x prod of the other sizes, remaining modes in C order)."""
    return tensor.movedim(mode, 0).reshape(tensor.shape[mode], -1)


def _fix_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Make the largest-magnitude entry of each column positive so results do not depend on LAPACK's sign."""
    if vectors.numel() == 0:
        return vectors
    idx = vectors.abs().argmax(dim=0)
    signs = torch.sign(vectors.gather(0, idx[None, :]))
    signs[signs == 0] = 1
    return vectors * signs


def leading_left_singular_vectors(matrix: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``count`` leading left singular vectors and singular values of ``matrix`` (I x J).

    Uses ``eigh`` of ``M Mᵀ`` when I <= J, else of ``Mᵀ M`` (then U = M V / s). Returns at most min(I, J,
    count) columns; vectors with a numerically zero singular value are dropped when they come from the
    J side, since they cannot be recovered from it.
    """
    rows, cols = matrix.shape
    count = min(count, rows, cols)
    if rows <= cols:
        gram = matrix @ matrix.T
        values, vectors = torch.linalg.eigh(gram)
        values = values.flip(0)[:count].clamp_min(0).sqrt()
        return _fix_signs(vectors.flip(1)[:, :count]), values
    gram = matrix.T @ matrix
    values, vectors = torch.linalg.eigh(gram)
    values = values.flip(0)[:count].clamp_min(0).sqrt()
    keep = values > values[0] * torch.finfo(matrix.dtype).eps * max(rows, cols) if count else values > 0
    values, right = values[keep], vectors.flip(1)[:, :count][:, keep]
    return _fix_signs((matrix @ right) / values), values


def random_factors(shape: tuple[int, ...], rank: int, generator: torch.Generator,
                   dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """Standard normal factors with unit-norm columns (zero-mean, like conv weights)."""
    factors = []
    for size in shape:
        factor = torch.randn(size, rank, generator=generator, dtype=torch.float64).to(dtype)
        factors.append(factor / factor.norm(dim=0).clamp_min(torch.finfo(dtype).tiny))
    return factors


def orthonormal_padding(basis: torch.Tensor, total: int, generator: torch.Generator) -> torch.Tensor:
    """Extend orthonormal columns ``basis`` (I x k) to ``total`` <= I orthonormal columns with random ones."""
    rows, have = basis.shape
    if have >= total:
        return basis[:, :total]
    extra = torch.randn(rows, total - have, generator=generator, dtype=torch.float64).to(basis.dtype)
    if have:
        extra = extra - basis @ (basis.T @ extra)
    q, _ = torch.linalg.qr(extra)
    if have:  # one more projection for numerical orthogonality
        q = q - basis @ (basis.T @ q)
        q, _ = torch.linalg.qr(q)
    return torch.cat([basis, q], dim=1)


def svd_factors(tensor: torch.Tensor, rank: int, generator: torch.Generator,
                modes: list[int] | None = None) -> list[torch.Tensor | None]:
    """Leading left singular vectors of each unfolding, padded with random unit columns when rank > I_n.

    ``modes`` limits the work to the modes that are needed (CP-ALS never reads the first factor before
    updating it); other entries are None.
    """
    modes = list(range(tensor.ndim)) if modes is None else modes
    factors: list[torch.Tensor | None] = [None] * tensor.ndim
    for mode in modes:
        vectors, _ = leading_left_singular_vectors(unfold(tensor, mode), rank)
        missing = rank - vectors.shape[1]
        if missing > 0:
            extra = torch.randn(tensor.shape[mode], missing, generator=generator, dtype=torch.float64)
            extra = (extra / extra.norm(dim=0)).to(tensor.dtype)
            vectors = torch.cat([vectors, extra], dim=1)
        factors[mode] = vectors.contiguous()
    return factors
