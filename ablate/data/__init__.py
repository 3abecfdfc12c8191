"""Datasets: decode once, cache the resized splits, and batch them on the training device.

``load_dataset(DataSpec(...))`` returns a ``DatasetInfo`` and ``{"train": Split, "val": Split}``;
a ``Split`` is the whole split decoded and resized to ``image_size`` x ``image_size``, kept in
memory as uint8 (``cache``). Each dataset is one module here that registers one function in
``DATASETS`` (``spec``); ``BatchLoader`` batches and augments a split on the device (``loader``).
"""

from . import folder, pets, shapes, voc  # noqa: F401  (each registers its dataset)
from .cache import load_dataset
from .loader import Augment, BatchLoader
from .spec import (
                   DATASETS,
                   IGNORE,
                   IMAGENET_MEAN,
                   IMAGENET_STD,
                   SPLITS,
                   DatasetInfo,
                   DataSpec,
                   Split,
)

__all__ = ["DATASETS", "IGNORE", "IMAGENET_MEAN", "IMAGENET_STD", "SPLITS", "Augment",
           "BatchLoader", "DataSpec", "DatasetInfo", "Split", "load_dataset"]
