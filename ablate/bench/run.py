"""One benchmark run: which devices and variants, and ``run_bench``, which measures every
section on a device and writes ``<device>.csv`` and ``<device>.md``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..common.env import resolve_device
from ..config import load_config
from ..data import BatchLoader, DataSpec, load_dataset
from ..experiment import load_experiment
from ..models.variant import Variant
from .datapath import data_rows
from .jobs import jobs_rows
from .loops import SEED
from .machine import cores, device_slug, meta
from .measure import PLAIN, cuda_rows, overhead_rows, peer_rows, switch_rows, variant_rows
from .report import markdown, write_csv
from .settings import DEFAULTS, BenchSettings

DEFAULT_EXPERIMENTS = ("experiments/seed002_pooling_quick.yaml",
                       "experiments/seed002_skips_quick.yaml")


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


def run_bench(device: torch.device, variants: Sequence[Variant], out_dir: str | Path,
              settings: BenchSettings = DEFAULTS) -> tuple[Path, Path]:
    """Measure everything on ``device`` and write the csv and md; returns their paths."""
    if not variants:
        raise ValueError("no variants to benchmark; allowed: at least one")
    device = torch.device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads or cores())
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train() sets it
    try:
        config = load_config("quick", image_size=settings.image_size, batch_size=settings.batch,
                             device=device.type)
        if device.type == "cuda":  # the speed switches of the GPU preset
            full = load_config("full")
            config = config.replace(**{key: getattr(full, key) for key in PLAIN})
        spec = DataSpec("shapes", image_size=settings.image_size,
                        options={"n_train": settings.steps * settings.batch, "n_val": 1,
                                 "style": "hard"})
        info, splits = load_dataset(spec, cache_dir=None)
        loader = BatchLoader(splits["train"], settings.batch, device, shuffle=True,
                             augment=config.augment, seed=SEED, drop_last=True,
                             ignore_index=info.ignore_index)
        header = meta(device, settings, config)
        first = variants[0]
        jobs = [(f"variant {v.id}", lambda v=v: variant_rows(v, info, loader, config, device,
                                                             settings)) for v in variants]
        jobs += [("overhead", lambda: overhead_rows(first, info, loader, config, device,
                                                    settings)),
                 ("peer", lambda: peer_rows(info, loader, config, device, settings)),
                 ("data path", lambda: data_rows(first, config, device, settings)),
                 ("switches", lambda: switch_rows(first, info, loader, config, device,
                                                  settings)),
                 ("cuda", lambda: cuda_rows(first, info, loader, config, device, settings)),
                 ("jobs", lambda: jobs_rows(first, device, settings))]
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
    write_csv(rows, csv_path)
    md_path.write_text(markdown(rows, header, settings))
    return csv_path, md_path
