"""The ``slurm:`` mapping of an experiment or search file: how ``ablate launch slurm`` asks SLURM
for its array of workers (``ablate.scale.slurm``)::

    slurm:
      partition: gpu        # default: the cluster's default partition
      time: 240             # minutes per array task; a task is requeued when it runs out
      cpus_per_task: 8
      gpus: 1               # GPUs per array task
      mem: 32G              # memory per array task (SLURM's --mem)
      array: 4              # workers: array tasks sharing the cells (or the trials)
      account: proj123      # optional, as the cluster asks
      qos: normal
      setup: ["module load cuda/12.1", "source .venv/bin/activate"]

Every key is optional and can be given on the command line too (``--time 240``), which wins.
Each value is checked where it is made (``SlurmSpec.__post_init__``), from the file or the
command line alike; an unknown key is refused with the allowed ones.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..common.checks import is_int, not_allowed, refuse_unknown
from ..common.markdown import table

_MEM = re.compile(r"\d+[KMGT]?")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")

#: Each key's default, allowed values and meaning, for the generated table of docs/cluster.md.
KEY_DOCS: dict[str, tuple[str, str, str]] = {
    "partition": ("the cluster's default", "a partition `sinfo` lists",
                  "where the array runs; an unknown one is refused before submitting"),
    "time": ("`60`", "an integer >= 1, minutes", "time limit of each array task; a task that "
                                                 "reaches it is checkpointed and requeued"),
    "cpus_per_task": ("`1`", "an integer >= 1", "CPU cores of each array task (set "
                                                "`train: {threads: N}` to match)"),
    "gpus": ("`0`", "an integer >= 0", "GPUs of each array task (`--gpus-per-node`)"),
    "mem": ("SLURM's default", "an integer with an optional K, M, G or T suffix",
            "memory of each array task (`--mem`)"),
    "array": ("`2`", "an integer >= 1", "array tasks, each one worker on the shared storage"),
    "account": ("none", "a SLURM account name", "the account the array is charged to"),
    "qos": ("none", "a SLURM QOS name", "the quality of service of the array"),
    "setup": ("`[]`", "a list of shell lines", "run before each worker (`module load`, "
                                               "activating an environment)"),
}


@dataclass(frozen=True)
class SlurmSpec:
    """The resources of one array of workers (see the module docstring); validated when made."""

    partition: str | None = None
    time: int = 60
    cpus_per_task: int = 1
    gpus: int = 0
    mem: str | None = None
    array: int = 2
    account: str | None = None
    qos: str | None = None
    setup: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, least in (("time", 1), ("cpus_per_task", 1), ("gpus", 0), ("array", 1)):
            value = getattr(self, name)
            if not is_int(value) or value < least:
                raise not_allowed(name, value, f"an integer >= {least}")
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and _NAME.fullmatch(value)):
                raise not_allowed(name, value, "a SLURM name (letters, digits, '_', '-', '.')")
        if self.mem is not None and not (isinstance(self.mem, str) and _MEM.fullmatch(self.mem)):
            raise not_allowed("mem", self.mem, "an integer with an optional K, M, G or T suffix "
                                               "(e.g. 16G)")
        if not isinstance(self.setup, tuple) or not all(isinstance(s, str) for s in self.setup):
            raise not_allowed("setup", self.setup, "a list of shell lines")

    def replace(self, **changes: Any) -> SlurmSpec:
        """A copy with ``changes`` (None values keep what is set: an option not given)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def parse_slurm(value: Any) -> SlurmSpec:
    """The ``slurm:`` mapping of a file as a ``SlurmSpec`` (missing or empty: the defaults)."""
    if value is None:
        return SlurmSpec()
    if not isinstance(value, Mapping):
        raise ValueError(f"{value!r} is not allowed; allowed: a mapping of "
                         f"{', '.join(KEY_DOCS)}")
    refuse_unknown(value, KEY_DOCS, "key")
    given = dict(value)
    if isinstance(given.get("mem"), int) and not isinstance(given["mem"], bool):
        given["mem"] = str(given["mem"])  # YAML reads `mem: 4000` as a number
    if isinstance(given.get("setup"), list):
        given["setup"] = tuple(given["setup"])
    return SlurmSpec(**given)


def keys_markdown() -> str:
    """The ``slurm:`` keys with default, allowed values and meaning, generated into
    docs/cluster.md by ``ablate docs``."""
    fields = [f.name for f in dataclasses.fields(SlurmSpec)]
    if fields != list(KEY_DOCS):
        raise ValueError("KEY_DOCS and SlurmSpec differ: "
                         + ", ".join(sorted(set(fields) ^ set(KEY_DOCS))))
    return table(("key", "default", "allowed", "meaning"),
                 [(f"`{k}`", *KEY_DOCS[k]) for k in KEY_DOCS])
