"""Train one variant: config, data, model, optimizer, loop. Reads top to bottom.

``train(variant, data, config, seed)`` returns a ``RunResult`` with the final-epoch validation
metrics (no model selection on the validation split; the best checkpoint is kept for users), the
per-epoch history and timings. A non-finite loss or a CUDA out-of-memory ends the run with
status ``failed`` and the reason; the caller decides whether to go on.

Reproducibility: the seed fixes the initial weights (the encoder is built first, so every
variant with the same encoder starts from the same encoder weights; with ``encoder_init`` they
are the init's, made once by ``ablate.training.pretrain``), the batch order and the augmentation
of each epoch. On the CPU the same seed gives identical metrics twice. With
``out_dir`` the run writes ``history.csv``, ``samples.png`` and atomic ``checkpoints/last.pt``
and ``best.pt`` (the epoch best on the run's ``metric``, in its direction); a run started again
with the same settings resumes from ``last.pt``. Once the run's row is stored,
``drop_resume_state`` turns ``last.pt`` into ``final.pt``, its weights only.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..analysis.samples import save_samples
from ..common.checks import oriented
from ..common.env import environment, resolve_device
from ..common.files import CACHE_DIR, atomic_path
from ..config import TrainConfig
from ..data import BatchLoader, DatasetInfo, DataSpec, Split, load_dataset
from ..evaluation.evaluate import evaluate
from ..evaluation.metrics import DEFAULT_METRIC, METRICS
from ..evaluation.timing import peak_memory_mb, reset_peak_memory
from ..models.model import build_model
from ..models.variant import Variant
from ..results import FAILED, OK
from .convergence import window_start
from .pretrain import encoder_state, load_encoder_init
from .step import build_train_step, train_epoch

EpochHook = Callable[[int, dict[str, float]], None]


def history_fields() -> tuple[str, ...]:
    """Columns of ``history.csv``: one row per epoch, every registered metric on val, and
    ``in_window``: 1 for the epochs the convergence criterion judges
    (``ablate.training.convergence``)."""
    return ("epoch", "train_loss", *METRICS.names(), "lr", "time_s", "in_window")


@dataclass
class RunResult:
    """What one training run produced. ``metrics`` are the last epoch's validation scores."""

    status: str                      # OK or FAILED (ablate.results.STATUSES)
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_run: int = 0
    epochs: int = 0                  # the budget in epochs (the last may be partial)
    steps: int = 0                   # optimizer steps of the budget (batch_size images each)
    train_time_s: float = 0.0        # optimisation only, evaluation excluded
    train_images_per_s: float = 0.0
    peak_mem_mb: float = 0.0         # CUDA max allocated, or process peak RSS on CPU
    env: dict[str, str] = field(default_factory=dict)
    model: nn.Module | None = None
    info: DatasetInfo | None = None


class _NonFinite(Exception):
    pass


def train(variant: Variant, data: DataSpec | tuple[DatasetInfo, dict[str, Split]],
          config: TrainConfig, seed: int = 0, out_dir: str | Path | None = None,
          resume: bool = True, progress: bool | None = None, on_epoch: EpochHook | None = None,
          metric: str = DEFAULT_METRIC, cache_dir: str | Path = CACHE_DIR) -> RunResult:
    """Train ``variant`` on ``data`` (a DataSpec, or an already loaded ``(info, splits)``).

    ``metric`` (a name of ``METRICS``) is the score ``best.pt`` and the progress bar follow,
    in its direction (``val_loss``: the lowest). ``on_epoch(epoch, scores)`` is called after
    each evaluation (e.g. for Optuna pruning); an exception it raises ends the run and
    propagates. ``progress=None`` shows bars on a terminal.
    """
    # -- config and device
    sign = oriented(METRICS.get(metric).better)  # sign * score is larger when better
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    out_dir = Path(out_dir) if out_dir is not None else None
    disable_bars = None if progress is None else not progress

    # -- data (decoded once and cached; moved to the device once)
    info, splits = _load(data, config, cache_dir)
    train_loader = BatchLoader(splits["train"], config.batch_size, device, shuffle=True,
                               augment=config.augment, seed=seed, drop_last=True,
                               ignore_index=info.ignore_index)
    val_loader = BatchLoader(splits["val"], config.batch_size, device,
                             ignore_index=info.ignore_index)

    # -- model (from the study's encoder init, made once and cached), loss, optimizer, schedule
    init = None
    if config.encoder_init:
        init = encoder_state(config.encoder_init, variant.encoder, config.image_size,
                             info.in_channels, config.device, cache_dir)
    torch.manual_seed(seed)
    model = build_model(variant, info.model_outputs, info.in_channels)
    if init is not None:
        load_encoder_init(model, init, config.encoder_init)
    model = model.to(device)
    budget = config.budget(len(train_loader))
    step = build_train_step(model, info, config, device, budget.epochs)
    optimizer, scheduler, scaler = step.optimizer, step.scheduler, step.scaler

    identity = {"variant": variant.to_dict(), "config": _identity_config(config), "seed": seed,
                "dataset": info.name}
    result = RunResult(status=OK, env=environment(device), info=info, epochs=budget.epochs,
                       steps=budget.steps)
    start_epoch, best = 0, -sign * math.inf  # the best score of ``metric`` so far
    last_path = out_dir / "checkpoints" / "last.pt" if out_dir else None
    if resume and last_path is not None and last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=True)
        _check_same_run(state, identity, last_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best = state["epoch"], state["best"]
        if state.get("metric", DEFAULT_METRIC) != metric:  # best of another metric: recount
            best = max((h[metric] for h in state["history"]), key=lambda v: sign * v,
                       default=best)
        result.history, result.train_time_s = state["history"], state["train_time_s"]

    # -- loop
    reset_peak_memory(device)
    epochs = tqdm(range(start_epoch, budget.epochs), desc=variant.id, unit="epoch",
                  initial=start_epoch, total=budget.epochs, disable=disable_bars, leave=False)
    try:
        for epoch in epochs:
            lr = scheduler.get_last_lr()[0]
            train_loader.set_epoch(epoch)
            model.train()
            t0 = time.perf_counter()
            n_steps = budget.steps_in(epoch)
            batches = tqdm(itertools.islice(train_loader, n_steps), desc=f"epoch {epoch + 1}",
                           unit="batch", total=n_steps, leave=False, disable=disable_bars)
            loss_sum = train_epoch(step, batches)
            train_loss = float(loss_sum) / n_steps  # one device sync per epoch
            if cuda:
                torch.cuda.synchronize(device)
            result.train_time_s += time.perf_counter() - t0
            if not torch.isfinite(torch.tensor(train_loss)):
                raise _NonFinite(f"non-finite training loss ({train_loss}) in epoch {epoch + 1}")
            scheduler.step()

            with step.autocast():
                scores = evaluate(step.step_model, val_loader, info.num_classes,
                                  info.ignore_index, loss_fn=step.loss_fn)
            row = {"epoch": epoch + 1, "train_loss": train_loss,
                   **{m: scores[m] for m in METRICS.names()},
                   "lr": lr, "time_s": result.train_time_s,
                   "in_window": int(epoch + 1 >= window_start(budget.epochs))}
            result.history.append(row)
            epochs.set_postfix({"loss": f"{train_loss:.4f}", metric: f"{scores[metric]:.4f}"})
            improved = sign * scores[metric] > sign * best
            best = scores[metric] if improved else best
            if out_dir is not None:
                state = {**identity, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "scaler": scaler.state_dict(), "epoch": epoch + 1,
                         "metric": metric, "best": best, "history": result.history,
                         "train_time_s": result.train_time_s}
                _write_history(out_dir / "history.csv", result.history)
                if improved:
                    _atomic_save({**identity, "model": model.state_dict(), "epoch": epoch + 1,
                                  metric: scores[metric]}, out_dir / "checkpoints" / "best.pt")
                _atomic_save(state, last_path)
            if on_epoch is not None:
                on_epoch(epoch + 1, scores)
    except _NonFinite as exc:
        return _failed(result, str(exc))
    except torch.cuda.OutOfMemoryError as exc:
        del optimizer, step
        model = None
        torch.cuda.empty_cache()
        return _failed(result, f"CUDA out of memory: {str(exc).splitlines()[0]}")

    # -- final scores (the last epoch), timings, picture
    result.epochs_run = len(result.history)
    if result.history:
        last = result.history[-1]
        result.metrics = {m: last[m] for m in METRICS.names()}
    n_images = budget.steps * config.batch_size
    result.train_images_per_s = n_images / result.train_time_s if result.train_time_s else 0.0
    result.peak_mem_mb = peak_memory_mb(device)
    result.model = model
    if out_dir is not None and config.samples:
        save_samples(model, splits["val"], info, out_dir / "samples.png", config.samples)
    return result


def _load(data, config: TrainConfig, cache_dir) -> tuple[DatasetInfo, dict[str, Split]]:
    if isinstance(data, DataSpec):
        return load_dataset(dataclasses.replace(data, image_size=config.image_size), cache_dir)
    info, splits = data
    size = splits["train"].images.shape[1]
    if size != config.image_size:
        raise ValueError(f"the loaded data is {size} px but image_size={config.image_size}; "
                         "load the dataset at the configured size")
    return info, splits


def _identity_config(config: TrainConfig) -> dict[str, Any]:
    """The settings a resumed run must share (device and speed switches may differ)."""
    skip = {"device", "compile", "threads", "samples"}
    return {k: v for k, v in config.to_dict().items() if k not in skip}


def _check_same_run(state: dict, identity: dict, path: Path) -> None:
    for key, value in identity.items():
        if state.get(key) != value:
            raise ValueError(f"checkpoint {path} was written for a different run ({key}: "
                             f"{state.get(key)!r} != {value!r}); delete it or pass resume=False")


def drop_resume_state(out_dir: Path) -> None:
    """Replace a run's ``checkpoints/last.pt`` by ``final.pt``: the same identity, epoch and
    weights (the model its row reports), without the optimizer and scheduler state that only a
    resume needs. Two thirds of the file for AdamW; a no-op when there is no ``last.pt``."""
    last = out_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        return
    state = torch.load(last, map_location="cpu", weights_only=True)
    resume_only = {"optimizer", "scheduler", "scaler", "metric", "best", "history",
                   "train_time_s"}
    _atomic_save({k: v for k, v in state.items() if k not in resume_only},
                 out_dir / "checkpoints" / "final.pt")
    last.unlink()


def _failed(result: RunResult, reason: str) -> RunResult:
    result.status, result.error, result.model = FAILED, reason, None
    result.epochs_run = len(result.history)
    return result


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=history_fields(), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
