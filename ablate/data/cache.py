"""Load a dataset once: decode on a cache miss, else read the resized splits back.

Resized splits are cached as ``.npz`` under ``cache_dir``, keyed by dataset name, image size,
split, the resolved options and a fingerprint of the source (for file datasets the relative path,
size and mtime of every file read, list files included; for ``shapes`` the generation parameters
and generator version), so a variant never re-decodes what another decoded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..common.files import CACHE_DIR, atomic_path
from .spec import DATASETS, SPLITS, DatasetInfo, DataSpec, Source, Split

log = logging.getLogger(__name__)

# Bump when a decoder or the cache format changes, so that old caches are not read back.
_CACHE_VERSION = 1


def load_dataset(spec: DataSpec, cache_dir: str | Path | None = CACHE_DIR
                 ) -> tuple[DatasetInfo, dict[str, Split]]:
    """The dataset ``spec`` names: its info and ``{"train": Split, "val": Split}``.

    The source is checked first (missing or malformed files raise ``FileNotFoundError`` or
    ``ValueError`` naming the file and showing the expected layout). Then the cached splits are
    loaded if their key matches, else the source is decoded, resized and written to the cache
    (atomically, through ``ablate.common.files.atomic_path``). ``cache_dir=None`` decodes now and
    writes nothing.
    """
    if not isinstance(spec, DataSpec):
        raise TypeError(f"load_dataset needs an ablate DataSpec, got {type(spec).__name__}")
    meta = DATASETS.meta(spec.name)
    root = None
    if meta["needs_root"]:
        root = Path(spec.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{spec.name}: root folder {root} does not exist\n"
                                    f"expected layout:\n{meta['layout']}")
    source: Source = DATASETS.get(spec.name)(root, spec.image_size, spec.options)
    if cache_dir is None:
        return source.decode()
    paths = _cache_paths(Path(cache_dir), spec, source.fingerprint)
    cached = _load_cache(paths)
    if cached is not None:
        log.debug("loaded %s from cache %s", spec.name, paths["train"].parent)
        return cached
    info, splits = source.decode()
    _save_cache(paths, info, splits)
    log.info("decoded %s (%s) and cached it in %s", spec.name,
             ", ".join(f"{k} {len(v)}" for k, v in splits.items()), paths["train"].parent)
    return info, splits


def _cache_paths(cache_dir: Path, spec: DataSpec, fingerprint: str) -> dict[str, Path]:
    key = json.dumps({"version": _CACHE_VERSION, "name": spec.name, "image_size": spec.image_size,
                      "options": dict(spec.options), "source": fingerprint}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return {s: cache_dir / f"{spec.name}-{spec.image_size}px-{s}-{digest}.npz" for s in SPLITS}


def _load_cache(paths: dict[str, Path]) -> tuple[DatasetInfo, dict[str, Split]] | None:
    if not all(p.is_file() for p in paths.values()):
        return None
    try:
        splits, info = {}, None
        for name, path in paths.items():
            with np.load(path, allow_pickle=False) as z:
                splits[name] = Split(z["images"], z["masks"])
                info = info or DatasetInfo(**json.loads(str(z["info"])))
        return info, splits
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        warnings.warn(f"unreadable dataset cache {paths['train'].parent} ({e}); decoding again",
                      stacklevel=2)
        return None


def _save_cache(paths: dict[str, Path], info: DatasetInfo, splits: dict[str, Split]) -> None:
    info_json = json.dumps(asdict(info))
    for name, path in paths.items():
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, images=splits[name].images, masks=splits[name].masks,
                     info=np.array(info_json))
