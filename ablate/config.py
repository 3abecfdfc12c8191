"""Training configuration: a frozen dataclass, named presets in YAML, strict overrides.

Defaults are seed 002's final recipe. A preset is one YAML file in ``ablate/presets/``; adding
one is adding a file. Unknown keys are refused, never ignored.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .common.checks import is_int, not_allowed, refuse_unknown
from .common.markdown import table
from .common.registry import Registry
from .training.inits import INITS
from .training.losses import LOSSES
from .training.optim import OPTIMIZERS, SCHEDULERS

PRESETS: Registry = Registry("preset")
_PRESET_DIR = Path(__file__).with_name("presets")
DEVICES = ("auto", "cpu", "cuda", "mps")
BUDGET_KEYS = ("epochs", "steps", "images")
DEFAULT_EPOCHS = 15


@dataclass(frozen=True)
class TrainConfig:
    """How one variant is trained and evaluated (units in comments)."""

    # budget: give one of epochs, steps (optimizer steps) or images (training images seen);
    # none given: DEFAULT_EPOCHS. The same for every variant of a study (see ``budget``).
    epochs: int | None = None
    steps: int | None = None
    images: int | None = None
    # optimisation (ablate.training.optim): seed 002's AdamW + cosine unless named otherwise; the
    # schedule steps once per epoch and spans the budget
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    eta_min: float = 1e-6
    optimizer: str = "adamw"     # ablate.training.optim.OPTIMIZERS: adamw, adam, sgd (momentum 0.9)
    scheduler: str = "cosine"    # ablate.training.optim.SCHEDULERS: cosine (to eta_min), step, none
    step_epochs: int = 1         # scheduler step: epochs between lr drops
    step_gamma: float = 0.1      # scheduler step: lr factor at each drop
    loss: str = "dice"
    # data
    image_size: int = 224        # pixels, square
    augment: bool = True         # flip, scale-crop, rotation (see ablate.data.Augment)
    # initialisation
    encoder_init: str | None = None  # an ablate.training.inits.INITS name, or None: random weights
    # hardware
    device: str = "auto"         # auto: cuda, then mps, then cpu; or cuda:N
    amp: bool = True             # bf16 autocast where the device has it (CUDA: fp16 + GradScaler
                                 # without bf16; CPU: avx512_bf16 or AMX; see step.amp_dtype)
    channels_last: bool = True   # channels_last weights and inputs (CUDA and CPU)
    compile: bool = False        # torch.compile the model
    threads: int = 0             # CPU intra-op threads; 0 keeps torch's default
    # output
    samples: int = 4             # validation images drawn in samples.png

    def __post_init__(self) -> None:
        given = [name for name in BUDGET_KEYS if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"the budget is given {len(given)} times ("
                             + ", ".join(f"{k}={getattr(self, k)!r}" for k in given)
                             + "); allowed: one of epochs, steps or images")
        if not given:
            object.__setattr__(self, "epochs", DEFAULT_EPOCHS)
        for name in BUDGET_KEYS:
            _check(name, getattr(self, name), lambda v: v is None or (is_int(v) and v >= 1),
                   "a positive integer")
        for name in ("batch_size", "image_size", "step_epochs"):
            _check(name, getattr(self, name), lambda v: is_int(v) and v >= 1, "a positive integer")
        _check("threads", self.threads, lambda v: is_int(v) and v >= 0, "an integer >= 0")
        _check("samples", self.samples, lambda v: is_int(v) and v >= 0, "an integer >= 0")
        for name in ("lr", "weight_decay", "eta_min", "step_gamma"):
            value = getattr(self, name)
            _check(name, value, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                   and v >= 0, "a non-negative number")
            object.__setattr__(self, name, float(value))
        for name in ("augment", "amp", "channels_last", "compile"):
            _check(name, getattr(self, name), lambda v: isinstance(v, bool), "true or false")
        base = self.device.split(":")[0] if isinstance(self.device, str) else None
        _check("device", self.device, lambda v: base in DEVICES, f"{', '.join(DEVICES)} or cuda:N")
        _check("optimizer", self.optimizer, lambda v: v in OPTIMIZERS, ", ".join(OPTIMIZERS))
        _check("scheduler", self.scheduler, lambda v: v in SCHEDULERS, ", ".join(SCHEDULERS))

        _check("loss", self.loss, lambda v: v in LOSSES, ", ".join(LOSSES.names()))
        _check("encoder_init", self.encoder_init, lambda v: v is None or v in INITS,
               "none or " + ", ".join(INITS.names()))

    @property
    def budget_label(self) -> str:
        """The budget as it was given, e.g. ``"16 epochs"`` or ``"2000 steps"``."""
        key = next(k for k in BUDGET_KEYS if getattr(self, k) is not None)
        return f"{getattr(self, key)} {key}"

    def budget(self, steps_per_epoch: int) -> Budget:
        """The budget over an epoch of ``steps_per_epoch`` optimizer steps (full batches).

        Images count whole batches (``ceil(images / batch_size)`` steps); the last epoch of a
        steps or images budget may be partial. The same study trains every variant on the same
        split with the same batch, so every variant gets the same steps and schedule.
        """
        if not is_int(steps_per_epoch) or steps_per_epoch < 1:
            raise ValueError(f"an epoch of {steps_per_epoch!r} steps is not allowed; allowed: at "
                             f"least one full batch of {self.batch_size} training images")
        if self.epochs is not None:
            steps = self.epochs * steps_per_epoch
        elif self.steps is not None:
            steps = self.steps
        else:
            steps = math.ceil(self.images / self.batch_size)
        return Budget(steps, steps_per_epoch, math.ceil(steps / steps_per_epoch))

    def replace(self, **overrides: Any) -> TrainConfig:
        _check_keys(overrides, "training")
        if any(k in overrides for k in BUDGET_KEYS):
            overrides = {**{k: None for k in BUDGET_KEYS}, **overrides}
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> TrainConfig:
        _check_keys(mapping, "training")
        return cls(**mapping)


@dataclass(frozen=True)
class Budget:
    """A training budget resolved against the data: optimizer steps in all and per epoch."""

    steps: int                # optimizer steps in the run
    steps_per_epoch: int      # full batches in one pass over the training split
    epochs: int               # evaluations: one per epoch, the last epoch possibly partial

    def steps_in(self, epoch: int) -> int:
        """Optimizer steps of epoch ``epoch`` (0-based)."""
        return max(0, min(self.steps_per_epoch, self.steps - epoch * self.steps_per_epoch))


def _check(name: str, value: Any, ok, allowed: str) -> None:
    if not ok(value):
        raise not_allowed(name, value, allowed)


def _check_keys(mapping: Mapping[str, Any], what: str) -> None:
    refuse_unknown(mapping, [f.name for f in fields(TrainConfig)], f"{what} key")


def _register_preset_file(path: Path) -> None:
    def load() -> dict[str, Any]:
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"preset file {path} must hold a mapping of training keys")
        return data

    first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                  if line.startswith("#")), "")
    PRESETS.register(path.stem, help=first)(load)


for _path in sorted(_PRESET_DIR.glob("*.yaml")):
    _register_preset_file(_path)


def load_config(preset: str = "quick", **overrides: Any) -> TrainConfig:
    """The named preset with ``overrides`` applied (both validated). A budget key among the
    overrides (epochs, steps or images) replaces the preset's budget."""
    values = dict(PRESETS.get(preset)())
    if any(k in overrides for k in BUDGET_KEYS):
        values = {k: v for k, v in values.items() if k not in BUDGET_KEYS}
    values.update(overrides)
    return TrainConfig.from_dict(values)


#: What each ``TrainConfig`` key allows and means, for the generated key table of
#: docs/experiments.md (``{name}`` fields are filled from the registries the key is checked
#: against). A key missing here fails ``ablate docs``.
KEY_DOCS: dict[str, tuple[str, str]] = {
    "epochs": ("an integer >= 1",
               "budget in epochs ({default_epochs} when no budget key is given)"),
    "steps": ("an integer >= 1", "budget in optimizer steps"),
    "images": ("an integer >= 1", "budget in training images seen, in whole batches"),
    "batch_size": ("an integer >= 1", "training batch, images"),
    "lr": ("a number >= 0", "learning rate"),
    "weight_decay": ("a number >= 0", "weight decay"),
    "eta_min": ("a number >= 0", "cosine schedule's final learning rate"),
    "optimizer": ("{optimizers}", "optimizer (`OPTIMIZERS`)"),
    "scheduler": ("{schedulers}", "learning-rate schedule, stepped once per epoch (`SCHEDULERS`)"),
    "step_epochs": ("an integer >= 1", "scheduler `step`: epochs between lr drops"),
    "step_gamma": ("a number >= 0", "scheduler `step`: lr factor at each drop"),
    "loss": ("{losses}", "training loss (`LOSSES`)"),
    "image_size": ("an integer >= 1", "square image side, pixels"),
    "augment": ("true, false", "flip, scale-crop, small rotation"),
    "encoder_init": ("null, {inits}", "encoder initial weights (`INITS`); null: random"),
    "device": ("{devices}, cuda:N", "auto: cuda, then mps, then cpu"),
    "amp": ("true, false", "bf16 autocast where the device has it (CUDA without bf16: fp16 + "
                           "GradScaler)"),
    "channels_last": ("true, false", "channels_last weights and inputs (CUDA and CPU)"),
    "compile": ("true, false", "`torch.compile` the model (inductor)"),
    "threads": ("an integer >= 0", "CPU intra-op threads; 0 keeps torch's default (every core)"),
    "samples": ("an integer >= 0", "validation images drawn in `samples.png`"),
}


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def train_keys_markdown() -> str:
    """The ``train:`` keys (``TrainConfig`` fields) with default, allowed values and meaning,
    generated into docs/experiments.md by ``ablate docs``."""
    names = [f.name for f in fields(TrainConfig)]
    if set(names) != set(KEY_DOCS):
        raise ValueError("KEY_DOCS and TrainConfig differ: "
                         + ", ".join(sorted(set(names) ^ set(KEY_DOCS))))
    registries = {"optimizers": OPTIMIZERS, "schedulers": SCHEDULERS, "losses": LOSSES,
                  "inits": INITS}
    lists = {k: ", ".join(r.names()) for k, r in registries.items()}
    lists["losses"] = "; ".join(f"{n} ({LOSSES.meta(n)['tasks']})" for n in LOSSES.names())
    lists["devices"] = ", ".join(DEVICES)
    lists["default_epochs"] = str(DEFAULT_EPOCHS)
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    rows = [(f"`{n}`", f"`{_shown(defaults[n])}`", KEY_DOCS[n][0].format(**lists), KEY_DOCS[n][1])
            for n in names]
    return table(("key", "default", "allowed", "meaning"), rows)


def presets_markdown() -> str:
    """Every preset's resolved settings side by side (one column per ``PRESETS`` entry),
    generated into docs/training.md by ``ablate docs``."""
    configs = {p: load_config(p).to_dict() for p in PRESETS.names()}
    rows = [(f"`{f.name}`", *(f"`{_shown(c[f.name])}`" for c in configs.values()))
            for f in fields(TrainConfig)]
    notes = "".join(f"- `{p}`: {PRESETS.help(p)}\n" for p in PRESETS.names())
    return table(("key", *configs), rows) + "\n" + notes
