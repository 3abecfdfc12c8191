"""What is timed: one epoch of the harness step (the code ``train`` runs) or of a bare
hand-written loop, a latency round, and the alternating (ABBA...) order of compared runs."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator

import torch

from ..config import TrainConfig
from ..data import BatchLoader, DatasetInfo
from ..evaluation.timing import latency_ms
from ..models.model import build_model
from ..models.variant import Variant
from ..training.losses import build_loss, supervised_loss
from ..training.step import TrainStep, amp_dtype, train_epoch
from .settings import BenchSettings

SEED = 0


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    """Return cached device memory (CUDA) between measurements."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def seeded_model(variant: Variant, info: DatasetInfo, device: torch.device) -> torch.nn.Module:
    """``variant``'s model on ``device``, from ``SEED``: every copy starts from the same weights."""
    torch.manual_seed(SEED)  # the same seed gives both sides the same initial weights
    return build_model(variant, info.model_outputs, info.in_channels).to(device)


def params_m(model: torch.nn.Module) -> float:
    """Parameters, in millions."""
    return sum(p.numel() for p in model.parameters()) / 1e6


def harness_loop(step: TrainStep) -> Callable[..., float]:
    """Seconds of one epoch timed as ``train`` times it: the harness step loop and one sync."""

    def epoch(loader: BatchLoader, n: int, batches: Iterable | None = None) -> float:
        loader.set_epoch(n)
        step.model.train()
        sync(step.device)
        t0 = time.perf_counter()
        float(train_epoch(step, loader if batches is None else batches))
        sync(step.device)
        elapsed = time.perf_counter() - t0
        step.scheduler.step()
        return elapsed

    return epoch


def bare_loop(model: torch.nn.Module, info: DatasetInfo, config: TrainConfig,
              device: torch.device) -> Callable[..., float]:
    """A minimal hand-written loop (zero_grad, forward, loss, backward, step): the reference.

    Same loss, AdamW and cosine schedule as the harness, the same autocast dtype and
    channels_last, but no GradScaler (bf16 needs none). A deeply supervised model's tuple of
    outputs is weighted as the harness weights it (``supervised_loss``).
    """
    channels_last = config.channels_last and device.type in ("cuda", "cpu")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    dtype = amp_dtype(device)
    amp = config.amp and dtype is not None
    loss_fn = build_loss(config.loss, info.num_classes, info.ignore_index)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs,
                                                           eta_min=config.eta_min)

    def epoch(loader: BatchLoader, n: int, batches: Iterable | None = None) -> float:
        loader.set_epoch(n)
        model.train()
        sync(device)
        t0 = time.perf_counter()
        for images, masks in loader if batches is None else batches:
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if amp:
                with torch.autocast(device.type, dtype=dtype):
                    logits = model(images)
            else:
                logits = model(images)
            loss = supervised_loss(loss_fn, logits, masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        elapsed = time.perf_counter() - t0
        scheduler.step()
        return elapsed

    return epoch


def alternate(rounds: int, *fns: Callable[[int], float]) -> tuple[list[float], ...]:
    """Each ``fn(r)`` once per round r = 1..rounds, in order on odd rounds and reversed on even
    ones (ABBA...); the results, one list per function."""
    results: tuple[list[float], ...] = tuple([] for _ in fns)
    for r in range(1, rounds + 1):
        order = range(len(fns)) if r % 2 else reversed(range(len(fns)))
        for i in order:
            results[i].append(fns[i](r))
    return results


def first_batches(loader: BatchLoader, k: int) -> Iterator:
    """The first ``k`` batches of ``loader``'s epoch; lazy, so the loop's ``set_epoch`` applies."""
    yield from itertools.islice(loader, k)


def latency(model: torch.nn.Module, settings: BenchSettings, batch: int, first: bool) -> float:
    """One round of ``latency_ms``: median of 5 forwards (more warm-up in the first round)."""
    return latency_ms(model, (3, settings.image_size, settings.image_size), batch,
                      warmup=3 if first else 1, repeats=5)
