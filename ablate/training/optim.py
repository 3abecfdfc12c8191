"""Optimizers and learning-rate schedules by name: the ``OPTIMIZERS`` and ``SCHEDULERS`` registries.

An optimizer entry is ``fn(params, lr, weight_decay) -> torch.optim.Optimizer``; a schedule entry
is ``fn(optimizer, epochs, eta_min, step_epochs, step_gamma) -> LRScheduler``, stepped once per
epoch by the training loop over a budget of ``epochs`` (``TrainConfig.budget``). Builders take
numbers, not a config, so nothing here imports the config that validates against these names.
``TrainConfig``'s ``optimizer`` and ``scheduler`` keys name them; the defaults (``adamw``,
``cosine``) are seed 002's recipe, ``adam`` + ``step`` seed 004's.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..common.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")
SGD_MOMENTUM = 0.9

Params = Iterable[torch.nn.Parameter]
Scheduler = torch.optim.lr_scheduler.LRScheduler


@OPTIMIZERS.register("adamw")
def adamw(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW: decoupled weight decay (seed 002)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def adam(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam: weight decay added to the gradient as an L2 term (seed 004)."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: Params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 (not Nesterov); weight decay as an L2 term."""
    return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay)


@SCHEDULERS.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, epochs: int, eta_min: float, step_epochs: int,
           step_gamma: float) -> Scheduler:
    """cosine from lr down to eta_min over the budget (T_max = its epochs)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=eta_min)


@SCHEDULERS.register("step")
def step(optimizer: torch.optim.Optimizer, epochs: int, eta_min: float, step_epochs: int,
         step_gamma: float) -> Scheduler:
    """lr times step_gamma every step_epochs epochs (StepLR)."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_epochs, gamma=step_gamma)


@SCHEDULERS.register("none")
def constant(optimizer: torch.optim.Optimizer, epochs: int, eta_min: float, step_epochs: int,
             step_gamma: float) -> Scheduler:
    """constant lr."""
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)


def build_optimizer(params: Params, name: str, lr: float, weight_decay: float
                    ) -> torch.optim.Optimizer:
    """The optimizer registered as ``name``, over ``params``."""
    return OPTIMIZERS.get(name)(params, lr, weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int, *,
                    eta_min: float = 0.0, step_epochs: int = 1, step_gamma: float = 0.1
                    ) -> Scheduler:
    """The schedule registered as ``name`` on ``optimizer`` over a budget of ``epochs``
    (stepped once per epoch); each schedule reads the numbers it needs."""
    return SCHEDULERS.get(name)(optimizer, epochs, eta_min, step_epochs, step_gamma)
