"""Encoder initialisations made once from built-in data, cached, and shared by every variant.

Seed 002 started every variant from an ImageNet ResNet. Nothing may be downloaded here, so a
study can start its encoders from ``encoder_init: <name>`` (a ``TrainConfig`` key): a recipe
registered in ``INITS`` that trains one fixed network on a separate draw of the built-in data
(another generator seed than any study's) and keeps its encoder. It is trained once per (recipe,
encoder, image size, input channels), cached as a state_dict under ``<cache>/init/`` like the
datasets, and loaded into the encoder of every variant before its own training, whatever its
knobs: pool letters change strides, not weight shapes (a strided-conv stem, ``pool: S...``,
keeps its own fresh weights). The recipe is data, chosen once for all variants and never per
variant; the run key holds its name, so changing it retrains.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..common.env import resolve_device
from ..common.files import CACHE_DIR, atomic_path
from ..config import TrainConfig, load_config
from ..data import BatchLoader, DataSpec, load_dataset
from ..models.model import build_model
from ..models.variant import Variant
from .inits import INITS, InitRecipe
from .step import build_train_step, train_epoch

log = logging.getLogger(__name__)

#: Bump when the init training code changes, so that stale caches are not read back.
_VERSION = 1


def encoder_state(name: str, encoder: str, image_size: int, in_channels: int = 3,
                  device: str = "auto", cache_dir: str | Path | None = CACHE_DIR
                  ) -> dict[str, torch.Tensor]:
    """The encoder state_dict of init ``name`` for ``encoder`` at ``image_size`` (made once).

    On one machine's CPU the same recipe gives the same weights every time (other CPUs may round
    differently); the cache file is keyed by everything that decides them.
    """
    recipe: InitRecipe = INITS.get(name)
    config = _config(recipe, image_size, device)
    settings = {k: v for k, v in config.to_dict().items() if k != "device"}
    key = json.dumps({"version": _VERSION, "name": name, "recipe": asdict(recipe),
                      "config": settings, "encoder": encoder, "image_size": image_size,
                      "in_channels": in_channels}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = (Path(cache_dir) / "init" / f"{name}-{encoder}-{image_size}px-{digest}.pt"
            if cache_dir is not None else None)
    if path is not None and path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    state = _make(recipe, config, encoder, in_channels, cache_dir)
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        log.info("made encoder init %s for %s at %d px: %s", name, encoder, image_size, path)
    return state


def load_encoder_init(model: nn.Module, state: Mapping[str, torch.Tensor], name: str) -> None:
    """Load an init into ``model.encoder``; only weights a pool letter adds may stay fresh."""
    missing, unexpected = model.encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("pool")]
    if missing or unexpected:
        raise ValueError(f"encoder_init={name!r} does not fit this encoder: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")


def _config(recipe: InitRecipe, image_size: int, device: str) -> TrainConfig:
    """The recipe's training settings on top of the quick preset (its speed switches too)."""
    settings = {**dict(recipe.train), "image_size": image_size, "device": device, "samples": 0,
                "encoder_init": None}  # an init starts from random weights
    return load_config("quick", **settings)


def _make(recipe: InitRecipe, config: TrainConfig, encoder: str, in_channels: int,
          cache_dir: str | Path | None) -> dict[str, torch.Tensor]:
    """Train the recipe's network once and return its encoder's weights (on the CPU)."""
    info, splits = load_dataset(DataSpec(recipe.dataset, None, config.image_size,
                                         recipe.options), cache_dir)
    if info.in_channels != in_channels:
        raise ValueError(f"encoder init data has {info.in_channels} input channels, the study "
                         f"{in_channels}; allowed: an init made from data like the study's")
    target = resolve_device(config.device)
    torch.manual_seed(recipe.seed)
    model = build_model(Variant(encoder=encoder, **dict(recipe.variant)), info.model_outputs,
                        info.in_channels).to(target)
    step = build_train_step(model, info, config, target)
    loader = BatchLoader(splits["train"], config.batch_size, target, shuffle=True,
                         augment=config.augment, seed=recipe.seed, drop_last=True,
                         ignore_index=info.ignore_index)
    model.train()
    for epoch in range(config.epochs):
        loader.set_epoch(epoch)
        loss = float(train_epoch(step, loader)) / len(loader)
        step.scheduler.step()
        if not math.isfinite(loss):
            raise ValueError(f"encoder init diverged (non-finite loss in epoch {epoch + 1})")
    return {k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()}
