"""Speed benchmarks: what an ablation costs, and whether the harness is as fast as plain code.

``run_bench(device, variants, out_dir, settings)`` writes ``<out_dir>/<device>.csv`` (one row per
measurement) and ``<out_dir>/<device>.md`` (machine, versions and date, then tables):

- per variant: inference latency at batch 1 and at the training batch, training images/s with
  the harness step, peak memory, and the harness step against a bare hand-written loop;
- overhead: on the first variant, the harness step against the bare loop and the bare loop
  against itself (the noise floor) over many short rounds, with 95% confidence intervals;
- peer: our closest variant against ``segmentation_models_pytorch.Unet("resnet18")``;
- data path: an epoch over the decode-once cache against decoding the image files every epoch;
- CUDA only: the speed-up of bf16 autocast, channels_last and ``torch.compile``, and the share of
  step time spent waiting for input.

Conventions. The harness side always runs ``ablate.train.train_epoch`` on objects made by
``build_train_step``, the code ``train`` runs. Every timed pass follows one untimed warm-up pass.
Compared measurements run in the same process in alternating order (ABBA...), so that drift and
thermal or neighbour noise hit both sides alike; a ratio is taken per round and we report the
median over rounds with the min-max, and from 6 rounds on a distribution-free 95% confidence
interval of the median (``scipy.stats.quantile_test``). Epochs are timed with ``perf_counter``
(after a synchronize on CUDA), latency with ``ablate.timing.latency_ms`` (CUDA events on GPU).
Peak memory: CUDA max allocated during one training epoch; on the CPU the process's peak RSS so
far, which never goes down within a run.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import itertools
import os
import platform
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from scipy import stats
from tqdm.auto import tqdm

from ..config import TrainConfig, load_config
from ..data import IMAGENET_MEAN, IMAGENET_STD, BatchLoader, DatasetInfo, DataSpec, load_dataset
from ..env import git_commit, resolve_device
from ..experiment import load_experiment
from ..losses import build_loss
from ..models.model import build_model
from ..models.variant import Variant
from ..timing import latency_ms, peak_memory_mb, reset_peak_memory
from ..train import TrainStep, build_train_step, train_epoch

COLUMNS = ("device", "section", "variant", "metric", "unit", "median", "min", "max", "ci_low",
           "ci_high", "n", "note")
CI_LEVEL = 0.95
CI_MIN_ROUNDS = 6             # fewer rounds cannot give a 95% interval for a median
OVERHEAD_GOAL = 1.03          # harness / bare loop epoch time
OVERHEAD_STEPS = 2            # batches per round in the overhead section: short, so many rounds fit
TRIVIAL_STEPS = 100           # steps per round on the 1x1 conv of the overhead section
TRIVIAL = "conv1x1"           # its name in the rows
DEFAULT_EXPERIMENTS = ("experiments/seed002_pooling_quick.yaml",
                       "experiments/seed002_skips_quick.yaml")
# Our closest match to smp's Unet("resnet18"): five decoder stages of the same widths, nearest x2.
PEER_VARIANT = Variant(widths=(256, 128, 64, 32, 16), upsample="nearest")
PEER_NAME = "smp-Unet-resnet18"
PEER_DIFFERENCES = (
    "head: ours is a 1x1 conv, smp's a 3x3 conv (both with bias; 17 vs 145 parameters for one "
    "output), the only difference in parameters",
    "initialisation: ours keeps PyTorch's defaults, smp re-initialises the decoder (Kaiming "
    "uniform) and the head (Xavier uniform); speed does not depend on it",
    "upsampling: both nearest x2 (ours nn.Upsample(scale_factor=2), smp F.interpolate to the "
    "skip's size); smp's decoder attention is None (identity modules)",
    "forward: ours pads inputs to a multiple of 32 and crops the logits (no-op at these sizes); "
    "smp checks the shape and refuses other sizes",
    "encoder: both torchvision's ResNet-18 layers with a 3x3 stride-2 stem max-pool; ours calls "
    "three identity modules where a pool knob could place a pool",
)
CUDA_METRICS = {"bf16_speedup": "ratio", "channels_last_speedup": "ratio",
                "compile_speedup": "ratio", "input_wait_share": "fraction",
                "loader_time_share": "fraction"}
SEED = 0


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one benchmark run (the defaults are ``ablate bench``'s)."""

    image_size: int = 64        # pixels, square
    batch: int = 16             # training batch and the larger latency batch
    steps: int = 10             # training steps in one timed epoch
    repeats: int = 5            # timed rounds per measurement, after one warm-up
    overhead_rounds: int = 30   # rounds of the overhead section (harness, bare, bare copy)
    data_images: int = 64       # training images in the on-disk dataset of the data-path test
    compile: bool = True        # CUDA: measure torch.compile (its warm-up takes a minute)
    threads: int = 0            # CPU intra-op threads; 0: every core this process may use

    def __post_init__(self) -> None:
        for name in ("image_size", "batch", "steps", "repeats", "overhead_rounds", "data_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is not allowed; allowed: a positive integer")
        if self.image_size % 32:
            raise ValueError(f"image_size={self.image_size} is not allowed; allowed: a multiple "
                             "of 32 (smp's U-Net refuses other sizes)")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ValueError(f"threads={self.threads!r} is not allowed; allowed: an integer >= 0 "
                             "(0: every core)")
        if self.data_images < self.batch:
            raise ValueError(f"data_images={self.data_images} is fewer than one batch "
                             f"({self.batch}); allowed: >= batch")


SMOKE = BenchSettings(image_size=32, batch=2, steps=2, repeats=1, overhead_rounds=2,
                      data_images=4, compile=False)


def default_variants(experiments: Sequence[str | Path] | None = None) -> list[Variant]:
    """The plain baseline, then every distinct variant of the experiment files (default: the
    seed 002 pooling and skips quick studies, relative to the working directory)."""
    variants = [Variant()]
    for path in DEFAULT_EXPERIMENTS if experiments is None else experiments:
        variants += load_experiment(path).variants
    return list(dict.fromkeys(variants))


def bench_devices(name: str = "all") -> list[torch.device]:
    """``all``: the CPU, and CUDA when there is one; ``auto``: the best device; else that one."""
    if name == "all":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    return [resolve_device(name)]


def device_slug(device: torch.device) -> str:
    """File-safe device name: ``cpu``, or ``cuda-<GPU name>`` (``cuda-NVIDIA-H100-80GB-HBM3``)."""
    if device.type != "cuda":
        return device.type
    return "cuda-" + re.sub(r"[^A-Za-z0-9.]+", "-", torch.cuda.get_device_name(device)).strip("-")


def run_bench(device: torch.device, variants: Sequence[Variant], out_dir: str | Path,
              settings: BenchSettings = BenchSettings()) -> tuple[Path, Path]:
    """Measure everything on ``device`` and write the csv and md; returns their paths."""
    if not variants:
        raise ValueError("no variants to benchmark; allowed: at least one")
    device = torch.device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads or _cores())
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train() sets it
    try:
        config = load_config("quick", image_size=settings.image_size, batch_size=settings.batch,
                             device=device.type)
        spec = DataSpec("shapes", image_size=settings.image_size,
                        options={"n_train": settings.steps * settings.batch, "n_val": 1})
        info, splits = load_dataset(spec, cache_dir=None)
        loader = BatchLoader(splits["train"], settings.batch, device, shuffle=True,
                             augment=config.augment, seed=SEED, drop_last=True,
                             ignore_index=info.ignore_index)
        meta = _meta(device, settings)
        first = variants[0]
        jobs = [(f"variant {v.id}", lambda v=v: _variant_rows(v, info, loader, config, device,
                                                              settings)) for v in variants]
        jobs += [("overhead", lambda: _overhead_rows(first, info, loader, config, device,
                                                     settings)),
                 ("peer", lambda: _peer_rows(info, loader, config, device, settings)),
                 ("data path", lambda: _data_rows(first, config, device, settings)),
                 ("cuda", lambda: _cuda_rows(first, info, loader, config, device, settings))]
        rows: list[dict] = []
        bar = tqdm(jobs, desc=f"bench {device.type}", unit="part", leave=False)
        for name, job in bar:
            bar.set_postfix_str(name)
            rows += job()
    finally:
        torch.set_num_threads(threads)
    slug = device_slug(device)
    for row in rows:
        row["device"] = slug
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{slug}.csv", out_dir / f"{slug}.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(_markdown(rows, meta, settings))
    return csv_path, md_path


# ---------------------------------------------------------------------------------------------
# Timed loops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _harness_loop(step: TrainStep) -> Callable[..., float]:
    """Seconds of one epoch timed as ``train`` times it: the harness step loop and one sync."""

    def epoch(loader: BatchLoader, n: int, batches: Iterable | None = None) -> float:
        loader.set_epoch(n)
        step.model.train()
        _sync(step.device)
        t0 = time.perf_counter()
        float(train_epoch(step, loader if batches is None else batches))
        _sync(step.device)
        elapsed = time.perf_counter() - t0
        step.scheduler.step()
        return elapsed

    return epoch


def _bare_loop(model: torch.nn.Module, info: DatasetInfo, config: TrainConfig,
               device: torch.device) -> Callable[..., float]:
    """A minimal hand-written loop (zero_grad, forward, loss, backward, step): the reference.

    Same loss, AdamW and cosine schedule as the harness; on CUDA the same autocast dtype and
    channels_last, but no GradScaler (bf16 needs none).
    """
    cuda = device.type == "cuda"
    channels_last = cuda and config.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = cuda and config.amp
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    loss_fn = build_loss(config.loss, info.num_classes, info.ignore_index)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs,
                                                           eta_min=config.eta_min)

    def epoch(loader: BatchLoader, n: int, batches: Iterable | None = None) -> float:
        loader.set_epoch(n)
        model.train()
        _sync(device)
        t0 = time.perf_counter()
        for images, masks in loader if batches is None else batches:
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if amp:
                with torch.autocast("cuda", dtype=dtype):
                    logits = model(images)
            else:
                logits = model(images)
            loss = loss_fn(logits.float(), masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        elapsed = time.perf_counter() - t0
        scheduler.step()
        return elapsed

    return epoch


def _alternate(rounds: int, *fns: Callable[[int], float]) -> tuple[list[float], ...]:
    """Each ``fn(r)`` once per round r = 1..rounds, in order on odd rounds and reversed on even
    ones (ABBA...); the results, one list per function."""
    results: tuple[list[float], ...] = tuple([] for _ in fns)
    for r in range(1, rounds + 1):
        order = range(len(fns)) if r % 2 else reversed(range(len(fns)))
        for i in order:
            results[i].append(fns[i](r))
    return results


def _first(loader: BatchLoader, k: int) -> Iterator:
    """The first ``k`` batches of ``loader``'s epoch; lazy, so the loop's ``set_epoch`` applies."""
    yield from itertools.islice(loader, k)


def _latency(model: torch.nn.Module, settings: BenchSettings, batch: int, first: bool) -> float:
    """One round of ``latency_ms``: median of 5 forwards (more warm-up in the first round)."""
    return latency_ms(model, (3, settings.image_size, settings.image_size), batch,
                      warmup=3 if first else 1, repeats=5)


def _params_m(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Measurements


def _median_ci(values: Sequence[float]) -> tuple[float | str, float | str]:
    """Distribution-free ``CI_LEVEL`` interval of the median (order statistics); blanks when
    there are fewer than ``CI_MIN_ROUNDS`` values."""
    if len(values) < CI_MIN_ROUNDS:
        return "", ""
    ci = stats.quantile_test(values, p=0.5).confidence_interval(CI_LEVEL)
    return float(ci.low), float(ci.high)


def _row(section: str, variant: str, metric: str, unit: str, values: Sequence[float] = (),
         note: str = "") -> dict:
    values = list(values)
    summary = ({"median": statistics.median(values), "min": min(values), "max": max(values)}
               if values else {"median": "", "min": "", "max": ""})
    low, high = _median_ci(values)
    return {"section": section, "variant": variant, "metric": metric, "unit": unit, **summary,
            "ci_low": low, "ci_high": high, "n": len(values) or "", "note": note}


def _seeded_model(variant: Variant, info: DatasetInfo, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(SEED)  # the same seed gives both sides the same initial weights
    return build_model(variant, info.model_outputs, info.in_channels).to(device)


def _variant_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
                  device: torch.device, settings: BenchSettings) -> list[dict]:
    """Latency, harness images/s, peak memory, and the harness step against the bare loop."""
    step = build_train_step(_seeded_model(variant, info, device), info, config, device)
    harness = _harness_loop(step)
    reset_peak_memory(device)
    harness(loader, 0)
    peak = peak_memory_mb(device)  # before the bare model exists
    bare = _bare_loop(_seeded_model(variant, info, device), info, config, device)
    bare(loader, 0)
    th, tb = _alternate(settings.repeats, lambda r: harness(loader, r), lambda r: bare(loader, r))
    images = settings.steps * settings.batch
    lat1 = [_latency(step.model, settings, 1, r == 0) for r in range(settings.repeats)]
    latn = [_latency(step.model, settings, settings.batch, r == 0)
            for r in range(settings.repeats)]
    vid = variant.id
    rows = [
        _row("variant", vid, "params_m", "M", [_params_m(step.model)]),
        _row("variant", vid, "latency_b1_ms", "ms", lat1, "batch 1"),
        _row("variant", vid, "latency_batch_ms", "ms", latn, f"batch {settings.batch}"),
        _row("variant", vid, "train_images_per_s", "images/s", [images / t for t in th],
             "harness step"),
        _row("variant", vid, "bare_images_per_s", "images/s", [images / t for t in tb],
             "bare loop"),
        _row("variant", vid, "peak_mem_mb", "MB", [peak],
             "CUDA max allocated" if device.type == "cuda" else "process peak RSS so far"),
        _row("variant", vid, "harness_over_bare", "ratio", [h / b for h, b in zip(th, tb)],
             "epoch time, harness / bare loop"),
    ]
    del step, harness, bare
    _free(device)
    return rows


def _overhead_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
                   device: torch.device, settings: BenchSettings) -> list[dict]:
    """The harness step against the bare loop, with the resolution the goal needs.

    Three loops on three copies of a model (harness, bare, bare again) take turns over
    ``settings.overhead_rounds`` rounds. The bare loop against its copy is an A/A comparison of
    identical code: what this machine's noise alone does to a result. Done twice: on ``variant``
    over short rounds of ``OVERHEAD_STEPS`` loader batches (the ratio the goal is about), and on a
    1x1 convolution over ``TRIVIAL_STEPS`` steps on one image, where a step is mostly Python and
    kernel launches, so the time the harness adds per step shows in microseconds.
    """
    vid = variant.id
    th, tb, tc = _race(lambda: _seeded_model(variant, info, device), info, config, device, loader,
                       lambda: _first(loader, OVERHEAD_STEPS), settings.overhead_rounds)
    steps = min(OVERHEAD_STEPS, len(loader))
    images, masks = next(iter(loader))
    one = (images[:1], masks[:1])  # per-step overhead does not grow with the batch; noise does
    xh, xb, xc = _race(lambda: _trivial_model(info, device), info, config, device, loader,
                       lambda: itertools.repeat(one, TRIVIAL_STEPS), settings.overhead_rounds)
    us = 1e6 / TRIVIAL_STEPS
    rows = [
        _row("overhead", vid, "harness_step_ms", "ms", [1e3 * t / steps for t in th],
             "harness step"),
        _row("overhead", vid, "bare_step_ms", "ms", [1e3 * t / steps for t in tb], "bare loop"),
        _row("overhead", vid, "harness_over_bare", "ratio", [h / b for h, b in zip(th, tb)],
             "epoch time, harness / bare loop"),
        _row("overhead", vid, "bare_copy_over_bare", "ratio", [c / b for c, b in zip(tc, tb)],
             "epoch time, bare loop on a second copy / bare loop (noise floor)"),
        _row("overhead", TRIVIAL, "bare_step_us", "us", [us * t for t in xb], "bare loop"),
        _row("overhead", TRIVIAL, "harness_extra_us", "us",
             [us * (h - b) for h, b in zip(xh, xb)], "per step, harness - bare loop"),
        _row("overhead", TRIVIAL, "bare_copy_extra_us", "us",
             [us * (c - b) for c, b in zip(xc, xb)],
             "per step, bare loop on a second copy - bare loop (noise floor)"),
    ]
    _free(device)
    return rows


def _trivial_model(info: DatasetInfo, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(SEED)
    return torch.nn.Conv2d(info.in_channels, info.model_outputs, 1).to(device)


def _race(make: Callable[[], torch.nn.Module], info: DatasetInfo, config: TrainConfig,
          device: torch.device, loader: BatchLoader, batches: Callable[[], Iterable],
          rounds: int) -> tuple[list[float], ...]:
    """Epoch times of the harness, the bare loop and the bare loop again, each on its own copy
    of ``make()``, over ``batches()``: one warm-up each, then ``rounds`` rounds in turn."""
    loops = (_harness_loop(build_train_step(make(), info, config, device)),
             _bare_loop(make(), info, config, device), _bare_loop(make(), info, config, device))
    runs = [lambda r, loop=loop: loop(loader, r, batches()) for loop in loops]
    for run in runs:
        run(0)
    return _alternate(rounds, *runs)


def _peer_rows(info: DatasetInfo, loader: BatchLoader, config: TrainConfig, device: torch.device,
               settings: BenchSettings) -> list[dict]:
    """Our closest variant against smp's Unet, both trained by the harness step."""
    ours_id = PEER_VARIANT.id
    metrics = (("params_m", "M"), ("train_images_per_s", "images/s"),
               ("train_time_ratio", "ratio"), ("latency_b1_ratio", "ratio"),
               ("latency_batch_ratio", "ratio"))
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        note = "segmentation_models_pytorch is not installed (pip install -e '.[bench]')"
        return [_row("peer", ours_id, m, u, note=note) for m, u in metrics]
    torch.manual_seed(SEED)
    peer = smp.Unet("resnet18", encoder_weights=None, in_channels=info.in_channels,
                    classes=info.model_outputs, decoder_channels=PEER_VARIANT.widths).to(device)
    steps = {ours_id: build_train_step(_seeded_model(PEER_VARIANT, info, device), info, config,
                                       device),
             PEER_NAME: build_train_step(peer, info, config, device)}
    loops = {name: _harness_loop(step) for name, step in steps.items()}
    for loop in loops.values():
        loop(loader, 0)
    to, tp = _alternate(settings.repeats, lambda r: loops[ours_id](loader, r),
                        lambda r: loops[PEER_NAME](loader, r))
    images = settings.steps * settings.batch
    rows = []
    for name, times in ((ours_id, to), (PEER_NAME, tp)):
        rows += [_row("peer", name, "params_m", "M", [_params_m(steps[name].model)]),
                 _row("peer", name, "train_images_per_s", "images/s", [images / t for t in times])]
    rows.append(_row("peer", ours_id, "train_time_ratio", "ratio",
                     [o / p for o, p in zip(to, tp)], f"epoch time, ours / {PEER_NAME}"))
    for name, batch in (("b1", 1), ("batch", settings.batch)):
        lo, lp = _alternate(settings.repeats,
                            lambda r: _latency(steps[ours_id].model, settings, batch, r == 1),
                            lambda r: _latency(steps[PEER_NAME].model, settings, batch, r == 1))
        rows += [_row("peer", ours_id, f"latency_{name}_ms", "ms", lo, f"batch {batch}"),
                 _row("peer", PEER_NAME, f"latency_{name}_ms", "ms", lp, f"batch {batch}"),
                 _row("peer", ours_id, f"latency_{name}_ratio", "ratio",
                      [o / p for o, p in zip(lo, lp)], f"batch {batch}, ours / {PEER_NAME}")]
    del steps, loops, peer
    _free(device)
    return rows


class _DecodedFiles(torch.utils.data.Dataset):
    """Decodes and resizes an image/mask file pair per item, as a hand-written pipeline does.

    Same resize as ``load_dataset`` (bilinear image, nearest mask) and the same output as
    ``BatchLoader`` without augmentation: float32 CHW ImageNet-normalized, int64 HW.
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], size: int) -> None:
        self.pairs, self.size = list(pairs), size
        self.mean = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[i]
        size = (self.size, self.size)
        with Image.open(image_path) as im:
            image = np.array(im.convert("RGB").resize(size, Image.Resampling.BILINEAR))
        with Image.open(mask_path) as im:
            mask = np.array(im.resize(size, Image.Resampling.NEAREST))
        x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
        labels = torch.from_numpy((mask > 0).astype(np.int64))  # binary masks: {0, 255} -> {0, 1}
        return x.sub_(self.mean).div_(self.std), labels


def _on_device(batches: Iterable, device: torch.device) -> Iterator:
    for images, masks in batches:
        yield images.to(device), masks.to(device)


def _write_folder(root: Path, n_train: int, size: int) -> list[tuple[Path, Path]]:
    """A ``folder`` dataset of PNGs (shapes drawn at twice ``size``); the training pairs."""
    spec = DataSpec("shapes", image_size=2 * size, options={"n_train": n_train, "n_val": 2})
    _, splits = load_dataset(spec, cache_dir=None)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    stems = {}
    for name, split in splits.items():
        stems[name] = [f"{name}{i:04d}" for i in range(len(split))]
        for stem, image, mask in zip(stems[name], split.images, split.masks):
            Image.fromarray(image).save(root / "images" / f"{stem}.png")
            Image.fromarray(mask * 255).save(root / "masks" / f"{stem}.png")
        (root / f"{name}.txt").write_text("\n".join(stems[name]) + "\n")
    return [(root / "images" / f"{s}.png", root / "masks" / f"{s}.png") for s in stems["train"]]


def _data_rows(variant: Variant, config: TrainConfig, device: torch.device,
               settings: BenchSettings) -> list[dict]:
    """Epoch time over the decode-once cache against decoding every file every epoch."""
    size, batch = settings.image_size, settings.batch
    with tempfile.TemporaryDirectory(prefix="ablate-bench-") as tmp:
        root = Path(tmp) / "folder"
        pairs = _write_folder(root, settings.data_images, size)
        spec = DataSpec("folder", root=root, image_size=size)
        t0 = time.perf_counter()
        load_dataset(spec, cache_dir=Path(tmp) / "cache")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        info, splits = load_dataset(spec, cache_dir=Path(tmp) / "cache")
        hit = time.perf_counter() - t0
        cached = BatchLoader(splits["train"], batch, device, shuffle=True, seed=SEED,
                             drop_last=True, ignore_index=info.ignore_index)
        decoded = torch.utils.data.DataLoader(_DecodedFiles(pairs, size), batch_size=batch,
                                              shuffle=True, drop_last=True, num_workers=0)

        def iterate(batches: Iterable) -> float:
            _sync(device)
            t0 = time.perf_counter()
            for images, masks in batches:
                pass
            _sync(device)
            return time.perf_counter() - t0

        def set_epoch(r: int) -> BatchLoader:
            cached.set_epoch(r)
            return cached

        iterate(set_epoch(0))
        iterate(_on_device(decoded, device))
        dc, dd = _alternate(settings.repeats, lambda r: iterate(set_epoch(r)),
                            lambda r: iterate(_on_device(decoded, device)))
        step = build_train_step(_seeded_model(variant, info, device), info, config, device)
        harness = _harness_loop(step)
        harness(cached, 0)
        harness(cached, 0, _on_device(decoded, device))
        tc, td = _alternate(settings.repeats, lambda r: harness(cached, r),
                            lambda r: harness(cached, r, _on_device(decoded, device)))
    n = f"{len(cached) * batch} images of {2 * size} px PNG, resized to {size} px"
    rows = [
        _row("data", "", "cache_first_load_s", "s", [first], "decode all files + write the cache"),
        _row("data", "", "cache_hit_load_s", "s", [hit], "read the cache back"),
        _row("data", "", "decode_epoch_s", "s", dd, f"data only, {n}"),
        _row("data", "", "cache_epoch_s", "s", dc, f"data only, {n}"),
        _row("data", "", "data_epoch_ratio", "ratio", [c / d for c, d in zip(dc, dd)],
             "data only, cache / decode"),
        _row("data", variant.id, "train_decode_epoch_s", "s", td, "training epoch"),
        _row("data", variant.id, "train_cache_epoch_s", "s", tc, "training epoch"),
        _row("data", variant.id, "train_epoch_ratio", "ratio", [c / d for c, d in zip(tc, td)],
             "training epoch, cache / decode"),
    ]
    del step, harness
    _free(device)
    return rows


class _LoaderTimer:
    """Iterates a loader and adds the time spent producing each batch to ``s``; on CUDA it
    synchronizes before and after each batch, so ``s`` holds the loader's own device work."""

    def __init__(self, loader: BatchLoader, device: torch.device) -> None:
        self.loader, self.device, self.s = loader, device, 0.0

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        while True:
            _sync(self.device)
            t0 = time.perf_counter()
            batch = next(batches, None)
            _sync(self.device)
            self.s += time.perf_counter() - t0
            if batch is None:
                return
            yield batch


def _cuda_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
               device: torch.device, settings: BenchSettings) -> list[dict]:
    """The CUDA switches and input wait on one variant; empty rows elsewhere."""
    if device.type != "cuda":
        return [_row("cuda", variant.id, m, u, note="no CUDA device here")
                for m, u in CUDA_METRICS.items()]
    return _switch_rows(variant, info, loader, config, device, settings)


def _switch_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
                 device: torch.device, settings: BenchSettings) -> list[dict]:
    """Speed-up of each switch (epoch time off / on, the rest at ``config``) and input wait."""
    rows = []
    for metric, key in (("bf16_speedup", "amp"), ("channels_last_speedup", "channels_last"),
                        ("compile_speedup", "compile")):
        if key == "compile" and not settings.compile:
            rows.append(_row("cuda", variant.id, metric, "ratio",
                             note="skipped (--smoke or --no-compile)"))
            continue
        on, off = (_harness_loop(build_train_step(_seeded_model(variant, info, device), info,
                                                  replace(config, **{key: flag}), device))
                   for flag in (True, False))
        on(loader, 0)
        off(loader, 0)
        t_on, t_off = _alternate(settings.repeats, lambda r: on(loader, r),
                                 lambda r: off(loader, r))
        rows.append(_row("cuda", variant.id, metric, "ratio",
                         [f / o for f, o in zip(t_off, t_on)], f"epoch time without / with {key}"))
        del on, off
        _free(device)

    harness = _harness_loop(build_train_step(_seeded_model(variant, info, device), info, config,
                                             device))
    harness(loader, 0)

    def ready(r: int) -> float:
        loader.set_epoch(r)
        return harness(loader, r, list(loader))  # the same batches, made in advance

    t_loader, t_ready = _alternate(settings.repeats, lambda r: harness(loader, r), ready)
    rows.append(_row("cuda", variant.id, "input_wait_share", "fraction",
                     [1 - b / a for a, b in zip(t_loader, t_ready)],
                     "1 - epoch time on batches made in advance / with the loader"))
    shares = []
    for r in range(1, settings.repeats + 1):
        timer = _LoaderTimer(loader, device)
        epoch_s = harness(loader, r, timer)  # fills timer.s
        shares.append(timer.s / epoch_s)
    rows.append(_row("cuda", variant.id, "loader_time_share", "fraction", shares,
                     "time inside the loader, synchronized / epoch time"))
    return rows


# ---------------------------------------------------------------------------------------------
# Machine and report


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _meta(device: torch.device, settings: BenchSettings) -> dict[str, str]:
    """The header of the md file: what ran where, when, and at what sizes."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, "
                 f"cuDNN {torch.backends.cudnn.version()}")
    else:
        where = f"CPU, {torch.get_num_threads()} torch threads"
    versions = ", ".join(f"{name} {_version(dist)}" for name, dist in (
        ("torch", "torch"), ("torchvision", "torchvision"),
        ("segmentation_models_pytorch", "segmentation-models-pytorch"), ("numpy", "numpy"),
        ("pillow", "pillow")))
    return {
        "title": device_slug(device),
        "machine": f"{_cpu_model()}, {_cores()} cores, {platform.system()} {platform.machine()}",
        "device": where,
        "versions": f"python {platform.python_version()}, {versions}; ablate {_version('ablate')} "
                    f"(git {git_commit()})",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": f"image {settings.image_size} px, batch {settings.batch}, steps per timed "
                    f"epoch {settings.steps}, timed rounds {settings.repeats} (after one "
                    f"warm-up), overhead rounds {settings.overhead_rounds}; preset quick (AdamW, "
                    "cosine schedule, dice loss, augmentation on the device)"
                    + ("; bf16 autocast and channels_last on (harness defaults), compile off"
                       if device.type == "cuda" else ""),
    }


def _num(value: float | str, digits: int = 3) -> str:
    if value == "":
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}" if abs(value) < 100 else f"{value:.0f}"


def _spread(row: dict | None) -> str:
    """``median [95% CI]`` of a ratio row, ``median (min–max)`` below ``CI_MIN_ROUNDS`` rounds,
    or a dash when it was not measured."""
    if row is None or row["median"] == "":
        return "–"
    if row["n"] == 1:
        return f"{row['median']:.3f} (one round)"
    if row["ci_low"] != "":
        return f"{row['median']:.3f} [{_ci(row)}]"
    return f"{row['median']:.3f} ({row['min']:.3f}–{row['max']:.3f})"


def _fixed(value: float | str, decimals: int = 3) -> str:
    return "–" if value == "" else f"{value:.{decimals}f}"


def _range(row: dict, decimals: int = 3) -> str:
    if row["median"] == "":
        return "–"
    return f"{_fixed(row['min'], decimals)} to {_fixed(row['max'], decimals)}"


def _ci(row: dict, decimals: int = 3) -> str:
    if row["ci_low"] == "":
        return "–"
    return f"{_fixed(row['ci_low'], decimals)} to {_fixed(row['ci_high'], decimals)}"


def _bound_verdict(extra: dict, step_ms: float | str, goal: float) -> str:
    """Whether the time the harness adds per step (``extra``, microseconds, with its interval)
    settles ``goal`` on a step of ``step_ms``: its upper bound as a share of the step."""
    if extra["ci_low"] == "" or step_ms == "":
        return f"not resolved: fewer than {CI_MIN_ROUNDS} rounds"
    high, low = max(extra["ci_high"], 0.0) / (1e3 * step_ms), extra["ci_low"] / (1e3 * step_ms)
    if high <= goal - 1:
        return f"met: at most {high:.2%} of a {step_ms:.3g} ms step (upper 95% bound)"
    if low > goal - 1:
        return f"missed: at least {low:.2%} of a {step_ms:.3g} ms step (lower 95% bound)"
    return f"not resolved: up to {high:.2%} of a {step_ms:.3g} ms step"


def _verdict(row: dict | None, goal: float, floor: dict | None = None) -> str:
    """Whether a time ratio's confidence interval settles ``ratio <= goal``; not when the A/A
    ``floor`` shows that identical code differs here (its interval excludes 1)."""
    if row is None or row["ci_low"] == "":
        return f"not resolved: fewer than {CI_MIN_ROUNDS} rounds"
    steady = floor is None or floor["ci_low"] == "" or floor["ci_low"] <= 1 <= floor["ci_high"]
    if not steady:
        return (f"not resolved: identical code differs here (A/A {floor['median']:.3f}, 95% CI "
                "excludes 1)")
    if row["ci_high"] <= goal:
        return f"met: the 95% CI lies at or below {goal}"
    if row["ci_low"] > goal:
        return f"missed: the 95% CI lies above {goal}"
    return f"not resolved: the 95% CI spans {goal}"


def _table(header: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body] + [""]


def _markdown(rows: list[dict], meta: dict[str, str], settings: BenchSettings) -> str:
    """The report: the header from ``meta``, then one table per section, built from ``rows``."""
    at = {(r["section"], r["variant"], r["metric"]): r for r in rows}

    def med(section: str, variant: str, metric: str, digits: int = 3) -> str:
        row = at.get((section, variant, metric))
        return "–" if row is None else _num(row["median"], digits)

    def ratio(section: str, variant: str, metric: str) -> str:
        return _spread(at.get((section, variant, metric)))

    b = settings.batch
    out = [f"# ablate bench: {meta['title']}", ""]
    out += [f"- {key}: {value}" for key, value in meta.items() if key != "title"]
    out += ["", "Medians over rounds. Each ratio is taken per round between measurements made "
            "back to back in this process (alternating ABBA), and quoted as median [95% "
            "confidence interval of the median, distribution-free] over rounds, or as median "
            f"(min–max) where there are fewer than {CI_MIN_ROUNDS} rounds. A time ratio below 1 "
            "means the first named is faster.", ""]

    variants = list(dict.fromkeys(r["variant"] for r in rows if r["section"] == "variant"))
    memory = at[("variant", variants[0], "peak_mem_mb")]["note"]
    out += ["## Variants", "",
            f"Goal: harness / bare loop at most {OVERHEAD_GOAL}; rounds per variant here: "
            f"{settings.repeats}; the next section settles the goal with more. "
            f"Latency: eval mode, fp32, median of 5 forwards per round. Peak memory: {memory}.",
            ""]
    out += _table(
        ["variant", "params (M)", "latency b1 (ms)", f"latency b{b} (ms)",
         "train img/s (harness)", "train img/s (bare)", "harness / bare time", "peak mem (MB)"],
        [[f"`{v}`", med("variant", v, "params_m", 4), med("variant", v, "latency_b1_ms"),
          med("variant", v, "latency_batch_ms"), med("variant", v, "train_images_per_s"),
          med("variant", v, "bare_images_per_s"), ratio("variant", v, "harness_over_bare"),
          med("variant", v, "peak_mem_mb")] for v in variants])

    ov = next(r["variant"] for r in rows if r["section"] == "overhead")
    harness = at[("overhead", ov, "harness_over_bare")]
    floor = at[("overhead", ov, "bare_copy_over_bare")]
    extra = at[("overhead", TRIVIAL, "harness_extra_us")]
    extra_floor = at[("overhead", TRIVIAL, "bare_copy_extra_us")]
    bare_ms = at[("overhead", ov, "bare_step_ms")]["median"]
    out += ["## Harness overhead", "",
            f"Three copies of a model, trained by the harness step, the bare loop and the bare "
            f"loop again, take turns over {harness['n']} rounds. The bare loop against its own "
            "copy runs identical code: its row is this machine's noise floor. First on "
            f"`{ov}`, rounds of {OVERHEAD_STEPS} batches (median step: harness "
            f"{med('overhead', ov, 'harness_step_ms')} ms, bare {_num(bare_ms)} ms); then on a "
            f"1x1 convolution, rounds of {TRIVIAL_STEPS} steps on one image, where a step "
            f"(bare: {med('overhead', TRIVIAL, 'bare_step_us')} µs) is mostly Python and kernel "
            "launches, so the time the harness adds per step shows in microseconds; its upper "
            f"bound over the variant's step bounds the overhead. Goal: harness / bare at most "
            f"{OVERHEAD_GOAL}.", ""]
    out += _table(["comparison", "median", "95% CI of the median", "min to max", "goal"], [
        ["harness / bare loop", _fixed(harness["median"]), _ci(harness), _range(harness),
         _verdict(harness, OVERHEAD_GOAL, floor)],
        ["bare copy / bare loop (noise floor)", _fixed(floor["median"]), _ci(floor),
         _range(floor), "–"],
        ["time the harness adds per step (µs, 1x1 conv)", _fixed(extra["median"], 1),
         _ci(extra, 1), _range(extra, 1), _bound_verdict(extra, bare_ms, OVERHEAD_GOAL)],
        ["bare copy - bare loop per step (µs, noise floor)", _fixed(extra_floor["median"], 1),
         _ci(extra_floor, 1), _range(extra_floor, 1), "–"],
    ])

    ours = PEER_VARIANT.id
    out += ["## Peer: segmentation_models_pytorch", "",
            f"`smp.Unet(\"resnet18\", encoder_weights=None, decoder_channels="
            f"{PEER_VARIANT.widths})` against our closest variant `{ours}`, both trained by the "
            "harness step on the same batches. Goal: ours / smp at most 1.", ""]
    if at[("peer", ours, "train_time_ratio")]["median"] == "":
        out += [f"Not measured: {at[('peer', ours, 'train_time_ratio')]['note']}.", ""]
    out += _table(["measurement", f"ours `{ours}`", PEER_NAME, "ours / smp"], [
        ["parameters (M)", med("peer", ours, "params_m", 7),
         med("peer", PEER_NAME, "params_m", 7), "–"],
        ["training (images/s)", med("peer", ours, "train_images_per_s"),
         med("peer", PEER_NAME, "train_images_per_s"),
         "time " + ratio("peer", ours, "train_time_ratio")],
        ["latency batch 1 (ms)", med("peer", ours, "latency_b1_ms"),
         med("peer", PEER_NAME, "latency_b1_ms"), ratio("peer", ours, "latency_b1_ratio")],
        [f"latency batch {b} (ms)", med("peer", ours, "latency_batch_ms"),
         med("peer", PEER_NAME, "latency_batch_ms"), ratio("peer", ours, "latency_batch_ratio")],
    ])
    out += ["Differences that remain:", ""] + [f"- {d}" for d in PEER_DIFFERENCES] + [""]

    tv = next(r["variant"] for r in rows if r["section"] == "data" and r["variant"])
    files = at[("data", "", "decode_epoch_s")]["note"].removeprefix("data only, ")
    out += ["## Data path", "",
            f"{files}; no augmentation on either side. Cache: `load_dataset` decodes once into "
            "the cache and `BatchLoader` batches on the device. Decode: a torch `DataLoader` "
            "(`num_workers=0`) that opens and resizes every PNG with PIL each epoch. The cache "
            f"is built once per dataset and size: {med('data', '', 'cache_first_load_s')} s to "
            f"decode and write, {med('data', '', 'cache_hit_load_s')} s to read back.", ""]
    out += _table(["epoch", "decode every epoch (s)", "decode-once cache (s)", "cache / decode"], [
        ["data only", med("data", "", "decode_epoch_s"), med("data", "", "cache_epoch_s"),
         ratio("data", "", "data_epoch_ratio")],
        [f"training `{tv}`", med("data", tv, "train_decode_epoch_s"),
         med("data", tv, "train_cache_epoch_s"), ratio("data", tv, "train_epoch_ratio")],
    ])

    cuda = [r for r in rows if r["section"] == "cuda"]
    out += ["## CUDA switches", "",
            f"On `{cuda[0]['variant']}` with the harness defaults (bf16 autocast, channels_last, "
            "no compile), switching one at a time; speed-up = epoch time without / with. Input "
            "wait = 1 - (epoch time on the same batches made in advance on the device) / (epoch "
            "time with the loader): what feeding costs the step, stalls included. Loader time = "
            "time inside the loader, synchronized before and after each batch, over the epoch "
            "time: its own work, overlap removed. Goal for input wait: under 5%.", ""]
    if all(r["note"] == "no CUDA device here" for r in cuda):
        out += ["No CUDA device here: these rows stay empty until `ablate bench` runs on a GPU.",
                ""]
    names = {"bf16_speedup": "bf16 autocast (speed-up)",
             "channels_last_speedup": "channels_last (speed-up)",
             "compile_speedup": "torch.compile (speed-up)",
             "input_wait_share": "input wait (share of step time)",
             "loader_time_share": "loader time (share of step time)"}
    out += _table(["switch", "median (min–max)", "note"],
                  [[names[r["metric"]], _spread(r), r["note"]] for r in cuda])
    return "\n".join(out)
