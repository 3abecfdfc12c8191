"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Every stage that writes results, checkpoints, caches or claims goes through
:func:`atomic_path`, so that a crash, an interrupt or a second process writing the same file
cannot leave a torn file behind. The temporary file is unique per writer (``mkstemp``) and ends in
``.tmp``, which ``.gitignore`` keeps out of git.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Where decoded datasets and encoder inits are cached, relative to the working directory.
CACHE_DIR = ".cache/ablate"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write to; when the block ends without an
    exception it replaces ``path`` (``os.replace``), otherwise it is removed and ``path`` is left
    as it was. The new file is readable by all (mode 0o644): caches and results may be shared."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
