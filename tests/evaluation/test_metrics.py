"""Metrics checked against hand counts and against independent numpy / scipy computations."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import ndimage

from ablate.evaluation.metrics import MetricAccumulator, confusion_matrix, definitions, scores


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.int64)


def square(h, w, top, left, size, value=1) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.int64)
    m[top:top + size, left:left + size] = value
    return m


# ---- independent reference implementations (numpy / loops / scipy) ----

def boundary_loops(mask: np.ndarray, d: int) -> np.ndarray:
    """Mask pixels with a non-mask pixel (outside the image counts) within chessboard distance d."""
    h, w = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    for i in range(h):
        for j in range(w):
            if not mask[i, j]:
                continue
            for di in range(-d, d + 1):
                for dj in range(-d, d + 1):
                    y, x = i + di, j + dj
                    if not (0 <= y < h and 0 <= x < w) or not mask[y, x]:
                        out[i, j] = True
    return out


def boundary_scipy(mask: np.ndarray, d: int) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, structure=np.ones((2 * d + 1, 2 * d + 1)), border_value=0)
    return mask & ~eroded


def reference(pred, target, c, ignore=None, d=None, boundary=boundary_scipy) -> dict:
    """The metrics of docs/metrics.md, written with numpy over a stack of images."""
    pred, target = np.asarray(pred), np.asarray(target)
    valid = np.ones(target.shape, bool) if ignore is None else target != ignore
    if d is None:
        d = max(1, round(0.02 * np.hypot(*target.shape[-2:])))
    dice, iou, biou = [], [], []
    for k in range(1, c):
        g, p = (target == k) & valid, (pred == k) & valid
        if not g.any() and not p.any():
            continue
        tp, fp, fn = (g & p).sum(), (~g & p).sum(), (g & ~p).sum()
        dice.append(2 * tp / (2 * tp + fp + fn))
        iou.append(tp / (tp + fp + fn))
        bg = np.stack([boundary(m, d) for m in (target == k)]) & valid
        bp = np.stack([boundary(m, d) for m in (pred == k)]) & valid
        union = (bg | bp).sum()
        biou.append((bg & bp).sum() / union if union else 1.0)
    mean = lambda v: float(np.mean(v)) if v else 1.0  # noqa: E731
    return {"dice": mean(dice), "iou": mean(iou), "boundary_iou": mean(biou),
            "pixel_acc": float(((pred == target) & valid).sum() / valid.sum())}


def assert_matches(result: dict, expected: dict) -> None:
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


# ---- hand-counted cases ----

def test_binary_4x4_hand_counted():
    target = t([[0, 1, 1, 0],
                [0, 1, 1, 0],
                [0, 0, 1, 0],
                [0, 0, 0, 0]])
    pred = t([[0, 1, 1, 1],
              [0, 0, 1, 0],
              [0, 0, 1, 0],
              [1, 0, 0, 0]])
    # TP: (0,1) (0,2) (1,2) (2,2) = 4; FP: (0,3) (3,0) = 2; FN: (1,1) = 1; 13 of 16 correct.
    r = scores(pred, target, num_classes=2)
    assert r["dice"] == pytest.approx(float(Fraction(2 * 4, 2 * 4 + 2 + 1)))
    assert r["iou"] == pytest.approx(float(Fraction(4, 4 + 2 + 1)))
    assert r["pixel_acc"] == pytest.approx(13 / 16)
    assert r["n_images"] == 1


def test_confusion_matrix_rows_are_target_and_ignore_is_dropped():
    target = t([[0, 1, 2, 255],
                [2, 2, 1, 0]])
    pred = t([[0, 2, 2, 1],
              [1, 2, 1, 0]])
    expected = t([[2, 0, 0],   # target 0: predicted 0 twice
                  [0, 1, 1],   # target 1: once 1, once 2
                  [0, 1, 2]])  # target 2: once 1, twice 2; the 255 pixel is not counted
    assert torch.equal(confusion_matrix(pred, target, 3, ignore_index=255), expected)


def test_empty_conventions():
    empty = torch.zeros(1, 5, 5, dtype=torch.int64)
    both_empty = scores(empty, empty, 2)
    assert both_empty["dice"] == both_empty["iou"] == both_empty["boundary_iou"] == 1.0
    assert both_empty["dice_per_image"] == 1.0
    spurious = empty.clone()
    spurious[0, 2, 2] = 1
    gt_empty = scores(spurious, empty, 2)
    assert gt_empty["dice"] == gt_empty["iou"] == gt_empty["boundary_iou"] == 0.0
    assert gt_empty["pixel_acc"] == pytest.approx(24 / 25)
    missed = scores(empty, spurious, 2)
    assert missed["dice"] == missed["iou"] == 0.0


def test_wrong_prediction_on_ignore_pixel_changes_nothing():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 12, 12), generator=gen)
    pred = target.clone()
    pred[torch.rand(pred.shape, generator=gen) < 0.3] = 1
    ignored = torch.rand(target.shape, generator=gen) < 0.2
    target_ig = torch.where(ignored, torch.full_like(target, 255), target)
    pred_wrong = torch.where(ignored, (target + 1) % 3, pred)
    pred_right = torch.where(ignored, target, pred)
    wrong = scores(pred_wrong, target_ig, 3, ignore_index=255)
    right = scores(pred_right, target_ig, 3, ignore_index=255)
    for key in ("dice", "iou", "pixel_acc", "dice_per_image"):
        assert wrong[key] == right[key], key
    assert right["pixel_acc"] < 1.0
    n_valid = int((~ignored).sum())
    correct = int(((pred_right == target) & ~ignored).sum())
    assert right["pixel_acc"] == pytest.approx(correct / n_valid)


def test_ignore_pixels_leave_the_boundary_count():
    target = square(10, 10, 1, 1, 4)
    pred = target.copy()
    pred[8, 8] = 1          # a stray foreground pixel: its own boundary, and a false positive
    target[8, 8] = 255      # ... on an ignore pixel, so it counts nowhere
    r = scores(t(pred), t(target), 2, ignore_index=255, boundary_dilation=1)
    assert r["dice"] == r["iou"] == r["boundary_iou"] == 1.0
    r_no_ignore = scores(t(pred), t(np.where(target == 255, 0, target)), 2, boundary_dilation=1)
    assert r_no_ignore["boundary_iou"] == pytest.approx(12 / 13)


def test_multiclass_absent_class_skipped_and_prediction_only_class_counts_zero():
    target = t([[1, 1, 0, 0],
                [1, 1, 0, 0]])
    pred = t([[1, 1, 3, 0],
              [1, 0, 0, 0]])
    # class 1: TP 3, FP 0, FN 1 -> dice 6/7, iou 3/4; class 2 absent from both: skipped;
    # class 3 only predicted: dice 0, iou 0.
    r = scores(pred, target, num_classes=4)
    assert r["dice"] == pytest.approx((6 / 7 + 0) / 2)
    assert r["iou"] == pytest.approx((3 / 4 + 0) / 2)
    assert r["pixel_acc"] == pytest.approx(6 / 8)


def test_accumulator_reduces_counts_not_batch_means():
    big_t = torch.from_numpy(square(16, 16, 0, 0, 10))[None]
    small_t = torch.from_numpy(square(16, 16, 12, 12, 2))[None]
    small_p = torch.zeros_like(small_t)
    small_p[0, 12, 12] = 1
    acc = MetricAccumulator(2)
    acc.update(big_t, big_t)          # dice 1 (TP 100)
    acc.update(small_p, small_t)      # dice 2*1/(2*1+0+3) = 2/5 (TP 1, FN 3)
    r = acc.compute()
    assert r["dice"] == pytest.approx(2 * 101 / (2 * 101 + 0 + 3))
    assert r["dice"] != pytest.approx((1 + 2 / 5) / 2)
    assert r["dice_per_image"] == pytest.approx((1 + 2 / 5) / 2)
    assert r["n_images"] == 2
    whole = scores(torch.cat([big_t, small_p]), torch.cat([big_t, small_t]), 2)
    for key in ("dice", "iou", "pixel_acc", "boundary_iou", "dice_per_image", "n_images"):
        assert r[key] == pytest.approx(whole[key]), key


def test_accumulator_over_batches_equals_reference_on_concatenation():
    gen = np.random.default_rng(1)
    target, pred = np.zeros((5, 30, 40), np.int64), np.zeros((5, 30, 40), np.int64)
    for maps in (target, pred):
        for img in maps:
            for k in gen.integers(1, 4, size=3):
                y, x, s = gen.integers(0, 25), gen.integers(0, 35), gen.integers(3, 12)
                img[y:y + s, x:x + s] = k
    target[:, :2, :] = 255
    acc = MetricAccumulator(4, ignore_index=255)
    for lo, hi in ((0, 2), (2, 3), (3, 5)):
        acc.update(torch.from_numpy(pred[lo:hi]), torch.from_numpy(target[lo:hi]))
    expected = reference(pred, target, 4, ignore=255)   # d = round(0.02 * 50) = 1
    assert_matches(acc.compute(), expected)
    assert_matches(scores(torch.from_numpy(pred), torch.from_numpy(target), 4, 255), expected)


def test_dice_per_image_by_hand():
    target = np.stack([square(6, 6, 0, 0, 2), square(6, 6, 0, 0, 2), np.zeros((6, 6), np.int64)])
    pred = np.stack([square(6, 6, 0, 0, 2), square(6, 6, 0, 1, 2), np.zeros((6, 6), np.int64)])
    # image 0 perfect: 1; image 1 shifted by one column: TP 2, FP 2, FN 2 -> 4/8;
    # image 2 empty in both: 1 by convention.
    r = scores(torch.from_numpy(pred), torch.from_numpy(target), 2)
    assert r["dice_per_image"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert r["dice"] == pytest.approx(2 * 6 / (2 * 6 + 2 + 2))


def test_boundary_iou_perfect_prediction_is_one():
    target = torch.from_numpy(np.stack([square(20, 20, 3, 4, 9, 1) + square(20, 20, 14, 0, 5, 2)]))
    r = scores(target, target, 3)
    assert r["boundary_iou"] == 1.0 and r["dice"] == 1.0


def test_boundary_iou_shifted_square_hand_checked():
    target = square(8, 8, 2, 2, 4)  # rows/cols 2..5
    pred = square(8, 8, 3, 2, 4)    # rows 3..6, cols 2..5
    # d = max(1, round(0.02 * 11.3)) = 1: each boundary is the 12-pixel ring of its square.
    # Shared ring pixels: row 3 cols {2,5}, row 4 cols {2,5}, row 5 cols {2,5} -> 6.
    r = scores(torch.from_numpy(pred), torch.from_numpy(target), 2)
    assert r["boundary_iou"] == pytest.approx(6 / (12 + 12 - 6))
    assert r["boundary_iou"] == pytest.approx(reference(pred[None], target[None], 2,
                                                        boundary=boundary_loops)["boundary_iou"])


def test_image_border_is_a_contour():
    target = np.ones((6, 6), np.int64)
    pred = np.ones((6, 6), np.int64)
    pred[:, 5] = 0
    # d = 1. GT boundary = outer ring (20 px), pred boundary = ring of the 6x5 block (18 px);
    # shared: column 0 (6) and rows 0, 5 at columns 1..4 (8) = 14; union 20 + 18 - 14 = 24.
    r = scores(torch.from_numpy(pred), torch.from_numpy(target), 2)
    assert r["boundary_iou"] == pytest.approx(14 / 24)


@pytest.mark.parametrize("d", [1, 2, 3])
def test_boundary_matches_loops_and_scipy(d):
    gen = np.random.default_rng(d)
    corners = gen.integers(1, 7, (2, 2))
    target = np.stack([square(14, 12, y, x, 7, k) for (y, x), k in zip(corners, (1, 2))])
    pred = np.stack([square(14, 12, y + 1, x - 1, 6, k) for (y, x), k in zip(corners, (1, 2))])
    expected = reference(pred, target, 3, d=d, boundary=boundary_loops)
    assert expected["boundary_iou"] == reference(pred, target, 3, d=d)["boundary_iou"]
    r = scores(torch.from_numpy(pred), torch.from_numpy(target), 3, boundary_dilation=d)
    assert r["boundary_iou"] == pytest.approx(expected["boundary_iou"])
    assert 0 < r["boundary_iou"] < 1


def test_default_boundary_width_is_two_percent_of_the_diagonal():
    target = square(60, 80, 10, 10, 30)   # diagonal 100 -> d = 2
    pred = square(60, 80, 13, 11, 30)
    default = scores(torch.from_numpy(pred), torch.from_numpy(target), 2)["boundary_iou"]
    assert default == pytest.approx(reference(pred[None], target[None], 2, d=2)["boundary_iou"])
    assert default != pytest.approx(reference(pred[None], target[None], 2, d=1)["boundary_iou"])


def test_dice_iou_match_numpy_formulas_on_random_maps():
    gen = np.random.default_rng(7)
    target = gen.integers(0, 5, (3, 9, 11))
    pred = np.where(gen.random(target.shape) < 0.6, target, gen.integers(0, 5, target.shape))
    target[gen.random(target.shape) < 0.1] = 255
    r = scores(torch.from_numpy(pred), torch.from_numpy(target), 5, ignore_index=255)
    assert_matches(r, reference(pred, target, 5, ignore=255))
    assert 0 < r["dice"] < 1


def test_single_image_2d_maps_and_reset():
    target = square(6, 6, 1, 1, 3)
    pred = square(6, 6, 1, 2, 3)
    acc = MetricAccumulator(2)
    acc.update(torch.from_numpy(np.zeros((6, 6), np.int64) + 1), torch.from_numpy(target))
    acc.reset()
    acc.update(torch.from_numpy(pred), torch.from_numpy(target))
    r = acc.compute()
    assert r["n_images"] == 1
    assert r["dice"] == pytest.approx(2 * 6 / (2 * 6 + 3 + 3))


def test_bad_inputs_raise_clear_errors():
    a = torch.zeros(2, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"pred \(2, 4, 4\) and target \(2, 4, 5\)"):
        scores(a, torch.zeros(2, 4, 5, dtype=torch.int64), 2)
    bad = a.clone()
    bad[0, 0, 0] = 255
    with pytest.raises(ValueError, match=r"target has values \[255\] outside 0\.\.1"):
        scores(a, bad, 2)
    with pytest.raises(ValueError, match=r"pred has values \[3\] outside 0\.\.2"):
        scores(bad.clamp(max=3), a, 3, ignore_index=255)
    with pytest.raises(ValueError, match="integer tensor"):
        scores(a.float(), a, 2)
    with pytest.raises(ValueError, match=r"ignore_index=1 is not allowed"):
        MetricAccumulator(3, ignore_index=1)
    with pytest.raises(ValueError, match=r"num_classes=1 is not allowed"):
        MetricAccumulator(1)
    with pytest.raises(ValueError, match="boundary_dilation=0"):
        MetricAccumulator(2, boundary_dilation=0)
    with pytest.raises(ValueError, match="before any update"):
        MetricAccumulator(2).compute()


def test_definitions_cover_every_score():
    r = scores(torch.zeros(1, 3, 3, dtype=torch.int64), torch.zeros(1, 3, 3, dtype=torch.int64), 2)
    floats = {k for k, v in r.items() if isinstance(v, float)}
    assert floats == {"dice", "iou", "pixel_acc", "boundary_iou", "dice_per_image", "val_loss"}
    assert math.isnan(r["val_loss"])  # scored without a loss
    assert floats <= set(definitions()) and {"ignore", "empty"} <= set(definitions())
