"""Model zoo: the benchmark architectures tenfold compresses, reachable by name through a registry.

``create("resnet20", pretrained=path)`` builds a model (and loads a local checkpoint); ``register()``
adds users' own architectures; ``model_spec(model)`` gives the ``{"name", "kwargs"}`` dict that
``create(**spec)`` rebuilds the architecture from. Every model is built from plain named
``nn.Linear``/``nn.Conv2d``/``nn.BatchNorm2d``/``nn.ReLU``/``nn.MaxPool2d``/``nn.Flatten`` modules, so
hls4ml's PyTorch front end and tenfold's pruning passes can walk them.

Built-ins: ``mlp``, ``jet_mlp`` (aliases ``jet-tagger``, ``jet_tagger``), ``lenet``,
``resnet20/32/44/56`` (and ``resnet_cifar`` of any depth 6n+2), ``resnet50``, ``vgg16``, ``vgg19``.

Note: the pretrained CIFAR ResNet checkpoints (pytorch_resnet_cifar10) expect RGB inputs scaled to
[0, 1] and normalised with mean ``PRETRAINED_CIFAR_MEAN`` = (0.485, 0.456, 0.406) and std
``PRETRAINED_CIFAR_STD`` = (0.229, 0.224, 0.225). Their keys carry a DataParallel ``module.`` prefix,
which ``load_pretrained`` strips.
"""

from __future__ import annotations

from tenfold.models.lenet import LeNet
from tenfold.models.mlp import MLP, jet_mlp
from tenfold.models.pretrained import (
    PRETRAINED_CIFAR_MEAN,
    PRETRAINED_CIFAR_STD,
    extract_state_dict,
    load_pretrained,
)
from tenfold.models.registry import create, describe_models, list_models, model_spec, register, unregister
from tenfold.models.resnet50_cifar import Bottleneck, ResNet50Cifar
from tenfold.models.resnet_cifar import BasicBlock, OptionAShortcut, ResNetCifar
from tenfold.models.sizing import default_input_shape, kwargs_for_data
from tenfold.models.vgg_cifar import VGGCifar

__all__ = [
    "MLP",
    "PRETRAINED_CIFAR_MEAN",
    "PRETRAINED_CIFAR_STD",
    "BasicBlock",
    "Bottleneck",
    "LeNet",
    "OptionAShortcut",
    "ResNet50Cifar",
    "ResNetCifar",
    "VGGCifar",
    "create",
    "default_input_shape",
    "describe_models",
    "extract_state_dict",
    "jet_mlp",
    "kwargs_for_data",
    "list_models",
    "load_pretrained",
    "model_spec",
    "register",
    "unregister",
]
