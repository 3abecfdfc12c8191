"""The training step: loss, optimizer, schedule and precision, and one optimisation pass.

``train`` runs it for every variant, the encoder initialisations (``ablate.training.pretrain``)
and the benchmarks (``ablate.bench``) time exactly this code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass

import torch
from torch import nn

from ..common.env import cpu_has_bf16
from ..config import TrainConfig
from ..data import DatasetInfo
from .losses import LossFn, build_loss, supervised_loss
from .optim import build_optimizer, build_scheduler


@dataclass
class TrainStep:
    """What the training step uses, made by :func:`build_train_step` (ablate.bench uses it too)."""

    model: nn.Module              # the weights (saved in checkpoints)
    step_model: nn.Module         # what the step calls: ``model`` or ``torch.compile(model)``
    loss_fn: LossFn
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: Callable[[], ContextManager]
    channels_last: bool           # inputs are made channels_last before the forward pass
    device: torch.device


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``config.amp`` on ``device``: bf16 on CUDA (fp16 where bf16 is not
    supported) and on CPUs with bf16 instructions (``env.cpu_has_bf16``); None elsewhere."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return None


def build_train_step(model: nn.Module, info: DatasetInfo, config: TrainConfig,
                     device: torch.device, epochs: int | None = None) -> TrainStep:
    """Loss, optimizer, schedule (``ablate.training.optim``, named by the config) and precision for
    ``model`` (already on ``device``).

    The schedule is stepped once per epoch and spans ``epochs`` (default ``config.epochs``;
    a budget in steps or images resolves to epochs with ``config.budget``).

    ``config.amp``: autocast to :func:`amp_dtype` where the device has one (else ignored);
    fp16 on CUDA gets a GradScaler. ``config.channels_last``: channels_last weights and inputs
    on CUDA and the CPU.
    """
    dtype = amp_dtype(device)
    use_amp = config.amp and dtype is not None
    channels_last = config.channels_last and device.type in ("cuda", "cpu")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config.compile else model
    loss_fn = build_loss(config.loss, info.num_classes, info.ignore_index)
    optimizer = build_optimizer(model.parameters(), config.optimizer, config.lr,
                                config.weight_decay)
    epochs = epochs if epochs is not None else config.epochs
    if epochs is None:
        raise ValueError(f"the budget is {config.budget_label}: pass the epochs it resolves to "
                         "(TrainConfig.budget) to span the schedule over it")
    scheduler = build_scheduler(optimizer, config.scheduler, epochs, eta_min=config.eta_min,
                                step_epochs=config.step_epochs, step_gamma=config.step_gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and dtype == torch.float16)
    autocast = ((lambda: torch.autocast(device.type, dtype=dtype)) if use_amp
                else contextlib.nullcontext)
    return TrainStep(model, step_model, loss_fn, optimizer, scheduler, scaler, autocast,
                     channels_last, device)


def train_epoch(step: TrainStep, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
                ) -> torch.Tensor:
    """One optimisation pass over ``batches``: the harness's training step.

    Returns the sum of the batch losses as a float64 tensor on the device, left unsynchronized
    so that the caller waits for the device once per epoch.
    """
    loss_sum = torch.zeros((), device=step.device, dtype=torch.float64)
    for images, masks in batches:
        if step.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with step.autocast():
            logits = step.step_model(images)
        loss = supervised_loss(step.loss_fn, logits, masks)  # deep supervision: a tuple
        step.optimizer.zero_grad(set_to_none=True)
        step.scaler.scale(loss).backward()
        step.scaler.step(step.optimizer)
        step.scaler.update()
        loss_sum += loss.detach()
    return loss_sum
