"""Optimizers and learning-rate schedules by name: the ``OPTIMIZERS`` and ``SCHEDULERS`` registries.

An optimizer entry is ``fn(params, config) -> torch.optim.Optimizer`` and reads ``lr`` and
``weight_decay``; a schedule entry is ``fn(optimizer, config, epochs) -> LRScheduler``, stepped
once per epoch by the training loop over a budget of ``epochs`` (``TrainConfig.budget``).
``TrainConfig``'s ``optimizer`` and ``scheduler`` keys name them; the defaults (``adamw``,
``cosine``) are seed 002's recipe, ``adam`` + ``step`` seed 004's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from .registry import Registry

if TYPE_CHECKING:
    from .config import TrainConfig

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")
SGD_MOMENTUM = 0.9


@OPTIMIZERS.register("adamw")
def adamw(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: decoupled weight decay (seed 002)."""
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("adam")
def adam(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam: weight decay added to the gradient as an L2 term (seed 004)."""
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 (not Nesterov); weight decay as an L2 term."""
    return torch.optim.SGD(params, lr=config.lr, momentum=SGD_MOMENTUM,
                           weight_decay=config.weight_decay)


@SCHEDULERS.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, config: TrainConfig, epochs: int
           ) -> torch.optim.lr_scheduler.LRScheduler:
    """cosine from lr down to eta_min over the budget (T_max = its epochs)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs,
                                                      eta_min=config.eta_min)


@SCHEDULERS.register("step")
def step(optimizer: torch.optim.Optimizer, config: TrainConfig, epochs: int
         ) -> torch.optim.lr_scheduler.LRScheduler:
    """lr times step_gamma every step_epochs epochs (StepLR)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_epochs,
                                           gamma=config.step_gamma)


@SCHEDULERS.register("none")
def constant(optimizer: torch.optim.Optimizer, config: TrainConfig, epochs: int
              ) -> torch.optim.lr_scheduler.LRScheduler:
    """constant lr."""
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def build_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig
                    ) -> torch.optim.Optimizer:
    """The optimizer ``config.optimizer`` names, over ``params``."""
    return OPTIMIZERS.get(config.optimizer)(params, config)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, epochs: int
                    ) -> torch.optim.lr_scheduler.LRScheduler:
    """The schedule ``config.scheduler`` names, on ``optimizer``, over a budget of ``epochs``
    (stepped once per epoch)."""
    return SCHEDULERS.get(config.scheduler)(optimizer, config, epochs)
