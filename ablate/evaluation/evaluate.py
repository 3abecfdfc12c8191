"""Evaluation: a model and a loader in, the metrics of ``ablate.evaluation.metrics`` (and the
loss) out.

Logits become class maps with :func:`predict`: one channel is a binary task (foreground where
the logit is > 0, i.e. sigmoid > 0.5), C channels a softmax task (argmax). The model runs in eval
mode under ``torch.inference_mode``; its previous train/eval mode is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from .metrics import MetricAccumulator


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Class maps ``(N, H, W)`` int64 from logits ``(N, K, H, W)``: K == 1 -> ``logits > 0``,
    else argmax over channels."""
    if logits.dim() != 4:
        raise ValueError(f"logits must be (N, K, H, W), got shape {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(1)


def evaluate(model: nn.Module, loader: Iterable, num_classes: int,
             ignore_index: int | None = None, loss_fn: Callable | None = None,
             device: torch.device | str | None = None,
             boundary_dilation: int | None = None) -> dict:
    """Metrics of ``model`` over every ``(images, masks)`` batch of ``loader``.

    ``images`` are float ``(N, C, H, W)``, ``masks`` int64 ``(N, H, W)``; ``num_classes`` is the
    metric class count (2 for a binary task). With ``device`` the batches are moved there.
    Returns :meth:`MetricAccumulator.compute`'s dict (every registered metric); its
    ``val_loss``, also given as ``loss``, is the batch values of ``loss_fn(logits, masks)``
    averaged with each batch weighted by its number of non-ignored pixels (for a per-pixel loss
    such as ``ce`` this is exactly the mean over all non-ignored pixels); without ``loss_fn``
    ``val_loss`` is NaN and ``loss`` is ``None``.
    """
    acc = MetricAccumulator(num_classes, ignore_index, boundary_dilation)
    with _inference(model):
        for images, masks in loader:
            if device is not None:
                images = images.to(device, non_blocking=True)
                masks = masks.to(device, non_blocking=True)
            logits = model(images)
            _check_channels(logits, num_classes)
            if loss_fn is not None:
                n = masks.numel() if ignore_index is None else (masks != ignore_index).sum()
                acc.add_loss(loss_fn(logits, masks), n)
            acc.update(predict(logits), masks)
    if acc.n_images == 0:
        raise ValueError("evaluate: the loader yielded no batches")
    result = acc.compute()
    result["loss"] = None if loss_fn is None else result["val_loss"]
    return result


def predict_samples(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class maps (int64 ``(N, H, W)``, on the CPU) of a few images, e.g. for pictures.

    ``images`` go to the device of the model's parameters; the model's mode is restored.
    """
    param = next(model.parameters(), None)
    if param is not None:
        images = images.to(param.device)
    with _inference(model):
        return predict(model(images)).cpu()


def _check_channels(logits: torch.Tensor, num_classes: int) -> None:
    channels = 1 if num_classes == 2 else num_classes
    if logits.dim() != 4 or logits.shape[1] != channels:
        raise ValueError(f"num_classes={num_classes} needs logits of shape (N, {channels}, H, W) "
                         f"(one channel for a binary task); the model gave {tuple(logits.shape)}")


@contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode under ``torch.inference_mode`` for the block, then the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
