"""Float CP-ALS: exact recovery, the fast MTTKRP against the textbook one, degenerate inputs, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tenfold.decompose import CPResult, CPTensor, cp_als, cp_reshape, cp_unreshape, khatri_rao, unfold
from tenfold.decompose import cp as cp_module
from tenfold.errors import ConfigError, ModelError, TenfoldError


def planted(shape: tuple[int, ...], rank: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    factors = [torch.randn(size, rank, generator=gen, dtype=dtype) for size in shape]
    return CPTensor(torch.ones(rank, dtype=dtype), factors).to_tensor()


def naive_tensor(cp: CPTensor) -> torch.Tensor:
    """Sum of outer products, term by term (independent of to_tensor's Khatri-Rao route)."""
    out = torch.zeros(cp.shape, dtype=cp.weights.dtype)
    for r in range(cp.rank):
        term = cp.weights[r]
        for factor in cp.factors:
            term = torch.tensordot(term, factor[:, r], dims=0) if term.ndim else term * factor[:, r]
        out += term
    return out


# ---------------------------------------------------------------------------------------------- CPTensor


def test_cp_tensor_to_tensor_matches_sum_of_outer_products_and_counts_parameters():
    gen = torch.Generator().manual_seed(1)
    cp = CPTensor(torch.randn(3, generator=gen, dtype=torch.float64),
                  [torch.randn(s, 3, generator=gen, dtype=torch.float64) for s in (4, 5, 2, 3)])
    assert cp.shape == (4, 5, 2, 3) and cp.rank == 3 and cp.ndim == 4
    torch.testing.assert_close(cp.to_tensor(), naive_tensor(cp))
    assert cp.n_parameters() == (4 + 5 + 2 + 3) * 3 + 3
    assert cp.n_parameters(include_weights=False) == (4 + 5 + 2 + 3) * 3
    normalized = cp.normalized()
    torch.testing.assert_close(normalized.to_tensor(), cp.to_tensor())
    torch.testing.assert_close(normalized.factors[1].norm(dim=0), torch.ones(3, dtype=torch.float64))


def test_cp_tensor_rejects_inconsistent_factors():
    with pytest.raises(ModelError, match="same R"):
        CPTensor(torch.ones(2), [torch.ones(3, 2), torch.ones(4, 3)])
    with pytest.raises(ModelError, match="weights"):
        CPTensor(torch.ones(3), [torch.ones(3, 2), torch.ones(4, 2)])


def test_khatri_rao_row_order_matches_c_order_unfolding():
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(n, 2, generator=gen) for n in (3, 4, 5))
    kr = khatri_rao([a, b, c])
    assert kr.shape == (60, 2)
    torch.testing.assert_close(kr[1 * 20 + 2 * 5 + 3], a[1] * b[2] * c[3])


# ---------------------------------------------------------------------------------------------- MTTKRP


@pytest.mark.parametrize("shape", [(7, 6), (6, 5, 4), (5, 4, 3, 3), (2, 3, 4, 5), (3, 2, 2, 2, 3)])
def test_partial_mttkrp_equals_unfolding_times_khatri_rao(shape):
    gen = torch.Generator().manual_seed(3)
    tensor = torch.randn(shape, generator=gen, dtype=torch.float64)
    factors = [torch.randn(s, 4, generator=gen, dtype=torch.float64) for s in shape]
    workspace = cp_module._Workspace(tensor)
    for mode in range(len(shape)):  # within a sweep the workspace expects modes in order
        others = [f for n, f in enumerate(factors) if n != mode]
        expected = unfold(tensor, mode) @ khatri_rao(others)
        torch.testing.assert_close(workspace.mttkrp(factors, mode), expected)


def test_blocked_khatri_rao_product_matches_unblocked(monkeypatch):
    gen = torch.Generator().manual_seed(4)
    tensor = torch.randn(6, 9, 4, 3, generator=gen, dtype=torch.float64)
    factors = [torch.randn(s, 5, generator=gen, dtype=torch.float64) for s in tensor.shape]
    monkeypatch.setattr(cp_module, "_BLOCK_ENTRIES", 40)  # forces several row blocks in both groups
    workspace = cp_module._Workspace(tensor)
    assert workspace.split == 2
    for mode in range(4):
        expected = unfold(tensor, mode) @ khatri_rao([f for n, f in enumerate(factors) if n != mode])
        torch.testing.assert_close(workspace.mttkrp(factors, mode), expected)


def test_best_split_separates_output_channels_of_a_conv_kernel():
    assert cp_module._best_split((512, 512, 3, 3)) == 1
    assert cp_module._best_split((3, 3, 512, 512)) == 3
    assert cp_module._best_split((64, 576)) == 1


def test_solve_normal_handles_singular_gram_without_nan():
    gram = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)  # rank one
    rhs = torch.tensor([[2.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    out = cp_module.solve_normal(gram, rhs)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out @ gram, rhs)  # consistent system: exact minimum-norm answer
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [0.5, 0.5]], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- recovery


@pytest.mark.parametrize("init", ["svd", "random"])
@pytest.mark.parametrize(("shape", "rank"),
                         [((12, 10, 8), 3), ((12, 10, 8), 5), ((12, 10, 8, 6), 4), ((9, 8, 3, 3), 5)])
def test_exact_recovery_of_planted_low_rank_tensors(shape, rank, init):
    tensor = planted(shape, rank, seed=rank)
    result = cp_als(tensor, rank, n_iter_max=500, tol=1e-12, init=init, n_restarts=2)
    assert isinstance(result, CPResult)
    assert result.relative_error < 1e-4
    assert result.cp.shape == shape and result.cp.rank == rank
    assert result.cp.weights.dtype == torch.float64
    rebuilt = result.cp.to_tensor()
    assert float((rebuilt - tensor).norm() / tensor.norm()) == pytest.approx(result.relative_error, abs=1e-12)


def test_float32_fit_and_per_sweep_errors_track_the_exact_error():
    tensor = planted((10, 9, 8), 3, seed=7, dtype=torch.float32) + 0.05 * torch.randn(
        10, 9, 8, generator=torch.Generator().manual_seed(0))
    result = cp_als(tensor, 3, n_iter_max=50, tol=0)
    assert result.cp.weights.dtype == torch.float32
    assert result.iterations == 50 and len(result.errors) == 50 and not result.converged
    assert result.errors[-1] == pytest.approx(result.relative_error, rel=1e-3)
    assert all(b <= a + 1e-5 for a, b in zip(result.errors, result.errors[1:], strict=False))  # ALS descends
    torch.testing.assert_close(result.cp.factors[0].norm(dim=0), torch.ones(3), atol=1e-5, rtol=0)


def test_rank_one_matrix_and_linear_layer_fit_match_the_svd():
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(40, 12, generator=gen, dtype=torch.float64)
    result = cp_als(weight, 4, n_iter_max=300, tol=1e-12)
    singular = torch.linalg.svdvals(weight)
    best = float(singular[4:].norm() / singular.norm())  # Eckart-Young: the best rank-4 error
    assert result.relative_error == pytest.approx(best, rel=1e-4)


def test_seeded_runs_are_deterministic_and_seeds_differ():
    tensor = torch.randn(8, 7, 3, 3, generator=torch.Generator().manual_seed(0))
    a = cp_als(tensor, 5, init="random", seed=3, n_iter_max=20, tol=0)
    b = cp_als(tensor, 5, init="random", seed=3, n_iter_max=20, tol=0)
    c = cp_als(tensor, 5, init="random", seed=4, n_iter_max=20, tol=0)
    for x, y in zip(a.cp.factors, b.cp.factors, strict=True):
        assert torch.equal(x, y)
    assert a.errors == b.errors
    assert not torch.equal(a.cp.factors[0], c.cp.factors[0])


def test_restarts_keep_the_best_and_ridge_and_callback_work():
    tensor = torch.randn(8, 7, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    single = cp_als(tensor, 4, n_iter_max=15, tol=0, init="random", seed=0)
    several = cp_als(tensor, 4, n_iter_max=15, tol=0, init="random", seed=0, n_restarts=3)
    assert several.restarts == 3 and several.relative_error <= single.relative_error
    seen = []

    def stop_at_three(iteration, error, cp):
        seen.append((iteration, error, cp.rank))
        return iteration == 3

    stopped = cp_als(tensor, 4, n_iter_max=50, ridge=1e-3, callback=stop_at_three)
    assert stopped.iterations == 3 and [s[0] for s in seen] == [1, 2, 3] and seen[0][2] == 4
    assert math.isfinite(stopped.relative_error)


def test_tol_stops_early_and_reports_convergence():
    tensor = planted((10, 8, 6), 2, seed=2)
    result = cp_als(tensor, 2, n_iter_max=500, tol=1e-8)
    assert result.converged and result.iterations < 500


def test_accepts_numpy_and_integer_input():
    array = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    result = cp_als(array, 3, n_iter_max=300)  # 12i + 4j + k: rank 3 (border rank 2)
    assert result.cp.weights.dtype == torch.float32 and result.relative_error < 1e-3


# ---------------------------------------------------------------------------------------------- degenerate


@pytest.mark.parametrize("init", ["svd", "random"])
def test_all_zero_tensor_gives_a_zero_decomposition_without_nan(init):
    result = cp_als(torch.zeros(5, 4, 3, 3), 3, init=init)
    assert result.relative_error == 0.0
    rebuilt = result.cp.to_tensor()
    assert torch.isfinite(rebuilt).all() and torch.count_nonzero(rebuilt) == 0
    assert all(torch.isfinite(f).all() for f in result.cp.factors)


@pytest.mark.parametrize("init", ["svd", "random"])
@pytest.mark.parametrize("rank", [3, 6, 12])
def test_rank_above_the_true_rank_stays_finite_and_fits(rank, init):
    tensor = planted((8, 7, 6), 2, seed=11)
    result = cp_als(tensor, rank, n_iter_max=100, init=init)
    assert all(torch.isfinite(f).all() for f in result.cp.factors) and torch.isfinite(result.cp.weights).all()
    assert result.relative_error < 1e-3
    rebuilt = result.cp.to_tensor()
    assert float((rebuilt - tensor).norm() / tensor.norm()) == pytest.approx(result.relative_error, abs=1e-9)


def test_rank_one_tensor_of_ones_with_many_components():
    ones = torch.ones(5, 5, 5, dtype=torch.float64)
    result = cp_als(ones, 4)
    assert result.relative_error < 1e-8 and torch.isfinite(result.cp.weights).all()


def test_zero_iterations_returns_the_initialisation():
    tensor = torch.randn(6, 5, 4, generator=torch.Generator().manual_seed(0))
    result = cp_als(tensor, 3, n_iter_max=0)
    assert result.iterations == 0 and result.errors == [] and result.relative_error > 0
    assert all(torch.isfinite(f).all() for f in result.cp.factors)


# ---------------------------------------------------------------------------------------------- validation


def test_nan_and_inf_inputs_are_refused_with_a_clear_message():
    tensor = torch.randn(4, 4, 3)
    tensor[0, 1, 2] = float("nan")
    with pytest.raises(ModelError, match="contains NaN"):
        cp_als(tensor, 2)
    tensor[0, 1, 2] = float("inf")
    with pytest.raises(ModelError, match="1 inf"):
        cp_als(tensor, 2)


@pytest.mark.parametrize(("rank", "message"), [(0, ">= 1"), (-2, ">= 1"), (2.5, "positive integer"),
                                              (True, "positive integer"), (33, "larger than sensible")])
def test_bad_ranks_are_refused(rank, message):
    with pytest.raises(ConfigError, match=message):
        cp_als(torch.randn(8, 4, 4), rank)


def test_other_bad_arguments_are_refused():
    with pytest.raises(ModelError, match="at least 2"):
        cp_als(torch.randn(5), 1)
    with pytest.raises(ModelError, match="empty"):
        cp_als(torch.randn(0, 3), 1)
    with pytest.raises(ModelError, match=r"torch\.Tensor"):
        cp_als([[1.0, 2.0]], 1)
    with pytest.raises(ConfigError, match="init"):
        cp_als(torch.randn(3, 3), 1, init="hosvd")
    with pytest.raises(ConfigError, match="tol"):
        cp_als(torch.randn(3, 3), 1, tol=-1)
    with pytest.raises(ConfigError, match="n_restarts"):
        cp_als(torch.randn(3, 3), 1, n_restarts=0)
    with pytest.raises(ConfigError, match="dtype"):
        cp_als(torch.randn(3, 3), 1, dtype=torch.float16)
    with pytest.raises(TenfoldError):
        cp_als(torch.randn(3, 3), 1, init=CPTensor(torch.ones(2), [torch.ones(3, 2), torch.ones(3, 2)]))


def test_a_given_cp_tensor_can_start_the_fit():
    tensor = planted((6, 5, 4), 2, seed=9)
    first = cp_als(tensor, 2, n_iter_max=3, tol=0)
    resumed = cp_als(tensor, 2, init=first.cp, n_iter_max=200, tol=1e-12)
    assert resumed.relative_error < min(1e-4, first.relative_error)


# ---------------------------------------------------------------------------------------------- reshaping


def test_cp3_and_cp4_reshape_round_trips():
    conv = torch.randn(8, 4, 3, 5)
    four = cp_reshape(conv, "cp4")
    three = cp_reshape(conv, "cp3")
    assert four.shape == (8, 4, 3, 5) and three.shape == (8, 4, 15)
    assert torch.equal(cp_unreshape(three, conv.shape), conv)
    assert torch.equal(cp_unreshape(four, conv.shape), conv)
    linear = torch.randn(6, 5)
    assert cp_reshape(linear, "cp3").shape == (6, 5) and cp_reshape(linear).shape == (6, 5)
    result = cp_als(cp_reshape(conv, "cp3"), 3, n_iter_max=5)
    assert cp_unreshape(result.cp.to_tensor(), conv.shape).shape == conv.shape


def test_reshape_rejects_bad_input():
    with pytest.raises(ConfigError, match="cp3"):
        cp_reshape(torch.randn(3, 3, 3, 3), "cp2")
    with pytest.raises(ModelError, match="at least 2"):
        cp_reshape(torch.randn(3), "cp4")
    with pytest.raises(ModelError, match="original weight"):
        cp_unreshape(torch.randn(8, 4, 14), (8, 4, 3, 5))


# ---------------------------------------------------------------------------------------------- TensorLy


@pytest.mark.filterwarnings("ignore:Trying to compute SVD")
@pytest.mark.parametrize("init", ["svd", "random"])
def test_error_agrees_with_tensorly_parafac(init):
    tensorly = pytest.importorskip("tensorly")
    from tensorly.decomposition import parafac

    gen = torch.Generator().manual_seed(0)
    tensor = planted((10, 9, 3, 3), 4, seed=1) + 0.3 * torch.randn(10, 9, 3, 3, generator=gen, dtype=torch.float64)
    ours = cp_als(tensor, 6, n_iter_max=30, tol=0, init=init)
    theirs = parafac(tensor.numpy(), 6, n_iter_max=30, tol=0, init=init, random_state=0)
    their_error = float(np.linalg.norm(tensor.numpy() - tensorly.cp_to_tensor(theirs)) / np.linalg.norm(tensor.numpy()))
    assert ours.relative_error < 1.25 * their_error
    assert their_error < 1.25 * ours.relative_error
