"""fit/evaluate: learning, seeding, early stopping, callbacks, resume and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from tenfold.errors import ConfigError, DataError
from tenfold.train import Callback, LambdaCallback, TrainConfig, evaluate, fit


def blobs(n: int = 600, seed: int = 0) -> TensorDataset:
    centres = torch.randn(3, 8, generator=torch.Generator().manual_seed(99)) * 3
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = centres[labels] + torch.randn(n, 8, generator=generator)
    return TensorDataset(x.float(), labels.long())


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def test_fit_learns_separable_data():
    train, val = blobs(600, 0), blobs(200, 1)
    model = small_model()
    before = evaluate(model, val).accuracy
    report = fit(model, train, val, TrainConfig(epochs=5, lr=1e-2), progress=False)
    after = evaluate(model, val)
    assert after.accuracy > 0.9 > before or after.accuracy > before + 0.3
    assert len(report.history) == 5
    assert report.best_val_accuracy == pytest.approx(max(r.val_accuracy for r in report.history))
    assert after.n_samples == 200


def test_same_seed_gives_identical_weights_and_different_seed_does_not():
    train = blobs()
    weights = []
    for seed in (3, 3, 4):
        model = small_model(0)
        fit(model, train, None, TrainConfig(epochs=2, seed=seed, lr=1e-2), progress=False)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_early_stopping_and_restore_best():
    train, val = blobs(300), blobs(100, 1)
    model = small_model()
    config = TrainConfig(epochs=50, lr=1e-2, early_stopping_patience=2, min_delta=0.5)
    report = fit(model, train, val, config, progress=False)
    assert report.stopped_early
    assert len(report.history) < 50
    assert evaluate(model, val).accuracy == pytest.approx(report.best_val_accuracy)


def test_callbacks_run_in_order_and_can_mask_gradients():
    train = blobs(200)
    model = small_model()
    first = model[0]
    mask = (torch.rand_like(first.weight) > 0.5).float()
    with torch.no_grad():
        first.weight.mul_(mask)
    calls: list[str] = []

    class Masker(Callback):
        def on_train_begin(self, state):
            calls.append("begin")

        def on_after_backward(self, state):
            first.weight.grad.mul_(mask)

        def on_step_end(self, state):
            with torch.no_grad():
                first.weight.mul_(mask)

        def on_train_end(self, state):
            calls.append("end")

    fit(model, train, None, TrainConfig(epochs=2, optimizer="adam", lr=1e-2), callbacks=[Masker()], progress=False)
    assert calls == ["begin", "end"]
    assert torch.all(first.weight[mask == 0] == 0)
    assert torch.count_nonzero(first.weight[mask == 1]) == int(mask.sum())


def test_regularization_term_is_applied():
    train = blobs(200)
    plain, regularised = small_model(), small_model()
    fit(plain, train, None, TrainConfig(epochs=3, lr=1e-2), progress=False)
    penalty = LambdaCallback(regularization=lambda state: 1.0 * sum(p.abs().sum() for p in state.model.parameters()))
    fit(regularised, train, None, TrainConfig(epochs=3, lr=1e-2), callbacks=[penalty], progress=False)
    norm = lambda m: sum(float(p.detach().abs().sum()) for p in m.parameters())  # noqa: E731
    assert norm(regularised) < 0.7 * norm(plain)


def test_stop_training_flag_ends_after_epoch():
    model = small_model()
    stopper = LambdaCallback(on_epoch_end=lambda state, record: setattr(state, "stop_training", True))
    report = fit(model, blobs(100), None, TrainConfig(epochs=10), callbacks=[stopper], progress=False)
    assert len(report.history) == 1 and report.stopped_early


def test_resume_reaches_the_same_result(tmp_path):
    train, val = blobs(300), blobs(100, 1)
    config = TrainConfig(epochs=4, lr=1e-2, optimizer="sgd", seed=7)
    reference = small_model()
    fit(reference, train, val, config, progress=False)

    state_file = tmp_path / "run.state"

    class InterruptAfterTwo(Callback):
        def on_epoch_end(self, state, record):
            if record.epoch == 1:
                raise KeyboardInterrupt

    interrupted = small_model()
    # the state is written after the epoch hooks; the interruption hits during epoch 2's hooks,
    # so the checkpoint holds epoch 1 (index 0) and the resumed run repeats epoch 2 deterministically
    report = fit(interrupted, train, val, config, callbacks=[InterruptAfterTwo()], progress=False,
                 checkpoint_path=state_file)
    assert report.interrupted and state_file.exists()
    resumed = small_model(seed=123)  # different init: everything must come from the state file
    report = fit(resumed, train, val, config, progress=False, checkpoint_path=state_file, resume=True)
    assert not report.interrupted and len(report.history) == 4
    for a, b in zip(reference.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_bad_inputs_give_clear_errors():
    model = small_model()
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 0.1})
    with pytest.raises(DataError, match="empty"):
        fit(model, TensorDataset(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long)), progress=False)
    with pytest.raises(DataError, match="Dataset"):
        fit(model, [1, 2, 3], progress=False)  # type: ignore[arg-type]
    wrong_labels = TensorDataset(torch.randn(10, 8), torch.full((10,), 7))
    with pytest.raises(DataError, match="out of range"):
        evaluate(model, wrong_labels)
    nan_data = TensorDataset(torch.full((10, 8), float("nan")), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ConfigError, match="loss became nan"):
        fit(model, nan_data, None, TrainConfig(epochs=1), progress=False)


def test_evaluate_restores_training_mode():
    model = small_model().train()
    evaluate(model, blobs(50))
    assert model.training
