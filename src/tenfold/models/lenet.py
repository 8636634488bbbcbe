"""LeNet-5-style CNN for small greyscale images (MNIST 28×28, scikit-learn digits 8×8, ...).

Structure: conv(6, 5×5, pad 2)-ReLU-maxpool-conv(16, 5×5)-ReLU-maxpool-flatten-fc120-ReLU-fc84-ReLU-fc.
The flatten size is computed from ``image_size``. The second convolution is unpadded as in LeNet-5
when the image is large enough (28×28 → 16·5·5 = 400 features) and "same"-padded when it is not,
so tiny images such as the 8×8 digits still give a ≥1×1 map (8×8 → 16·2·2 = 64 features).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from tenfold.errors import ModelError
from tenfold.models._checks import positive_int
from tenfold.models.registry import register

__all__ = ["LeNet"]

_KERNEL = 5
_MIN_IMAGE = 4  # smallest side that survives two 2×2 pools with a "same" second conv


def _image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, Sequence) and not isinstance(image_size, str):
        if len(image_size) != 2:
            raise ModelError(f"lenet: argument 'image_size' must be an int or (height, width), got {image_size!r}")
        h, w = (positive_int("lenet", "image_size", v, minimum=_MIN_IMAGE) for v in image_size)
        return h, w
    side = positive_int("lenet", "image_size", image_size, minimum=_MIN_IMAGE)
    return side, side


@register("lenet", description="LeNet-5-style CNN for 28×28 greyscale (any size >= 4, e.g. 8×8 digits)")
class LeNet(nn.Sequential):
    """LeNet-5-style CNN returning logits; a flat ``nn.Sequential`` of named layers for hls4ml.

    ``image_size`` is an int (square) or ``(height, width)``; input is (N, in_channels, H, W).
    """

    def __init__(self, in_channels: int = 1, image_size: int | Sequence[int] = 28, num_classes: int = 10) -> None:
        in_channels = positive_int("lenet", "in_channels", in_channels)
        num_classes = positive_int("lenet", "num_classes", num_classes)
        h, w = _image_hw(image_size)
        # conv1 keeps the size (pad 2), pool1 halves it.
        h, w = h // 2, w // 2
        # conv2 is unpadded (LeNet-5) only if the pooled map after it is still at least 1×1.
        pad2 = 0 if min(h, w) - (_KERNEL - 1) >= 2 else _KERNEL // 2
        h, w = h + 2 * pad2 - (_KERNEL - 1), w + 2 * pad2 - (_KERNEL - 1)
        h, w = h // 2, w // 2
        flat = 16 * h * w
        super().__init__(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, 6, _KERNEL, padding=_KERNEL // 2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(6, 16, _KERNEL, padding=pad2),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(flat, 120),
                relu3=nn.ReLU(),
                fc2=nn.Linear(120, 84),
                relu4=nn.ReLU(),
                fc3=nn.Linear(84, num_classes),
            )
        )
        self.in_channels = in_channels
        self.image_size = image_size
        self.num_classes = num_classes
        self.flat_features = flat
