"""VGG-16/19 with BatchNorm for 32×32 inputs (the kuangliu/pytorch-cifar variant).

Chosen variant: ``features`` = the standard VGG configuration of conv3×3(pad 1, bias)-BN-ReLU blocks
and 2×2 max-pools (five pools take 32×32 to 1×1×512), then ``flatten`` and a single
``classifier = Linear(512, num_classes)``. This single-layer head is the most common CIFAR variant
(≈14.7M parameters for VGG-16, ≈20.0M for VGG-19); the ImageNet 4096-4096 head would be useless at
1×1 spatial size and would dominate any FPGA budget. Parameter names (``features.<i>``,
``classifier``) match pytorch-cifar checkpoints; its trailing ``AvgPool2d(1)`` no-op is omitted.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from tenfold.errors import ModelError
from tenfold.models._checks import positive_int
from tenfold.models.registry import register

__all__ = ["VGG_CONFIGS", "VGGCifar", "vgg16", "vgg19"]

VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip
"""Standard VGG layer configurations: an int is a conv3×3-BN-ReLU with that many filters, "M" a max-pool."""


class VGGCifar(nn.Module):
    """VGG with BatchNorm and a Linear(512, num_classes) head for 32×32 images; returns logits.

    Input must be (N, in_channels, 32, 32): the five pools must leave a 1×1 map for the 512-wide head.
    """

    def __init__(
        self, config: Literal["vgg16", "vgg19"] = "vgg16", num_classes: int = 10, in_channels: int = 3
    ) -> None:
        super().__init__()
        if config not in VGG_CONFIGS:
            raise ModelError(f"vgg: argument 'config' must be one of {sorted(VGG_CONFIGS)}, got {config!r}")
        self.config = config
        self.num_classes = positive_int(config, "num_classes", num_classes)
        self.in_channels = positive_int(config, "in_channels", in_channels)
        layers: list[nn.Module] = []
        channels = self.in_channels
        for item in VGG_CONFIGS[config]:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                assert isinstance(item, int)
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


@register("vgg16", description="CIFAR VGG-16 with BatchNorm, Linear(512, classes) head, 14.7M params")
def vgg16(num_classes: int = 10, in_channels: int = 3) -> VGGCifar:
    """VGG-16-BN for 32×32 inputs (13 conv layers + 1 linear)."""
    return VGGCifar("vgg16", num_classes=num_classes, in_channels=in_channels)


@register("vgg19", description="CIFAR VGG-19 with BatchNorm, Linear(512, classes) head, 20.0M params")
def vgg19(num_classes: int = 10, in_channels: int = 3) -> VGGCifar:
    """VGG-19-BN for 32×32 inputs (16 conv layers + 1 linear)."""
    return VGGCifar("vgg19", num_classes=num_classes, in_channels=in_channels)
