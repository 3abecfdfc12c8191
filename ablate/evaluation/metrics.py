"""Segmentation metrics: counting is separate from reducing.

Inputs are integer class maps (``pred`` and ``target``, ``(N, H, W)`` or one ``(H, W)`` image) with
``num_classes`` classes, class 0 being background. A binary task has ``num_classes == 2``.
Counting (:func:`confusion_matrix`, :meth:`MetricAccumulator.update`) adds integers; reducing
(:func:`dice_per_class`, :func:`iou_per_class`, :func:`pixel_accuracy`,
:meth:`MetricAccumulator.compute`) turns the counts seen so far into scores. A score over a data
set is always computed from the counts accumulated over all of it, never as a mean of per-batch
scores (``dice_per_image`` is the one per-image mean, and says so).

Definitions (each registered in :data:`METRICS` and stored with every result):

- ``dice``: per class ``2TP / (2TP + FP + FN)``, from counts summed over the whole set scored.
  Averaged over the foreground classes 1..C-1 that are present in the ground truth or in the
  prediction of that set; classes absent from both are skipped. For ``num_classes == 2`` this is
  the Dice of class 1 (the foreground).
- ``iou``: per class ``TP / (TP + FP + FN)``, averaged like ``dice``.
- ``pixel_acc``: correctly labelled pixels / all pixels scored (background included).
- ``boundary_iou``: Boundary IoU (Cheng et al., CVPR 2021). The boundary region of a mask is the
  mask minus its erosion by ``d`` pixels, i.e. the mask pixels within distance ``d`` of its
  contour, with a square (2d+1) x (2d+1) structuring element (chessboard distance). Pixels
  outside the image count as background, so a mask touching the image border has a boundary
  along it (as in the authors' reference code). ``d = max(1, round(0.02 * sqrt(H**2 + W**2)))``
  unless ``boundary_dilation`` fixes it. Per class ``|Bg & Bp| / |Bg | Bp|`` with
  intersections and unions summed over all images, averaged over classes like ``dice``.
- ``dice_per_image``: the mean over images of each image's own ``dice`` (same class rule, same
  empty convention, applied per image).
- Ignore: pixels whose target equals ``ignore_index`` are excluded from every count, including
  the boundary regions (which are computed from the masks first, then the ignore pixels are
  removed). ``ignore_index`` must lie outside 0..C-1; ``None`` means no ignore label.
- Empty convention: a class absent from both ground truth and prediction is perfect agreement,
  so when no foreground class is present in either, ``dice``, ``iou`` and ``boundary_iou`` are
  1.0 (and a prediction of foreground where the ground truth has none scores 0.0). A set with no
  scored pixels at all has ``pixel_acc`` 1.0 for the same reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..common.checks import check_better
from ..common.markdown import table
from ..common.registry import Registry

BOUNDARY_RATIO = 0.02



@dataclass(frozen=True)
class Metric:
    """One score: how it is reduced from a :class:`MetricAccumulator`'s counts, which way is
    better (``"max"`` or ``"min"``), its label in tables and plots, and its definition text."""

    name: str
    reduce: Callable[[MetricAccumulator], float]
    better: str
    label: str
    definition: str


#: Every score a run reports, in column order. Each entry is one function registered with
#: :func:`register_metric`; history fields, row columns, summaries, plots, the experiment's
#: ``metric`` key and the search objectives all read their names from here.
METRICS: Registry = Registry("metric", ordered=True)

#: The metric an experiment, a summary or a run is compared on when none is named.
DEFAULT_METRIC = "dice"

#: Conventions shared by every metric, stored with each result next to the definitions.
CONVENTIONS: dict[str, str] = {
    "ignore": "pixels whose target equals ignore_index are excluded from every count, boundary "
              "regions included",
    "empty": "a class absent from both ground truth and prediction is skipped; with no foreground "
             "in either, dice/iou/boundary_iou are 1.0 (perfect agreement)",
}


def register_metric(name: str, *, better: str, label: str, definition: str
                    ) -> Callable[[Callable], Callable]:
    """Decorator: ``@register_metric("dice", better="max", label=..., definition=...)`` on a
    function ``reduce(acc) -> float`` adds the metric to :data:`METRICS`."""
    check_better(better)

    def deco(reduce: Callable[[MetricAccumulator], float]) -> Callable:
        METRICS.register(name, help=label)(Metric(name, reduce, better, label, definition))
        return reduce

    return deco


def definitions() -> dict[str, str]:
    """Each metric's definition, then the shared conventions (stored with every result)."""
    return {**{m: METRICS.get(m).definition for m in METRICS.names()}, **CONVENTIONS}


def metrics_markdown() -> str:
    """The metrics page's table (docs/metrics.md), generated from :data:`METRICS` by
    ``ablate docs``: name, which way is better, label, definition; then the conventions."""
    rows = [(f"`{m}`", METRICS.get(m).better, METRICS.get(m).label,
             METRICS.get(m).definition) for m in METRICS.names()]
    notes = "".join(f"- {name}: {text}\n" for name, text in CONVENTIONS.items())
    return table(("metric", "better", "label", "definition"), rows) + "\n" + notes


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Counts of (target, predicted) class pairs: int64 ``(C, C)``, rows = target, cols = pred.

    Pixels whose target is ``ignore_index`` are not counted. Works on any device (bincount).
    """
    pred, target = _check_maps(pred, target, num_classes, ignore_index)
    return _confusion(pred, target, num_classes, ignore_index)


def dice_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Per-class Dice ``2TP / (2TP + FP + FN)`` from ``(..., C, C)`` counts; 1.0 where the class
    is absent from both target and prediction."""
    tp, gt, pr = _class_counts(cm)
    return _ratio(2 * tp, gt + pr)


def iou_per_class(cm: torch.Tensor) -> torch.Tensor:
    """Per-class IoU ``TP / (TP + FP + FN)`` from ``(..., C, C)`` counts; 1.0 where the class is
    absent from both target and prediction."""
    tp, gt, pr = _class_counts(cm)
    return _ratio(tp, gt + pr - tp)


def pixel_accuracy(cm: torch.Tensor) -> torch.Tensor:
    """Correct pixels / counted pixels, from ``(..., C, C)`` counts; 1.0 when nothing is counted."""
    cm = cm.double()
    return _ratio(cm.diagonal(dim1=-2, dim2=-1).sum(-1), cm.sum((-2, -1)))


def foreground_mean(per_class: torch.Tensor, cm: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_class[..., 1:]`` over the foreground classes present in target or prediction
    of ``cm``; 1.0 where none is present (the empty convention)."""
    _, gt, pr = _class_counts(cm)
    present = ((gt + pr) > 0)[..., 1:].double()
    return _ratio((per_class[..., 1:] * present).sum(-1), present.sum(-1))


def scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
           ignore_index: int | None = None, boundary_dilation: int | None = None) -> dict:
    """All metrics of one set of class maps (see the module docstring for the definitions).

    Identical to a fresh :class:`MetricAccumulator` updated once with the same maps.
    """
    acc = MetricAccumulator(num_classes, ignore_index, boundary_dilation)
    acc.update(pred, target)
    return acc.compute()


class MetricAccumulator:
    """Accumulates counts over batches of class maps; :meth:`compute` reduces everything seen.

    ``boundary_dilation`` is the boundary width ``d`` in pixels; ``None`` means
    ``max(1, round(0.02 * image diagonal))`` for each batch's image size.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None,
                 boundary_dilation: int | None = None) -> None:
        _check_setup(num_classes, ignore_index)
        if boundary_dilation is not None and (
                isinstance(boundary_dilation, bool) or not isinstance(boundary_dilation, int)
                or boundary_dilation < 1):
            raise ValueError(f"boundary_dilation={boundary_dilation!r} is not allowed; allowed: "
                             "None (2% of the image diagonal) or a positive integer (pixels)")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.boundary_dilation = boundary_dilation
        self.reset()

    def reset(self) -> None:
        """Forget everything seen."""
        c = self.num_classes
        self.confusion = torch.zeros(c, c, dtype=torch.int64)
        self.boundary_inter = torch.zeros(c, dtype=torch.int64)
        self.boundary_union = torch.zeros(c, dtype=torch.int64)
        self.dice_image_sum = 0.0
        self.loss_sum = 0.0
        self.loss_pixels = 0
        self.n_images = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of class maps (``(N, H, W)`` or one ``(H, W)``) on any device.

        Counting runs on the maps' device; the small count tensors are kept on the CPU.
        """
        pred, target = _check_maps(pred, target, self.num_classes, self.ignore_index)
        per_image = _confusion(pred, target, self.num_classes, self.ignore_index,
                               per_image=True).cpu()
        cm = per_image.sum(0)
        inter, union = self._boundary_counts(pred, target, cm)
        self.confusion += cm
        self.boundary_inter += inter
        self.boundary_union += union
        self.dice_image_sum += foreground_mean(dice_per_class(per_image), per_image).sum().item()
        self.n_images += pred.shape[0]

    def add_loss(self, value: float, pixels: int) -> None:
        """Add a batch's mean loss over its ``pixels`` scored pixels (for ``val_loss``)."""
        self.loss_sum += float(value) * int(pixels)
        self.loss_pixels += int(pixels)

    def compute(self) -> dict:
        """Every metric of :data:`METRICS` (floats) and ``n_images`` over everything seen since
        the last reset."""
        if self.n_images == 0:
            raise ValueError("MetricAccumulator.compute() before any update(): nothing to score")
        return {**{m: METRICS.get(m).reduce(self) for m in METRICS.names()},
                "n_images": self.n_images}

    def _boundary_counts(self, pred: torch.Tensor, target: torch.Tensor,
                         cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class boundary intersections and unions of one batch (int64 ``(C,)``, CPU).

        Only the foreground classes present in the batch are eroded; the others count zero.
        """
        inter = torch.zeros(self.num_classes, dtype=torch.int64)
        union = torch.zeros(self.num_classes, dtype=torch.int64)
        _, gt, pr = _class_counts(cm)
        classes = torch.nonzero((gt + pr)[1:] > 0).flatten() + 1
        if classes.numel() == 0:
            return inter, union
        h, w = pred.shape[-2:]
        d = self.boundary_dilation or max(1, round(BOUNDARY_RATIO * math.hypot(h, w)))
        levels = classes.to(pred.device).view(1, -1, 1, 1)
        bg = _boundary(target.unsqueeze(1) == levels, d)
        bp = _boundary(pred.unsqueeze(1) == levels, d)
        if self.ignore_index is not None:
            valid = (target != self.ignore_index).unsqueeze(1)
            bg, bp = bg & valid, bp & valid
        inter[classes] = (bg & bp).sum((0, 2, 3)).cpu()
        union[classes] = (bg | bp).sum((0, 2, 3)).cpu()
        return inter, union


def _boundary(masks: torch.Tensor, d: int) -> torch.Tensor:
    """Boundary regions of boolean masks ``(N, K, H, W)``: mask minus its erosion by ``d`` pixels.

    The erosion is a max-pool of the inverted mask with a (2d+1)-square window, done as two
    separable 1-D pools; the padding value 1 makes pixels outside the image background.
    """
    k = 2 * d + 1
    outside = F.pad((~masks).float(), (d, d, d, d), value=1.0)
    outside = F.max_pool2d(F.max_pool2d(outside, (1, k), stride=1), (k, 1), stride=1)
    return masks & (outside > 0)


def _confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
               ignore_index: int | None, per_image: bool = False) -> torch.Tensor:
    c = num_classes
    index = target * c + pred
    if per_image:
        index = index + torch.arange(pred.shape[0], device=pred.device).view(-1, 1, 1) * (c * c)
    bins = pred.shape[0] * c * c if per_image else c * c
    if ignore_index is not None:
        index = index[target != ignore_index]
    counts = torch.bincount(index.flatten(), minlength=bins)
    return counts.view(-1, c, c) if per_image else counts.view(c, c)


def _class_counts(cm: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """TP, ground-truth total and prediction total per class, as float64."""
    cm = cm.double()
    return cm.diagonal(dim1=-2, dim2=-1), cm.sum(-1), cm.sum(-2)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, 1.0 where ``den == 0`` (nothing to disagree about)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.ones_like(num))


def _check_setup(num_classes: int, ignore_index: int | None) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} is not allowed; allowed: an integer >= 2 "
                         "(2 for a binary task)")
    if ignore_index is not None and (isinstance(ignore_index, bool)
                                     or not isinstance(ignore_index, int)
                                     or 0 <= ignore_index < num_classes):
        raise ValueError(f"ignore_index={ignore_index!r} is not allowed; allowed: None or an "
                         f"integer outside 0..{num_classes - 1} (e.g. 255)")


def _check_maps(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                ignore_index: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate class maps and return them as int64 ``(N, H, W)`` on ``pred``'s device."""
    _check_setup(num_classes, ignore_index)
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.is_complex():
            what = f"dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be an integer tensor of class indices, got {what} "
                             "(turn logits into classes with ablate.evaluation.evaluate.predict)")
    if pred.shape != target.shape or pred.dim() not in (2, 3):
        raise ValueError(f"pred and target must be class maps of one shape, (N, H, W) or (H, W); "
                         f"got pred {tuple(pred.shape)} and target {tuple(target.shape)}")
    if pred.dim() == 2:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    pred, target = pred.long(), target.to(pred.device).long()
    bad_pred = (pred < 0) | (pred >= num_classes)
    bad_target = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        bad_target &= target != ignore_index
    for name, t, bad in (("pred", pred, bad_pred), ("target", target, bad_target)):
        if bad.any():
            found = torch.unique(t[bad])[:5].tolist()
            allowed = f"0..{num_classes - 1}"
            if name == "target" and ignore_index is not None:
                allowed += f" or ignore_index={ignore_index}"
            raise ValueError(f"{name} has values {found} outside {allowed}")
    return pred, target


# ---------------------------------------------------------------------------------------------
# The metrics: one reducer each, from the accumulated counts.


@register_metric("dice", better="max", label="Dice", definition=(
    "per class 2TP/(2TP+FP+FN) from counts summed over all images; mean over foreground classes "
    "1..C-1 present in ground truth or prediction (binary: class 1)"))
def _dice(acc: MetricAccumulator) -> float:
    return foreground_mean(dice_per_class(acc.confusion), acc.confusion).item()


@register_metric("iou", better="max", label="IoU", definition=(
    "per class TP/(TP+FP+FN) from counts summed over all images; averaged like dice"))
def _iou(acc: MetricAccumulator) -> float:
    return foreground_mean(iou_per_class(acc.confusion), acc.confusion).item()


@register_metric("pixel_acc", better="max", label="Pixel acc.",
                 definition="correct pixels / scored pixels, background included")
def _pixel_acc(acc: MetricAccumulator) -> float:
    return pixel_accuracy(acc.confusion).item()


@register_metric("boundary_iou", better="max", label="Boundary IoU", definition=(
    "Boundary IoU (Cheng et al. 2021): boundary = mask minus its erosion by d px (square "
    "element, outside the image = background), d = max(1, round(0.02 * image diagonal)) unless "
    "set; |Bg&Bp|/|Bg|Bp| summed over images, averaged like dice"))
def _boundary_iou(acc: MetricAccumulator) -> float:
    return foreground_mean(_ratio(acc.boundary_inter, acc.boundary_union), acc.confusion).item()


@register_metric("dice_per_image", better="max", label="Dice (per image)", definition=(
    "mean over images of each image's own dice (same class rule and empty convention)"))
def _dice_per_image(acc: MetricAccumulator) -> float:
    return acc.dice_image_sum / acc.n_images


@register_metric("val_loss", better="min", label="Val loss", definition=(
    "the training loss on the evaluated images, batch means weighted by their non-ignored "
    "pixels; NaN when evaluated without a loss"))
def _val_loss(acc: MetricAccumulator) -> float:
    return acc.loss_sum / acc.loss_pixels if acc.loss_pixels else math.nan
