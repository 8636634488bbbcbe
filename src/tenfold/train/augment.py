"""On-the-fly batch augmentation and distillation loss for fine-tuning compressed models.

Compression removes capacity; recovering accuracy with a few epochs on a small training set overfits unless the
batches are perturbed and the student is taught by the uncompressed model's soft outputs. Both run on the
tensors already in memory, so they need no extra dataset transforms and stay seeded.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from tenfold.errors import DataError


def augment_batch(inputs: torch.Tensor, mode: str, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Randomly shifted (zero-padded crop) and, for "flip_crop", horizontally flipped copies of NCHW images.

    Flat (N, F) inputs cannot be shifted meaningfully, so they are an error that says which setting to change.
    """
    if mode == "none":
        return inputs
    if inputs.dim() != 4:
        raise DataError(
            f"augment={mode!r} needs image batches (N, C, H, W), got shape {tuple(inputs.shape)}; "
            "set augment: none for flat inputs"
        )
    n, _, height, width = inputs.shape
    out = inputs
    if padding > 0:
        padded = functional.pad(inputs, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(height)[None, :]).to(inputs.device)  # (N, H)
        cols = (dx[:, None] + torch.arange(width)[None, :]).to(inputs.device)  # (N, W)
        index = torch.arange(n, device=inputs.device)[:, None, None, None]
        channel = torch.arange(inputs.shape[1], device=inputs.device)[None, :, None, None]
        out = padded[index, channel, rows[:, None, :, None], cols[:, None, None, :]]
    if mode == "flip_crop":
        flip = (torch.rand(n, generator=generator) < 0.5).to(inputs.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hinton et al.'s soft-target loss, T^2 * KL(teacher_T || student_T), averaged over the batch."""
    log_student = functional.log_softmax(student_logits / temperature, dim=1)
    log_teacher = functional.log_softmax(teacher_logits / temperature, dim=1)
    return functional.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * temperature**2


def frozen_teacher(model: nn.Module) -> nn.Module:
    """An eval-mode, gradient-free copy of `model` that later in-place edits of `model` cannot change."""
    from tenfold.modules import clone_module

    teacher = clone_module(model).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher
