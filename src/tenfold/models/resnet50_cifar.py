"""CIFAR ResNet-50: bottleneck blocks with a 3×3 stem and no max-pool (the common pytorch-cifar variant).

Stages of [3, 4, 6, 3] bottlenecks (1×1 → 3×3 → 1×1, expansion 4) at 64/128/256/512 planes with
strides 1/2/2/2; projection shortcuts (1×1 conv + BN) wherever the shape changes. Parameter names
follow kuangliu/pytorch-cifar (``conv1, bn1, layer{1..4}.{i}.conv1..3/bn1..3/shortcut.{0,1}, linear``),
so checkpoints trained with that code load directly. ~23.5M parameters at 10 classes.
The global pool is a fixed ``nn.AvgPool2d`` sized from ``image_size`` because hls4ml has no
``AdaptiveAvgPool2d`` converter, and identity shortcuts are plain additions (no ``nn.Identity``).
"""

from __future__ import annotations

import torch
from torch import nn

from tenfold.models._checks import positive_int
from tenfold.models.registry import register

__all__ = ["Bottleneck", "ResNet50Cifar"]


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carries the stride), 1×1 expand ×4; shortcut projection when shapes change."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: nn.Sequential | None = None  # identity; hls4ml cannot convert nn.Identity
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
            )
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + (x if self.shortcut is None else self.shortcut(x)))


@register("resnet50", description="CIFAR ResNet-50 (bottlenecks [3,4,6,3], 3×3 stem, no max-pool), 23.5M params")
class ResNet50Cifar(nn.Module):
    """CIFAR ResNet-50 returning logits; ``num_classes=100`` for CIFAR-100.

    Input (N, in_channels, image_size, image_size); 32×32 for CIFAR (32→32→16→8→4, then a 4×4 avg-pool).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        self.num_classes = positive_int("resnet50", "num_classes", num_classes)
        self.in_channels = positive_int("resnet50", "in_channels", in_channels)
        self.image_size = positive_int("resnet50", "image_size", image_size)
        self.in_planes = 64
        self.conv1 = nn.Conv2d(self.in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(64, 3, stride=1)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        final = self.image_size
        for _ in range(3):  # three stride-2 stages, each ceil(size / 2)
            final = -(-final // 2)
        self.avgpool = nn.AvgPool2d(final)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(512 * Bottleneck.expansion, self.num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(Bottleneck(self.in_planes, planes, s))
            self.in_planes = planes * Bottleneck.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.flatten(self.avgpool(out)))
