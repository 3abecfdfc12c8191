"""The built-in procedural dataset: shapes on textured noise, generated in memory."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .readers import voc_palette
from .spec import DATASETS, SEED, DatasetInfo, Option, Source, Split, choice, int_at_least

# The generator's version is part of the cache key: bump it whenever a drawing changes.
_SHAPES_VERSION = 1
_SHAPES_TARGETS = {"disk": (0.2, 1), "ring": (0.25, 1), "triangle": (0.2, 2),
                   "triangle_outline": (0.15, 2), "line": (0.2, 3)}  # kind: (probability, class)
_SHAPES_DISTRACTORS = {"square": 0.35, "square_outline": 0.3, "cross": 0.35}
_SHAPES_MULTICLASS = ("background", "circle", "triangle", "line")


@dataclass(frozen=True)
class Style:
    """How hard a ``shapes`` image is: distractors, background texture, noise, contrast."""

    distractors: bool                 # squares and crosses that only their shape tells apart
    texture: float                    # scale of the background's sinusoids and gradient
    noise: tuple[float, float]        # range of the pixel noise sigma (of a 0..1 intensity)
    light: float                      # amplitude of the uneven lighting
    contrast: float                   # least max-channel gap between object and background


#: ``hard``: targets told apart from distractors by shape only (the GPU studies' task).
#: ``clean``: no distractors, quieter background, higher contrast: a network learns it within a
#: CPU budget, while 1-3 px strokes and boundaries still need fine spatial detail (the quick
#: studies' task; a per-pixel colour rule gets far on it, so it tests resolution, not
#: recognition). ``clean`` is the default, so ``ablate train --data shapes`` converges on a CPU;
#: the full (GPU) studies name ``style: hard``.
STYLES: dict[str, Style] = {
    "hard": Style(distractors=True, texture=1.0, noise=(0.02, 0.08), light=0.15, contrast=0.3),
    "clean": Style(distractors=False, texture=0.5, noise=(0.01, 0.03), light=0.05, contrast=0.5),
}


@DATASETS.register("shapes", layout="(generated in memory; reads no files)", needs_root=False,
                   options={
                       "mode": Option("binary", choice("binary", "multiclass"),
                                       "binary (all targets vs background) or multiclass "
                                       "(background, circle, triangle, line)"),
                       "n_train": Option(512, int_at_least(1), "a positive integer"),
                       "n_val": Option(128, int_at_least(1), "a positive integer"),
                       "style": Option("clean", choice(*STYLES),
                                       f"{' or '.join(STYLES)} (see ablate.data.shapes.STYLES)"),
                       "seed": SEED,
                   })
def shapes(root: None, image_size: int, options: Mapping[str, Any]) -> Source:
    """Procedural shapes on textured noise; in the ``hard`` style targets differ from distractors
    by shape only.

    Targets: disks and thin rings (circle), filled and outlined triangles (triangle), and 1-3 px
    lines (line). Distractors: filled and outlined squares and crosses, drawn from the same size
    and colour distributions, so only shape tells them apart. Objects overlap (later ones occlude
    earlier ones, in the mask too), some are a few pixels across, and the background is random
    colour plus sinusoids, a gradient and pixel noise. Image ``i`` of a split depends only on
    (seed, split, i), so a larger ``n_train`` extends the same sequence; val uses other seeds.
    ``style`` sets how hard the images are (:data:`STYLES`): ``clean`` (the default) draws no
    distractors; ``hard`` draws them.
    """
    multiclass = options["mode"] == "multiclass"
    style = STYLES[options["style"]]

    def decode() -> tuple[DatasetInfo, dict[str, Split]]:
        splits = {}
        for code, (name, count) in enumerate((("train", options["n_train"]),
                                              ("val", options["n_val"]))):
            pairs = [_shapes_image(np.random.default_rng([options["seed"], code, i]), image_size,
                                   style) for i in range(count)]
            masks = np.stack([m for _, m in pairs])
            splits[name] = Split(np.stack([im for im, _ in pairs]),
                                 masks if multiclass else (masks > 0).astype(np.uint8))
        names = _SHAPES_MULTICLASS if multiclass else ("background", "target")
        return DatasetInfo("shapes", len(names), 3, None, names, voc_palette(len(names))), splits

    params = json.dumps({"version": _SHAPES_VERSION, **dict(options)}, sort_keys=True)
    return Source(hashlib.sha256(params.encode()).hexdigest(), decode)


def _segment_distance(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(x - a[0] - t * d[0], y - a[1] - t * d[1])


def _shape_region(kind: str, rng: np.random.Generator, size: int, x: np.ndarray,
                  y: np.ndarray) -> np.ndarray:
    """Boolean pixel region of one randomly placed shape of ``kind``."""
    centre = rng.uniform(0, size, 2)
    r_min, r_max = max(2.0, size / 20), size / 4
    r = float(np.exp(rng.uniform(np.log(r_min), np.log(r_max))))
    width = rng.uniform(1.0, 3.0)  # thin strokes: 1-3 px at every image size
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = x - centre[0], y - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if kind == "disk":
        return np.hypot(dx, dy) <= r
    if kind == "ring":
        return np.abs(np.hypot(dx, dy) - max(r, r_min + 2)) <= width / 2
    if kind in ("triangle", "triangle_outline"):
        turns = angle + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.35, 0.35, 3)
        pts = centre + max(r, r_min + 2) * np.stack([np.cos(turns), np.sin(turns)], 1)
        if kind == "triangle_outline":
            dist = np.min([_segment_distance(x, y, pts[i], pts[(i + 1) % 3]) for i in range(3)], 0)
            return dist <= width / 2
        side = [(b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])
                for a, b in ((pts[0], pts[1]), (pts[1], pts[2]), (pts[2], pts[0]))]
        return ((side[0] >= 0) & (side[1] >= 0) & (side[2] >= 0)) | (
            (side[0] <= 0) & (side[1] <= 0) & (side[2] <= 0))
    if kind == "line":
        half = rng.uniform(size / 8, size * 0.35) * np.array([np.cos(angle), np.sin(angle)])
        return _segment_distance(x, y, centre - half, centre + half) <= width / 2
    box = np.maximum(np.abs(u), np.abs(v))
    if kind == "square":
        return box <= 0.85 * r
    if kind == "square_outline":
        return np.abs(box - 0.85 * max(r, r_min + 2)) <= width / 2
    if kind == "cross":
        arm = rng.uniform(1.5, 4.0) / 2
        return ((np.abs(u) <= r) & (np.abs(v) <= arm)) | ((np.abs(v) <= r) & (np.abs(u) <= arm))
    raise ValueError(f"unknown shape kind {kind!r}")


def _shapes_image(rng: np.random.Generator, size: int, style: Style
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One image (size, size, 3) uint8 and its multiclass mask (0 background, 1..3 targets)."""
    y, x = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5)
    base = rng.uniform(0.15, 0.85, 3)
    image = np.broadcast_to(base, (size, size, 3)).copy()
    for _ in range(3):
        cycles, theta, phase = rng.uniform(1, 8), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * cycles * (x * np.cos(theta) + y * np.sin(theta)) / size + phase)
        image += style.texture * wave[..., None] * rng.uniform(-0.1, 0.1, 3)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = ((x - size / 2) * np.cos(theta) + (y - size / 2) * np.sin(theta)) / size
    image += style.texture * ramp[..., None] * rng.uniform(-0.3, 0.3, 3)

    targets = list(_SHAPES_TARGETS)
    p_targets = [p for p, _ in _SHAPES_TARGETS.values()]
    kinds = list(rng.choice(targets, rng.integers(3, 7), p=p_targets))
    if style.distractors:
        kinds += list(rng.choice(list(_SHAPES_DISTRACTORS), rng.integers(2, 5),
                                 p=list(_SHAPES_DISTRACTORS.values())))
    mask = np.zeros((size, size), np.uint8)
    for k in rng.permutation(len(kinds)):
        kind = str(kinds[k])
        region = _shape_region(kind, rng, size, x, y)
        colour = rng.uniform(0, 1, 3)
        for _ in range(10):  # keep objects visible against the background's mean colour
            if np.abs(colour - base).max() >= style.contrast:
                break
            colour = rng.uniform(0, 1, 3)
        image[region] = colour
        mask[region] = _SHAPES_TARGETS[kind][1] if kind in _SHAPES_TARGETS else 0
    # Uneven lighting over everything, objects included.
    phi, period = rng.uniform(0, 2 * np.pi), rng.uniform(1.5, 4) * size
    light = 1 + rng.uniform(-style.light, style.light) * np.cos(
        2 * np.pi * (x * np.cos(phi) + y * np.sin(phi)) / period)
    image = image * light[..., None] + rng.normal(0, rng.uniform(*style.noise), image.shape)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8), mask
