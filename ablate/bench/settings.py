"""The sizes of one benchmark run: ``BenchSettings``, its ``DEFAULTS`` and ``SMOKE`` (seconds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one benchmark run (the defaults are ``ablate bench``'s)."""

    image_size: int = 32        # pixels, square (the quick preset's)
    batch: int = 16             # training batch and the larger latency batch
    steps: int = 10             # training steps in one timed epoch
    repeats: int = 5            # timed rounds per measurement, after one warm-up
    overhead_rounds: int = 30   # rounds of the overhead section (harness, bare, bare copy)
    switch_rounds: int = 12     # rounds of each speed switch against the plain path
    data_images: int = 64       # training images in the on-disk dataset of the data-path test
    compile: bool = True        # CUDA: measure torch.compile (its warm-up takes a minute)
    threads: int = 0            # CPU intra-op threads; 0: every core this process may use
    jobs_rounds: int = 3        # rounds of one job against N jobs, each training the cells
    jobs_cells: int = 4         # cells trained per round (at least the most jobs compared)

    def __post_init__(self) -> None:
        for name in ("image_size", "batch", "steps", "repeats", "overhead_rounds", "switch_rounds",
                     "data_images", "jobs_rounds", "jobs_cells"):
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


DEFAULTS = BenchSettings()
SMOKE = BenchSettings(image_size=32, batch=2, steps=2, repeats=1, overhead_rounds=2,
                      switch_rounds=2, data_images=4, compile=False, jobs_rounds=1,
                      jobs_cells=2)
