"""Speed benchmarks: what an ablation costs, and whether the harness is as fast as plain code.

``run_bench(device, variants, out_dir, settings)`` writes ``<out_dir>/<device>.csv`` (one row per
measurement) and ``<out_dir>/<device>.md`` (machine, versions and date, then tables):

- per variant: inference latency at batch 1 and at the training batch, training images/s with
  the harness step, peak memory, and the harness step against a bare hand-written loop;
- overhead: on the first variant, the harness step against the bare loop and the bare loop
  against itself (the noise floor) over many short rounds, with 95% confidence intervals;
- peer: our closest variant against ``segmentation_models_pytorch.Unet("resnet18")``;
- data path: an epoch over the decode-once cache against decoding the image files every epoch;
- switches: the speed-up of bf16 autocast (where the device has bf16), channels_last,
  ``torch.compile`` and (CPU) every core against one thread, each against the plain path; the
  quick preset turns on the CPU switches measured faster;
- CUDA only: the share of step time spent waiting for input;
- jobs: the wall time of a few cells trained by one process with every thread against N
  processes (``ablate run --jobs``); ``make ablation``'s ``JOBS`` follows the fastest.

Conventions. The harness side always runs ``ablate.training.step.train_epoch`` on objects made by
``build_train_step``, the code ``train`` runs. Every timed pass follows one untimed warm-up pass.
Compared measurements run in the same process in alternating order (ABBA...), so that drift and
thermal or neighbour noise hit both sides alike; a ratio is taken per round and we report the
median over rounds with the min-max, and from 6 rounds on a distribution-free 95% confidence
interval of the median (``scipy.stats.quantile_test``). Epochs are timed with ``perf_counter``
(after a synchronize on CUDA), latency with ``ablate.evaluation.timing.latency_ms`` (CUDA events
on GPU).
Peak memory: CUDA max allocated during one training epoch; on the CPU the process's peak RSS so
far, which never goes down within a run.

Modules: ``settings`` (``BenchSettings``, ``SMOKE``), ``loops`` (what is timed: the harness step,
the bare loop, latency, ABBA order), ``measure`` (the variant, overhead, peer, switch and CUDA
sections), ``datapath`` (cache against decoding files), ``jobs`` (one process against N),
``stats`` (result rows, median CI, verdicts), ``machine`` (device name, header), ``report`` (csv
and Markdown) and ``run`` (``run_bench``).
"""

from __future__ import annotations

from .machine import device_slug
from .measure import CUDA_METRICS, PEER_NAME, PEER_VARIANT, PLAIN, SWITCHES, TRIVIAL
from .report import OVERHEAD_GOAL
from .run import DEFAULT_EXPERIMENTS, bench_devices, default_variants, run_bench
from .settings import SMOKE, BenchSettings
from .stats import CI_LEVEL, CI_MIN_ROUNDS, COLUMNS

__all__ = ["CI_LEVEL", "CI_MIN_ROUNDS", "COLUMNS", "CUDA_METRICS", "DEFAULT_EXPERIMENTS",
           "OVERHEAD_GOAL", "PEER_NAME", "PEER_VARIANT", "PLAIN", "SMOKE", "SWITCHES", "TRIVIAL",
           "BenchSettings",
           "bench_devices", "default_variants", "device_slug", "run_bench"]
