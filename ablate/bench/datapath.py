"""The data-path measurement: an epoch over the decode-once cache (``load_dataset`` and
``BatchLoader``) against a hand-written pipeline that decodes the image files every epoch."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import TrainConfig
from ..data import IMAGENET_MEAN, IMAGENET_STD, BatchLoader, DataSpec, load_dataset
from ..models.variant import Variant
from ..training.step import build_train_step
from .loops import SEED, alternate, free, harness_loop, seeded_model, sync
from .settings import BenchSettings
from .stats import result_row


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
    spec = DataSpec("shapes", image_size=2 * size,
                    options={"n_train": n_train, "n_val": 2, "style": "hard"})
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


def data_rows(variant: Variant, config: TrainConfig, device: torch.device,
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
            sync(device)
            t0 = time.perf_counter()
            for _images, _masks in batches:
                pass
            sync(device)
            return time.perf_counter() - t0

        def set_epoch(r: int) -> BatchLoader:
            cached.set_epoch(r)
            return cached

        iterate(set_epoch(0))
        iterate(_on_device(decoded, device))
        dc, dd = alternate(settings.repeats, lambda r: iterate(set_epoch(r)),
                           lambda r: iterate(_on_device(decoded, device)))
        step = build_train_step(seeded_model(variant, info, device), info, config, device)
        harness = harness_loop(step)
        harness(cached, 0)
        harness(cached, 0, _on_device(decoded, device))
        tc, td = alternate(settings.repeats, partial(harness, cached),
                           lambda r, h=harness: h(cached, r, _on_device(decoded, device)))
    n = f"{len(cached) * batch} images of {2 * size} px PNG, resized to {size} px"
    rows = [
        result_row("data", "", "cache_first_load_s", "s", [first],
                   "decode all files + write the cache"),
        result_row("data", "", "cache_hit_load_s", "s", [hit], "read the cache back"),
        result_row("data", "", "decode_epoch_s", "s", dd, f"data only, {n}"),
        result_row("data", "", "cache_epoch_s", "s", dc, f"data only, {n}"),
        result_row("data", "", "data_epoch_ratio", "ratio", [c / d for c, d in zip(dc, dd)],
                   "data only, cache / decode"),
        result_row("data", variant.id, "train_decode_epoch_s", "s", td, "training epoch"),
        result_row("data", variant.id, "train_cache_epoch_s", "s", tc, "training epoch"),
        result_row("data", variant.id, "train_epoch_ratio", "ratio",
                   [c / d for c, d in zip(tc, td)], "training epoch, cache / decode"),
    ]
    del step, harness
    free(device)
    return rows
