"""Encoder initialisation recipes by name: the ``INITS`` registry (data only).

A recipe says which built-in data, which network and how long; ``ablate.training.pretrain``
trains it once and caches the encoder. The registry lives apart from that code so that
``TrainConfig`` can validate ``encoder_init`` names without importing the training stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..common.registry import Registry


@dataclass(frozen=True)
class InitRecipe:
    """How an encoder initialisation is made: which data, which network, how long."""

    dataset: str
    options: Mapping[str, Any]                # dataset options (a seed no study uses)
    train: Mapping[str, Any]                  # TrainConfig keys on top of the quick preset
    variant: Mapping[str, Any] = field(default_factory=dict)  # knobs besides the encoder
    seed: int = 0


INITS: Registry = Registry("encoder init")

INITS.register("shapes-clean", help="3 epochs of 4,096 clean shapes images (generator seed 1000) "
               "on seed 002's decoder; about a minute on 2 CPU cores at 32 px")(InitRecipe(
                   dataset="shapes",
                   options={"style": "clean", "n_train": 4096, "n_val": 64, "seed": 1000},
                   train={"epochs": 3, "batch_size": 16, "lr": 3e-3, "loss": "bce+dice",
                          "augment": True},
                   variant={"widths": (180, 90, 45, 45), "block": "dsconv"}))
