"""The measurements of ``ablate bench``, one function per section, each returning result rows:
per variant (latency, images/s, memory, harness / bare loop), the harness overhead with its A/A
noise floor, the smp peer, the speed switches (bf16, channels_last, compile, threads) and the
CUDA input wait."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from functools import partial

import torch

from ..config import TrainConfig
from ..data import BatchLoader, DatasetInfo
from ..evaluation.timing import peak_memory_mb, reset_peak_memory
from ..models.variant import Variant
from ..training.step import amp_dtype, build_train_step
from .loops import (
    SEED,
    alternate,
    bare_loop,
    first_batches,
    free,
    harness_loop,
    latency,
    params_m,
    seeded_model,
    sync,
)
from .machine import cores
from .settings import BenchSettings
from .stats import result_row

OVERHEAD_STEPS = 2            # batches per round in the overhead section: short, so many rounds fit
TRIVIAL_STEPS = 100           # steps per round on the 1x1 conv of the overhead section
TRIVIAL = "conv1x1"           # its name in the rows
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
CUDA_METRICS = {"input_wait_share": "fraction", "loader_time_share": "fraction"}


def variant_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
                 device: torch.device, settings: BenchSettings) -> list[dict]:
    """Latency, harness images/s, peak memory, and the harness step against the bare loop."""
    step = build_train_step(seeded_model(variant, info, device), info, config, device)
    harness = harness_loop(step)
    reset_peak_memory(device)
    harness(loader, 0)
    peak = peak_memory_mb(device)  # before the bare model exists
    bare = bare_loop(seeded_model(variant, info, device), info, config, device)
    bare(loader, 0)
    th, tb = alternate(settings.repeats, partial(harness, loader), partial(bare, loader))
    images = settings.steps * settings.batch
    lat1 = [latency(step.model, settings, 1, r == 0) for r in range(settings.repeats)]
    latn = [latency(step.model, settings, settings.batch, r == 0)
            for r in range(settings.repeats)]
    vid = variant.id
    rows = [
        result_row("variant", vid, "params_m", "M", [params_m(step.model)]),
        result_row("variant", vid, "latency_b1_ms", "ms", lat1, "batch 1"),
        result_row("variant", vid, "latency_batch_ms", "ms", latn, f"batch {settings.batch}"),
        result_row("variant", vid, "train_images_per_s", "images/s", [images / t for t in th],
                   "harness step"),
        result_row("variant", vid, "bare_images_per_s", "images/s", [images / t for t in tb],
                   "bare loop"),
        result_row("variant", vid, "peak_mem_mb", "MB", [peak],
                   "CUDA max allocated" if device.type == "cuda" else "process peak RSS so far"),
        result_row("variant", vid, "harness_over_bare", "ratio", [h / b for h, b in zip(th, tb)],
                   "epoch time, harness / bare loop"),
    ]
    del step, harness, bare
    free(device)
    return rows


def overhead_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
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
    th, tb, tc = _race(lambda: seeded_model(variant, info, device), info, config, device, loader,
                       lambda: first_batches(loader, OVERHEAD_STEPS), settings.overhead_rounds)
    steps = min(OVERHEAD_STEPS, len(loader))
    images, masks = next(iter(loader))
    one = (images[:1], masks[:1])  # per-step overhead does not grow with the batch; noise does
    xh, xb, xc = _race(lambda: _trivial_model(info, device), info, config, device, loader,
                       lambda: itertools.repeat(one, TRIVIAL_STEPS), settings.overhead_rounds)
    us = 1e6 / TRIVIAL_STEPS
    rows = [
        result_row("overhead", vid, "harness_step_ms", "ms", [1e3 * t / steps for t in th],
                   "harness step"),
        result_row("overhead", vid, "bare_step_ms", "ms", [1e3 * t / steps for t in tb],
                   "bare loop"),
        result_row("overhead", vid, "harness_over_bare", "ratio", [h / b for h, b in zip(th, tb)],
                   "epoch time, harness / bare loop"),
        result_row("overhead", vid, "bare_copy_over_bare", "ratio",
                   [c / b for c, b in zip(tc, tb)],
                   "epoch time, bare loop on a second copy / bare loop (noise floor)"),
        result_row("overhead", TRIVIAL, "bare_step_us", "us", [us * t for t in xb], "bare loop"),
        result_row("overhead", TRIVIAL, "harness_extra_us", "us",
                   [us * (h - b) for h, b in zip(xh, xb)], "per step, harness - bare loop"),
        result_row("overhead", TRIVIAL, "bare_copy_extra_us", "us",
                   [us * (c - b) for c, b in zip(xc, xb)],
                   "per step, bare loop on a second copy - bare loop (noise floor)"),
    ]
    free(device)
    return rows


def _trivial_model(info: DatasetInfo, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(SEED)
    return torch.nn.Conv2d(info.in_channels, info.model_outputs, 1).to(device)


def _race(make: Callable[[], torch.nn.Module], info: DatasetInfo, config: TrainConfig,
          device: torch.device, loader: BatchLoader, batches: Callable[[], Iterable],
          rounds: int) -> tuple[list[float], ...]:
    """Epoch times of the harness, the bare loop and the bare loop again, each on its own copy
    of ``make()``, over ``batches()``: one warm-up each, then ``rounds`` rounds in turn."""
    loops = (harness_loop(build_train_step(make(), info, config, device)),
             bare_loop(make(), info, config, device), bare_loop(make(), info, config, device))
    runs = [lambda r, loop=loop: loop(loader, r, batches()) for loop in loops]
    for run in runs:
        run(0)
    return alternate(rounds, *runs)


def peer_rows(info: DatasetInfo, loader: BatchLoader, config: TrainConfig, device: torch.device,
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
        return [result_row("peer", ours_id, m, u, note=note) for m, u in metrics]
    torch.manual_seed(SEED)
    peer = smp.Unet("resnet18", encoder_weights=None, in_channels=info.in_channels,
                    classes=info.model_outputs, decoder_channels=PEER_VARIANT.widths).to(device)
    steps = {ours_id: build_train_step(seeded_model(PEER_VARIANT, info, device), info, config,
                                       device),
             PEER_NAME: build_train_step(peer, info, config, device)}
    loops = {name: harness_loop(step) for name, step in steps.items()}
    for loop in loops.values():
        loop(loader, 0)
    to, tp = alternate(settings.repeats, partial(loops[ours_id], loader),
                       partial(loops[PEER_NAME], loader))
    images = settings.steps * settings.batch
    rows = []
    for name, times in ((ours_id, to), (PEER_NAME, tp)):
        rows += [result_row("peer", name, "params_m", "M", [params_m(steps[name].model)]),
                 result_row("peer", name, "train_images_per_s", "images/s",
                            [images / t for t in times])]
    rows.append(result_row("peer", ours_id, "train_time_ratio", "ratio",
                           [o / p for o, p in zip(to, tp)], f"epoch time, ours / {PEER_NAME}"))
    for name, batch in (("b1", 1), ("batch", settings.batch)):
        lo, lp = alternate(
            settings.repeats,
            lambda r, m=steps[ours_id].model, b=batch: latency(m, settings, b, r == 1),
            lambda r, m=steps[PEER_NAME].model, b=batch: latency(m, settings, b, r == 1))
        rows += [result_row("peer", ours_id, f"latency_{name}_ms", "ms", lo, f"batch {batch}"),
                 result_row("peer", PEER_NAME, f"latency_{name}_ms", "ms", lp, f"batch {batch}"),
                 result_row("peer", ours_id, f"latency_{name}_ratio", "ratio",
                            [o / p for o, p in zip(lo, lp)], f"batch {batch}, ours / {PEER_NAME}")]
    del steps, loops, peer
    free(device)
    return rows


class _LoaderTimer:
    """Iterates a loader and adds the time spent producing each batch to ``s``; on CUDA it
    synchronizes before and after each batch, so ``s`` holds the loader's own device work."""

    def __init__(self, loader: BatchLoader, device: torch.device) -> None:
        self.loader, self.device, self.s = loader, device, 0.0

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        while True:
            sync(self.device)
            t0 = time.perf_counter()
            batch = next(batches, None)
            sync(self.device)
            self.s += time.perf_counter() - t0
            if batch is None:
                return
            yield batch


#: The speed switches (TrainConfig keys), each timed against the plain path: every switch off
#: and every core in use. ``threads`` compares one thread (off) with every core (on).
SWITCHES = {"bf16_speedup": "amp", "channels_last_speedup": "channels_last",
            "compile_speedup": "compile", "threads_speedup": "threads"}
PLAIN = {"amp": False, "channels_last": False, "compile": False, "threads": 0}
SWITCH_LABELS = {"amp": "bf16 autocast", "channels_last": "channels_last",
                 "compile": "torch.compile (inductor)", "threads": "every core (vs 1 thread)"}


def switch_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
                device: torch.device, settings: BenchSettings) -> list[dict]:
    """Speed-up of each switch on its own: epoch time of the plain path / with the switch, per
    round over ``settings.switch_rounds`` alternating rounds (the rest of ``config`` as it is).

    A switch this device cannot use gets an empty row that says why: bf16 autocast on a CPU
    without bf16 instructions, threads on CUDA, compile with ``settings.compile`` off.
    """
    plain = replace(config, **PLAIN)
    rows = []
    for metric, key in SWITCHES.items():
        reason = _unusable(key, device, settings)
        if reason:
            rows.append(result_row("switches", variant.id, metric, "ratio", note=reason))
            continue
        configs = (plain, plain) if key == "threads" else (replace(plain, **{key: True}), plain)
        on, off = (harness_loop(build_train_step(seeded_model(variant, info, device), info,
                                                 step_config, device))
                   for step_config in configs)
        if key == "threads":
            on, off = _with_threads(cores(), on), _with_threads(1, off)
        on(loader, 0)
        off(loader, 0)
        t_on, t_off = alternate(settings.switch_rounds, partial(on, loader), partial(off, loader))
        rows.append(result_row("switches", variant.id, metric, "ratio",
                               [f / o for f, o in zip(t_off, t_on)],
                               f"epoch time plain / with {SWITCH_LABELS[key]}"))
        del on, off
        free(device)
    return rows


def _unusable(key: str, device: torch.device, settings: BenchSettings) -> str:
    if key == "amp" and amp_dtype(device) != torch.bfloat16:
        return ("this CPU has no bf16 instructions (avx512_bf16 or AMX)" if device.type == "cpu"
                else "no bf16 on this device")
    if key == "compile" and not settings.compile:
        return "skipped (--smoke or --no-compile)"
    if key == "threads" and device.type != "cpu":
        return "CPU only"
    if key == "threads" and cores() < 2:
        return "one core: nothing to compare"
    return ""


def _with_threads(n: int, loop: Callable[..., float]) -> Callable[..., float]:
    """``loop`` run with ``n`` torch threads, the previous count restored after each epoch."""

    def epoch(*args, **kwargs) -> float:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return loop(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return epoch


def cuda_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
              device: torch.device, settings: BenchSettings) -> list[dict]:
    """Input wait and loader time on one variant (CUDA); empty rows elsewhere."""
    if device.type != "cuda":
        return [result_row("cuda", variant.id, m, u, note="no CUDA device here")
                for m, u in CUDA_METRICS.items()]
    return input_rows(variant, info, loader, config, device, settings)


def input_rows(variant: Variant, info: DatasetInfo, loader: BatchLoader, config: TrainConfig,
               device: torch.device, settings: BenchSettings) -> list[dict]:
    """What feeding costs the step: input wait and the loader's own time."""
    rows = []
    harness = harness_loop(build_train_step(seeded_model(variant, info, device), info, config,
                                            device))
    harness(loader, 0)

    def ready(r: int) -> float:
        loader.set_epoch(r)
        return harness(loader, r, list(loader))  # the same batches, made in advance

    t_loader, t_ready = alternate(settings.repeats, partial(harness, loader), ready)
    rows.append(result_row("cuda", variant.id, "input_wait_share", "fraction",
                           [1 - b / a for a, b in zip(t_loader, t_ready)],
                           "1 - epoch time on batches made in advance / with the loader"))
    shares = []
    for r in range(1, settings.repeats + 1):
        timer = _LoaderTimer(loader, device)
        epoch_s = harness(loader, r, timer)  # fills timer.s
        shares.append(timer.s / epoch_s)
    rows.append(result_row("cuda", variant.id, "loader_time_share", "fraction", shares,
                           "time inside the loader, synchronized / epoch time"))
    return rows
