"""Rank sensitivity and rank selection: targets met, sensitive layers protected, weights restored exactly."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import DataLoader, TensorDataset

from tenfold.decompose._checks import max_cp_rank
from tenfold.decompose.accounting import account_layer, account_model, decomposed_shape
from tenfold.decompose.ranks import InfeasibleRankTargetError, RankTarget, TargetLimit, select_ranks
from tenfold.decompose.sensitivity import (
    LayerSensitivity,
    RankCandidate,
    RankSensitivity,
    SensitivityConfig,
    rank_ladder,
    rank_sensitivity,
    reconstruct_weight,
)
from tenfold.errors import ConfigError, DataError, ModelError, TenfoldError
from tenfold.hardware import estimate, make_config

FAST = SensitivityConfig(n_batches=2, batch_size=64, n_iter_max=20)


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 4 * 4, 10))


def tiny_data(n: int = 192) -> TensorDataset:
    gen = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen))


@pytest.fixture(scope="module")
def cnn_table():
    model = tiny_cnn()
    return model, rank_sensitivity(model, tiny_data(), FAST)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


# ---------------------------------------------------------------------------------------------- ladder


@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (10, 256), (32, 16, 5), (64, 64, 3, 3)])
@pytest.mark.parametrize("method", ["cp4", "cp3", "tucker2"])
def test_rank_ladder_hits_each_ratio_and_compresses(shape, method):
    ladder = rank_ladder(shape, method)
    numel = math.prod(shape)
    assert ladder == sorted(set(ladder)) and ladder[0] >= 1
    params = {r: account_layer(shape, method, r).params_after for r in ladder}
    assert all(p < numel for p in params.values())
    for ratio in (2, 4, 8, 16, 32, 64):
        fitting = [r for r in ladder if params[r] <= numel / ratio]
        if fitting:  # the ladder holds the largest rank within that ratio's budget
            assert account_layer(shape, method, max(fitting) + 1).params_after > numel / ratio or \
                max(fitting) == ladder[-1]
    if method != "tucker2":
        assert ladder[-1] <= max_cp_rank(decomposed_shape(shape, method))


# ---------------------------------------------------------------------------------------------- sensitivity


def test_sensitivity_table_is_consistent_and_restores_the_model(cnn_table):
    model, table = cnn_table
    assert table.names == ["0", "2", "5"]
    for layer in table.layers:
        assert layer.candidates[0].rank is None and layer.candidates[0].loss_increase == 0.0
        assert layer.ranks == rank_ladder(layer.shape, "cp4")
        errors = [c.relative_error for c in layer.candidates[1:]]
        assert 0 < errors[-1] < errors[0] <= 1.0  # more rank, closer weight
    assert table.n_samples == 128 and math.isfinite(table.baseline_loss)
    # one candidate re-measured by hand: swap the weight, evaluate the same two batches
    candidate = table.layer("2").candidate(4)
    fresh = tiny_cnn()
    rebuilt, error = reconstruct_weight(fresh[2].weight, 4, FAST)
    assert error == pytest.approx(candidate.relative_error)
    x, y = tiny_data()[:128]
    with torch.no_grad():
        before = nn.functional.cross_entropy(fresh(x), y).item()
        fresh[2].weight.copy_(rebuilt)
        after = nn.functional.cross_entropy(fresh(x), y).item()
    assert candidate.loss_increase == pytest.approx(after - before, abs=1e-5)
    assert_same_state(model, state(tiny_cnn()))
    json.dumps(table.to_dict())


def test_sensitivity_is_deterministic_reports_progress_and_keeps_train_flags():
    model = tiny_cnn()
    model.train()
    model[2].eval()  # a mixed state must come back as it was
    loader = DataLoader(tiny_data(), batch_size=32, shuffle=True)
    calls = []
    first = rank_sensitivity(model, loader, FAST, layers=["2", "5"], candidates={"2": [1, 4], "5": [1, 3]},
                             progress=lambda done, total, text: calls.append((done, total, text)))
    second = rank_sensitivity(model, loader, FAST, layers=["2", "5"], candidates={"2": [1, 4], "5": [1, 3]})
    assert [[c.loss_increase for c in layer.candidates] for layer in first.layers] == \
        [[c.loss_increase for c in layer.candidates] for layer in second.layers]
    assert first.layer("5").ranks == [1, 3]
    total = 1 + 2 + 2
    assert [c[0] for c in calls] == list(range(1, total + 1)) and {c[1] for c in calls} == {total}
    assert calls[0][2] == "baseline" and calls[-1][2] == "5 rank 3"
    assert model.training and not model[2].training and model[0].training


def test_weights_restored_when_the_loss_fails_midway():
    model = tiny_cnn()
    before = state(model)
    calls = {"n": 0}

    def flaky(outputs, targets):
        calls["n"] += 1
        if calls["n"] == 4:  # baseline (2 batches), first candidate's first batch, then fail
            raise RuntimeError("boom")
        return nn.functional.cross_entropy(outputs, targets)

    with pytest.raises(RuntimeError, match="boom"):
        rank_sensitivity(model, tiny_data(), FAST, loss_fn=flaky, layers=["2"])
    assert_same_state(model, before)
    assert model.training


def test_sensitivity_refuses_bad_inputs():
    model = tiny_cnn()
    with pytest.raises(ModelError, match="not Conv1d/Conv2d/Linear"):
        rank_sensitivity(model, tiny_data(), FAST, layers=["1"])
    with pytest.raises(ConfigError, match="above the largest useful"):
        rank_sensitivity(model, tiny_data(), FAST, layers=["0"], candidates={"0": [50]})
    with pytest.raises(DataError, match="DataLoader or Dataset"):
        rank_sensitivity(model, [torch.zeros(2, 1, 8, 8)], FAST)
    with pytest.raises(ConfigError, match="ratios"):
        SensitivityConfig(ratios=(0.5,))
    pruned = tiny_cnn()
    torch_prune.l1_unstructured(pruned[2], "weight", amount=0.5)
    with pytest.raises(ModelError, match="pruning mask"):
        rank_sensitivity(pruned, tiny_data(), FAST, layers=["2"])


# ---------------------------------------------------------------------------------------------- targets


def test_target_parsing():
    assert RankTarget.parse("10x").limits == (TargetLimit("params", 0.1, "x"),)
    assert RankTarget.parse(4).describe() == "4x"
    target = RankTarget.parse("params<=5000, bits<=0.05x; bram<=30%")
    assert [(t.resource, t.unit) for t in target.limits] == [("params", "abs"), ("bits", "x"), ("bram18", "%")]
    assert target.needs_hardware and not RankTarget.parse("bits<=1e5").needs_hardware
    for bad, match in [("abc", "cannot parse"), ("params<=5%", "cannot be a %"), ("0.5x", "ratio >= 1"),
                       ("uram<=3", "unknown resource"), ("", "rank target")]:
        with pytest.raises(ConfigError, match=match):
            RankTarget.parse(bad)


# ---------------------------------------------------------------------------------------------- selection


@pytest.mark.parametrize("target", ["8x", "params<=900", "bits<=0.06x"])
def test_plan_meets_its_target(cnn_table, target):
    model, table = cnn_table
    plan = select_ranks(table, target)
    before = sum(m.weight.numel() for m in (model[0], model[2], model[5]))
    assert plan.params_before == before
    account = account_model(model, plan.ranks, factor_bits=8)  # the plan's ranks priced independently
    assert account.params_after == plan.params_after and account.bits_after == plan.bits_after
    if target == "8x":
        assert plan.ratio >= 8
    elif target == "params<=900":
        assert plan.params_after <= 900
    else:
        assert plan.bits_after <= 0.06 * before * 16
    assert plan.gap is not None and plan.gap <= 1e-3 and plan.status
    assert plan.predicted_loss_increase == pytest.approx(sum(r.loss_increase for r in plan.rows))


def test_plan_ranks_format(cnn_table):
    model, table = cnn_table
    plan = select_ranks(table, "4x")
    assert isinstance(plan.ranks, dict) and plan.ranks
    for name, rank in plan.ranks.items():
        assert isinstance(name, str) and type(rank) is int and rank >= 1
        assert isinstance(dict(model.named_modules())[name], nn.Conv2d | nn.Linear)
    kept = {row.name for row in plan.rows if row.rank is None}
    assert kept.isdisjoint(plan.ranks) and kept | set(plan.ranks) == set(table.names)
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["ranks"] == plan.ranks and data["ratio"] >= 4 and len(data["layers"]) == 3


def test_model_scope_counts_every_parameter(cnn_table):
    model, table = cnn_table
    total = sum(p.numel() for p in model.parameters())
    plan = select_ranks(table, "5x", scope="model")
    assert plan.params_before == plan.model_params_before == total
    assert plan.model_params_after * 5 <= total
    narrow = select_ranks(table, "5x")
    assert narrow.model_ratio < narrow.ratio  # biases are not compressed


def test_infeasible_target_names_the_best_ratio(cnn_table):
    _, table = cnn_table
    smallest = sum(min(account_layer(layer.shape, "cp4", c.rank).params_after for c in layer.candidates)
                   for layer in table.layers)
    best = sum(math.prod(layer.shape) for layer in table.layers) / smallest
    with pytest.raises(InfeasibleRankTargetError) as info:
        select_ranks(table, "1000x")
    assert info.value.best_ratio == pytest.approx(best)
    assert f"{best:.3g}x" in str(info.value) and isinstance(info.value, TenfoldError)
    plan = select_ranks(table, f"{best * 0.999}x")  # just inside the best ratio is feasible
    assert plan.ratio >= best * 0.999


class TwoBranch(nn.Module):
    """``fc_a`` drives the output; ``fc_b`` is damped 100x, so its weights barely matter."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.fc_a, self.fc_b, self.head = nn.Linear(24, 24), nn.Linear(24, 24), nn.Linear(24, 4)
        with torch.no_grad():
            # fc_a is nearly low rank (small reconstruction error), fc_b has a flat spectrum (large error)
            left, right = (torch.linalg.qr(torch.randn(24, 24, generator=gen))[0] for _ in range(2))
            self.fc_a.weight.copy_((left * torch.arange(1, 25.0) ** -1.5) @ right.T)
            self.fc_b.weight.copy_(torch.randn(24, 24, generator=gen) / 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc_a(x)) + 0.01 * torch.relu(self.fc_b(x)))


def test_loss_aware_selection_protects_the_sensitive_layer():
    model = TwoBranch()
    x = torch.randn(256, 24, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        data = TensorDataset(x, model(x))  # distillation target: any change of the output costs loss
    ranks = {"fc_a": [1, 2, 4, 8], "fc_b": [1, 2, 4, 8]}
    table = rank_sensitivity(model, data, FAST, loss_fn=nn.functional.mse_loss, layers=["fc_a", "fc_b"],
                             candidates=ranks)
    target = "params<=480"  # 48 parameters per rank and layer: at most 10 ranks in total, no layer kept
    by_loss = select_ranks(table, target, value="loss")
    by_error = select_ranks(table, target, value="error")
    assert by_loss.ranks["fc_a"] > by_error.ranks["fc_a"]
    assert by_error.ranks["fc_b"] > by_loss.ranks["fc_b"]
    # the loss-aware plan really loses less when both layers are decomposed together
    measured = {}
    for plan in (by_loss, by_error):
        trial = TwoBranch()
        with torch.no_grad():
            for name, rank in plan.ranks.items():
                getattr(trial, name).weight.copy_(reconstruct_weight(getattr(trial, name).weight, rank, FAST)[0])
            measured[plan.value] = nn.functional.mse_loss(trial(x), data.tensors[1]).item()
    assert measured["loss"] < measured["error"]


def test_hardware_budget_plan(cnn_table):
    model, table = cnn_table
    config = make_config(strategy="Resource", reuse_factor=8)
    baseline = estimate(model, (1, 8, 8), config, validate_reuse=False)
    plan = select_ranks(table, "bram<=0.5x", baseline_cost=baseline, hls_config=config)
    assert plan.resources is not None
    assert plan.resources["after"]["bram18"] <= 0.5 * baseline.totals["bram18"]
    assert plan.ranks and all(row.resources is not None for row in plan.rows)
    with pytest.raises(ConfigError, match="baseline_cost"):
        select_ranks(table, "dsp<=0.5x")


def test_selection_argument_checks(cnn_table):
    _, table = cnn_table
    with pytest.raises(ConfigError, match="value must be one of"):
        select_ranks(table, "2x", value="accuracy")
    with pytest.raises(ConfigError, match="scope must be"):
        select_ranks(table, "2x", scope="all")
    with pytest.raises(ConfigError, match="RankSensitivity"):
        select_ranks({"0": [1]}, "2x")


def test_non_finite_candidates_are_never_chosen():
    layer = LayerSensitivity("fc", "Linear", (16, 16), [RankCandidate(None, 0.0, 0.0),
                                                         RankCandidate(1, math.nan, 0.9),
                                                         RankCandidate(2, 0.5, 0.8)])
    table = RankSensitivity([layer], baseline_loss=1.0, other_params=16, n_samples=8)
    assert select_ranks(table, "2x").ranks == {"fc": 2}  # rank 1 is cheaper but made the loss NaN
