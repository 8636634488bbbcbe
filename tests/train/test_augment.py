"""Batch augmentation and knowledge distillation in `fit`."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional
from torch.utils.data import TensorDataset

from tenfold.errors import ConfigError, DataError
from tenfold.train import TrainConfig, evaluate, fit
from tenfold.train.augment import augment_batch, distillation_loss, frozen_teacher


def images(n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 2, 6, 5, generator=torch.Generator().manual_seed(seed))


def test_crop_is_a_shift_of_the_zero_padded_image():
    x = images(32)
    out = augment_batch(x, "crop", 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    padded = functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):  # every output equals exactly one window of its own padded image
        windows = [(dy, dx) for dy in range(5) for dx in range(5)
                   if torch.equal(padded[i, :, dy:dy + 6, dx:dx + 5], out[i])]
        assert windows, f"sample {i} is not a window of its padded input"
    assert not torch.equal(out, x)  # with 25 offsets and 32 samples some shift happened


def test_flip_crop_flips_about_half_and_is_seeded():
    x = images(400)
    a = augment_batch(x, "flip_crop", 0, torch.Generator().manual_seed(3))
    b = augment_batch(x, "flip_crop", 0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    flipped = sum(torch.equal(a[i], x[i].flip(-1)) for i in range(len(x)))
    assert 150 < flipped < 250
    assert all(torch.equal(a[i], x[i]) or torch.equal(a[i], x[i].flip(-1)) for i in range(len(x)))


def test_augment_none_is_identity_and_flat_inputs_are_rejected():
    x = images(4)
    assert augment_batch(x, "none", 4, torch.Generator()) is x
    with pytest.raises(DataError, match="augment: none"):
        augment_batch(torch.randn(4, 10), "crop", 4, torch.Generator())


def test_distillation_loss_is_zero_for_equal_logits_and_positive_otherwise():
    logits = torch.randn(8, 5)
    assert float(distillation_loss(logits, logits, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(distillation_loss(torch.randn(8, 5), logits, 4.0)) > 0


def blobs(n: int, seed: int) -> TensorDataset:
    centres = torch.randn(3, 8, generator=torch.Generator().manual_seed(99)) * 3
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    return TensorDataset(centres[labels] + torch.randn(n, 8, generator=generator), labels)


def test_pure_distillation_makes_the_student_agree_with_the_teacher():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    fit(teacher, blobs(600, 0), None, TrainConfig(epochs=5, lr=1e-2), progress=False)
    # labels the student sees are garbage; with alpha = 1 only the teacher's soft targets count
    x = blobs(600, 0).tensors[0]
    noisy = TensorDataset(x, torch.randint(0, 3, (600,), generator=torch.Generator().manual_seed(5)))
    torch.manual_seed(1)
    student = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    fit(student, noisy, None, TrainConfig(epochs=8, lr=1e-2, distill_alpha=1.0), teacher=frozen_teacher(teacher),
        progress=False)
    val = blobs(300, 7)
    agreement = (student(val.tensors[0]).argmax(1) == teacher(val.tensors[0]).argmax(1)).float().mean()
    assert agreement > 0.95
    assert evaluate(student, val).accuracy > 0.9


def test_frozen_teacher_is_independent_of_later_edits():
    model = nn.Linear(3, 2)
    teacher = frozen_teacher(model)
    with torch.no_grad():
        model.weight.zero_()
    assert teacher.weight.abs().sum() > 0 and not teacher.weight.requires_grad and not teacher.training


def test_distillation_settings_are_checked():
    with pytest.raises(ConfigError, match="teacher"):
        fit(nn.Linear(8, 3), blobs(30, 0), None, TrainConfig(epochs=1, distill_alpha=0.5), progress=False)
    with pytest.raises(ConfigError, match="distill_alpha"):
        fit(nn.Linear(8, 3), blobs(30, 0), None, TrainConfig(epochs=1), teacher=nn.Linear(8, 3), progress=False)
    with pytest.raises(ConfigError, match="distill_alpha"):
        TrainConfig(distill_alpha=1.5)
    with pytest.raises(ConfigError, match="augment"):
        TrainConfig(augment="mixup")  # type: ignore[arg-type]


def test_augmented_training_is_reproducible():
    data = TensorDataset(images(64, 2), torch.arange(64) % 2)

    def run() -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(60, 2))
        fit(model, data, None, TrainConfig(epochs=2, augment="flip_crop", crop_padding=1), progress=False)
        return model[1].weight.detach().clone()

    assert torch.equal(run(), run())
