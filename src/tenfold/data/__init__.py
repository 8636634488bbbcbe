"""Dataset loaders returning seeded, normalised train/validation/test splits with class names.

Every loader returns a :class:`DataSplits`: float32 inputs (NCHW for images) and int64 labels in
``TensorDataset``s, the class names, the per-sample input shape, and the normalisation applied.
Validation data are carved from the training data (stratified, seeded) and normalisation
statistics come from the training split only. Every bad input raises :class:`tenfold.errors.DataError`.
"""

from __future__ import annotations

from tenfold.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR_PRETRAINED_MEAN,
    CIFAR_PRETRAINED_STD,
    load_cifar10,
    load_cifar100,
)
from tenfold.data.digits import load_digits
from tenfold.data.idx import read_idx, write_idx
from tenfold.data.jets import JET_CLASSES, JET_FEATURES, load_jets
from tenfold.data.mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEFAULT_PATH,
    MNIST_CLASSES,
    load_fashion_mnist,
    load_mnist,
)
from tenfold.data.registry import DATASET_ALIASES, list_datasets, load_dataset
from tenfold.data.splits import DataSplits
from tenfold.data.synthetic import make_synthetic

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_PRETRAINED_MEAN",
    "CIFAR_PRETRAINED_STD",
    "DATASET_ALIASES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_PATH",
    "JET_CLASSES",
    "JET_FEATURES",
    "MNIST_CLASSES",
    "DataSplits",
    "list_datasets",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_jets",
    "load_mnist",
    "make_synthetic",
    "read_idx",
    "write_idx",
]
