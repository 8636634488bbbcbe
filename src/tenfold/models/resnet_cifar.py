"""CIFAR ResNet-20/32/44/56 (He et al. 2016, §4.2) with option-A (parameter-free) shortcuts.

Parameter names match the public pytorch_resnet_cifar10 checkpoints (``conv1, bn1,
layer{1,2,3}.{i}.conv1/bn1/conv2/bn2, linear``) so they load strictly after the ``module.`` prefix is
stripped. Differences from that code that do not change the weights or the function: ReLUs, the
global average pool and the flatten are named modules (hls4ml and pruning hooks see them), and the
shortcut is an ``OptionAShortcut`` module instead of a lambda, so models pickle and deep-copy.
The global pool is a fixed ``nn.AvgPool2d`` sized from ``image_size`` (32 for CIFAR) because hls4ml
has no converter for ``AdaptiveAvgPool2d``; inputs must therefore be image_size × image_size.
The one operation hls4ml cannot convert is the option-A channel zero-padding (``F.pad``) in the
three stride-2 shortcuts; identity shortcuts are plain additions, with no ``nn.Identity`` module.

The pretrained checkpoints expect RGB inputs scaled to [0, 1] and then normalised with mean
(0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) (``PRETRAINED_CIFAR_MEAN``/``_STD``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tenfold.errors import ModelError
from tenfold.models._checks import positive_int
from tenfold.models.registry import register

__all__ = ["BasicBlock", "OptionAShortcut", "ResNetCifar", "resnet20", "resnet32", "resnet44", "resnet56"]


def _kaiming_init(module: nn.Module) -> None:
    """Initialisation of the reference implementation (kaiming-normal Linear and Conv weights)."""
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.kaiming_normal_(module.weight)


class OptionAShortcut(nn.Module):
    """Identity shortcut that subsamples space by ``stride`` and zero-pads channels (option A).

    No parameters: the padded channels are split evenly before and after the input channels,
    exactly like ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))`` upstream.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        if out_planes < in_planes:
            raise ModelError(f"OptionAShortcut cannot shrink channels ({in_planes} -> {out_planes})")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride
        self.pad_front = (out_planes - in_planes) // 2
        self.pad_back = out_planes - in_planes - self.pad_front

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN, plus shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # None for a plain identity: hls4ml has no converter for nn.Identity, so none is inserted.
        self.shortcut: OptionAShortcut | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = OptionAShortcut(in_planes, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + (x if self.shortcut is None else self.shortcut(x)))


@register("resnet_cifar", description="CIFAR ResNet of any depth 6n+2 with option-A shortcuts")
class ResNetCifar(nn.Module):
    """CIFAR ResNet of depth 6n+2: 16-32-64 channel stages of n basic blocks each, then avg-pool + linear.

    Expects (N, in_channels, image_size, image_size) (32×32 for CIFAR); returns logits. See the
    module docstring for the input normalisation the pretrained checkpoints need.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        depth = positive_int("resnet_cifar", "depth", depth, minimum=8)
        if (depth - 2) % 6:
            raise ModelError(f"resnet_cifar: argument 'depth' must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        num_classes = positive_int("resnet_cifar", "num_classes", num_classes)
        in_channels = positive_int("resnet_cifar", "in_channels", in_channels)
        image_size = positive_int("resnet_cifar", "image_size", image_size)
        blocks = (depth - 2) // 6
        self.depth, self.num_classes, self.in_channels, self.image_size = depth, num_classes, in_channels, image_size
        self.in_planes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._make_layer(16, blocks, stride=1)
        self.layer2 = self._make_layer(32, blocks, stride=2)
        self.layer3 = self._make_layer(64, blocks, stride=2)
        final = image_size
        for _ in range(2):  # two stride-2 stages, each ceil(size / 2)
            final = -(-final // 2)
        self.avgpool = nn.AvgPool2d(final)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(64, num_classes)
        self.apply(_kaiming_init)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(self.flatten(self.avgpool(out)))


def _resnet(depth: int, num_classes: int, in_channels: int, image_size: int) -> ResNetCifar:
    return ResNetCifar(depth=depth, num_classes=num_classes, in_channels=in_channels, image_size=image_size)


@register("resnet20", description="CIFAR ResNet-20, 0.27M params (pretrained CIFAR-10: 91.78% upstream)")
def resnet20(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """CIFAR ResNet-20 (3 blocks per stage, ~0.27M parameters)."""
    return _resnet(20, num_classes, in_channels, image_size)


@register("resnet32", description="CIFAR ResNet-32, 0.46M params (pretrained CIFAR-10: 92.78% upstream)")
def resnet32(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """CIFAR ResNet-32 (5 blocks per stage, ~0.46M parameters)."""
    return _resnet(32, num_classes, in_channels, image_size)


@register("resnet44", description="CIFAR ResNet-44, 0.66M params (pretrained CIFAR-10: 93.14% upstream)")
def resnet44(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """CIFAR ResNet-44 (7 blocks per stage, ~0.66M parameters)."""
    return _resnet(44, num_classes, in_channels, image_size)


@register("resnet56", description="CIFAR ResNet-56, 0.85M params (pretrained CIFAR-10: 93.62% upstream)")
def resnet56(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> ResNetCifar:
    """CIFAR ResNet-56 (9 blocks per stage, ~0.85M parameters)."""
    return _resnet(56, num_classes, in_channels, image_size)
