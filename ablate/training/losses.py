"""Training losses by name: the ``LOSSES`` registry and ``build_loss(name, num_classes, ignore)``.

Every entry is a builder ``fn(num_classes, ignore_index) -> loss`` and every loss is
``loss(logits, target) -> scalar tensor``. ``num_classes`` is the metric class count:

- binary (``num_classes == 2``): logits ``(N, 1, H, W)``, one sigmoid channel, foreground = class 1;
- multi-class (``num_classes = C > 2``): logits ``(N, C, H, W)``, softmax over channels.

Losses take raw logits and apply the activation themselves (never feed them probabilities).
Targets are int64 class maps ``(N, H, W)``. Pixels whose target is ``ignore_index`` contribute
nothing to any term and receive zero gradient; they are replaced by class 0 before any indexing
and then masked out, so ``255`` never indexes out of range.

Terms:

- ``ce``: mean cross-entropy over the non-ignored pixels. For a binary task it is binary
  cross-entropy with logits on the single channel (target 1 = foreground).
- soft Dice: ``1 - mean_k (2 * sum(p_k * g_k) + 1) / (sum(p_k) + sum(g_k) + 1)``, sums over the
  whole batch (not per image), smoothing 1 (pixels). Binary: the foreground channel only, so an
  image with no foreground still penalises predicted foreground through ``sum(p)``. Multi-class:
  every class present in the batch's ground truth, background included. Skipping absent classes
  avoids terms that sit near 1 with almost no gradient and only add noise; keeping background
  means an all-background batch still has a Dice term, which punishes false positives of any
  class through the softmax.
- ``x+y`` is the unweighted sum of the two terms.

Deep supervision (the ``deep_supervision`` knob): a model in training mode returns a tuple of
logits, the final head's first, then each coarser decoder stage's; :func:`supervised_loss` sums
the loss of each with :func:`deep_supervision_weights`, halving per stage as nnU-Net does
(normalised to sum 1; nnU-Net also zeroes its lowest-resolution output, we keep it).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from ..common.checks import is_int, not_allowed
from ..common.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOSSES: Registry = Registry("loss")
SMOOTH = 1.0


def key_name(name: str) -> str:
    """The loss name a run key hashes: ``ce+dice`` as ``bce+dice``, the quick preset's loss until
    it took ``ce+dice`` (issue 18), so its stored runs stay current. On a binary task the two are
    the same terms; on a multi-class one ``bce+dice`` refuses to build, so no two different runs
    share a key."""
    return "bce+dice" if name == "ce+dice" else name


def deep_supervision_weights(n: int) -> tuple[float, ...]:
    """Weights of ``n`` deeply supervised outputs, final head first: ``2**-i`` normalised to sum
    1 (4 outputs: 8/15, 4/15, 2/15, 1/15)."""
    raw = [2.0 ** -i for i in range(n)]
    return tuple(w / sum(raw) for w in raw)


def supervised_loss(loss_fn: LossFn, logits: torch.Tensor | tuple[torch.Tensor, ...],
                    masks: torch.Tensor) -> torch.Tensor:
    """``loss_fn`` of a model's training output (in float32): of its logits, or of a deeply
    supervised tuple, the weighted sum over its outputs (:func:`deep_supervision_weights`)."""
    if isinstance(logits, torch.Tensor):
        return loss_fn(logits.float(), masks)
    weights = deep_supervision_weights(len(logits))
    return sum(w * loss_fn(out.float(), masks) for w, out in zip(weights, logits))


def build_loss(name: str, num_classes: int, ignore_index: int | None = None) -> LossFn:
    """The loss registered as ``name`` for a task with ``num_classes`` metric classes."""
    builder = LOSSES.get(name)
    if not is_int(num_classes) or num_classes < 2:
        raise not_allowed("num_classes", num_classes,
                          "an integer >= 2 (2 for a binary task with one logit channel)")
    if ignore_index is not None and (not is_int(ignore_index) or 0 <= ignore_index < num_classes):
        raise not_allowed("ignore_index", ignore_index,
                          f"None or an integer outside 0..{num_classes - 1} (e.g. 255)")
    return builder(num_classes, ignore_index)


@LOSSES.register("dice", tasks="binary, multi-class")
def dice(num_classes: int, ignore_index: int | None) -> LossFn:
    """soft Dice over the batch (binary: foreground; multi-class: classes present in the target)."""
    return partial(_total, terms=(_dice,), num_classes=num_classes, ignore_index=ignore_index)


@LOSSES.register("bce+dice", tasks="binary")
def bce_dice(num_classes: int, ignore_index: int | None) -> LossFn:
    """binary cross-entropy with logits plus soft Dice; binary tasks only."""
    if num_classes != 2:
        raise ValueError(f"loss 'bce+dice' is for binary tasks (num_classes=2), got "
                         f"num_classes={num_classes}; use 'ce+dice' for multi-class")
    return partial(_total, terms=(_ce, _dice), num_classes=num_classes, ignore_index=ignore_index)


@LOSSES.register("ce", tasks="binary, multi-class")
def ce(num_classes: int, ignore_index: int | None) -> LossFn:
    """cross-entropy (binary: BCE with logits on the one channel)."""
    return partial(_total, terms=(_ce,), num_classes=num_classes, ignore_index=ignore_index)


@LOSSES.register("ce+dice", tasks="binary, multi-class")
def ce_dice(num_classes: int, ignore_index: int | None) -> LossFn:
    """cross-entropy plus soft Dice (binary: the same as bce+dice)."""
    return partial(_total, terms=(_ce, _dice), num_classes=num_classes, ignore_index=ignore_index)


def _total(logits: torch.Tensor, target: torch.Tensor, *, terms: tuple, num_classes: int,
           ignore_index: int | None) -> torch.Tensor:
    _check_shapes(logits, target, num_classes)
    if ignore_index is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    else:
        valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    return sum(term(logits, safe, valid) for term in terms)


def _ce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over valid pixels (0 with a gradient path when none is valid)."""
    if logits.shape[1] == 1:
        per_pixel = F.binary_cross_entropy_with_logits(
            logits[:, 0], (target == 1).to(logits.dtype), reduction="none")
    else:
        per_pixel = F.cross_entropy(logits, target, reduction="none")
    per_pixel = torch.where(valid, per_pixel, torch.zeros_like(per_pixel))
    return per_pixel.sum() / valid.sum().clamp(min=1)


def _dice(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss over the batch, see the module docstring for which classes count."""
    if logits.shape[1] == 1:
        prob = torch.sigmoid(logits)
        truth = (target == 1).unsqueeze(1)
    else:
        prob = logits.softmax(1)
        classes = torch.arange(logits.shape[1], device=target.device).view(1, -1, 1, 1)
        truth = target.unsqueeze(1) == classes
    valid = valid.unsqueeze(1)
    prob = torch.where(valid, prob, torch.zeros_like(prob))
    truth = (truth & valid).to(prob.dtype)
    dims = (0, 2, 3)
    inter, p_sum, g_sum = (prob * truth).sum(dims), prob.sum(dims), truth.sum(dims)
    per_class = (2 * inter + SMOOTH) / (p_sum + g_sum + SMOOTH)
    if logits.shape[1] == 1:
        return 1 - per_class.mean()
    present = (g_sum > 0).to(prob.dtype)
    return ((1 - per_class) * present).sum() / present.sum().clamp(min=1)


def _check_shapes(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> None:
    channels = 1 if num_classes == 2 else num_classes
    task = "binary (num_classes=2, one sigmoid logit)" if num_classes == 2 else \
        f"{num_classes}-class (softmax)"
    if not logits.is_floating_point() or logits.dim() != 4 or logits.shape[1] != channels:
        raise ValueError(f"a {task} loss expects float logits of shape (N, {channels}, H, W); got "
                         f"{tuple(logits.shape)} {logits.dtype}")
    if target.is_floating_point() or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"target must be integer class maps of shape (N, H, W) = "
                         f"{tuple(logits.shape[:1] + logits.shape[2:])} to match logits "
                         f"{tuple(logits.shape)}; got {tuple(target.shape)} {target.dtype}")
