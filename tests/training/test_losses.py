"""Losses checked on hand-computed values, ignore pixels, shapes and gradients."""

import math

import pytest
import torch

from ablate.config import TrainConfig, load_config
from ablate.data import DataSpec, load_dataset
from ablate.models.variant import Variant
from ablate.training.loop import train
from ablate.training.losses import LOSSES, build_loss, key_name

IGNORE = 255
TASKS = {"binary": 2, "multiclass": 4}


CASES = [pytest.param(name, c, id=f"{name}-{task}")
         for name in LOSSES.names() for task, c in TASKS.items()
         if not (name == "bce+dice" and c != 2)]


def batch(c: int, seed: int = 0, ignore: bool = True):
    gen = torch.Generator().manual_seed(seed)
    channels = 1 if c == 2 else c
    logits = torch.randn(2, channels, 6, 7, generator=gen)
    target = torch.randint(0, c, (2, 6, 7), generator=gen)
    ignored = torch.rand(target.shape, generator=gen) < (0.25 if ignore else 0.0)
    target[ignored] = IGNORE
    return logits, target, ignored


def test_registry_names_and_default():
    assert LOSSES.names() == ["bce+dice", "ce", "ce+dice", "dice"]
    assert TrainConfig().loss == "dice" and "dice" in LOSSES  # the default lives in the config
    with pytest.raises(ValueError, match=r"unknown loss 'focal'; allowed: bce\+dice, ce, ce\+dice"):
        build_loss("focal", 2)


def test_bce_dice_refuses_multiclass():
    with pytest.raises(ValueError, match=r"binary tasks.*use 'ce\+dice'"):
        build_loss("bce+dice", 3)


def test_bad_setup_raises():
    with pytest.raises(ValueError, match=r"num_classes=1 is not allowed"):
        build_loss("dice", 1)
    with pytest.raises(ValueError, match=r"ignore_index=0 is not allowed"):
        build_loss("ce", 3, ignore_index=0)


@pytest.mark.parametrize("c", [2, 5])
def test_perfect_logits_give_zero_dice_loss(c):
    target = torch.zeros(3, 5, 5, dtype=torch.int64)
    target[0, 1:4, 1:4] = 1
    target[1, 0, :] = c - 1          # image 2 stays all background
    if c == 2:
        logits = (target.float() * 2 - 1).unsqueeze(1) * 30
    else:
        logits = torch.nn.functional.one_hot(target, c).permute(0, 3, 1, 2).float() * 30
    assert build_loss("dice", c)(logits, target).item() == pytest.approx(0, abs=1e-6)
    assert build_loss("ce+dice", c)(logits, target).item() == pytest.approx(0, abs=1e-6)
    assert build_loss("dice", c)(-logits, target).item() > 0.5


def test_binary_soft_dice_by_hand():
    # p = sigmoid(0) = 1/2 at 4 pixels, 2 foreground: inter 1, sum p 2, sum g 2;
    # dice = (2 * 1 + 1) / (2 + 2 + 1) = 3/5.
    target = torch.tensor([[[1, 1, 0, 0]]])
    loss = build_loss("dice", 2)(torch.zeros(1, 1, 1, 4), target)
    assert loss.item() == pytest.approx(1 - 3 / 5)


def test_multiclass_soft_dice_skips_classes_absent_from_target():
    # p = 1/3 per class at 3 pixels, target [0, 0, 1]; class 2 absent: skipped.
    # class 0: inter 2/3, sum p 1, sum g 2 -> (4/3 + 1) / (3 + 1) = 7/12
    # class 1: inter 1/3, sum p 1, sum g 1 -> (2/3 + 1) / (2 + 1) = 5/9
    target = torch.tensor([[[0, 0, 1]]])
    loss = build_loss("dice", 3)(torch.zeros(1, 3, 1, 3), target)
    assert loss.item() == pytest.approx(1 - (7 / 12 + 5 / 9) / 2)


def test_ce_equals_hand_computed_log_softmax():
    logits = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 5.0]]).view(1, 3, 1, 2)
    target = torch.tensor([[[0, 2]]])
    # pixel 0: -log(e^1 / (e^1 + e^2 + e^3)); pixel 1: -log(e^5 / (e^0 + e^0 + e^5))
    p0 = -(1 - math.log(math.e + math.e ** 2 + math.e ** 3))
    p1 = -(5 - math.log(2 + math.e ** 5))
    assert build_loss("ce", 3)(logits, target).item() == pytest.approx((p0 + p1) / 2, rel=1e-6)


def test_binary_ce_is_bce_with_logits_by_hand():
    logits = torch.tensor([2.0, -1.0, 0.5]).view(1, 1, 1, 3)
    target = torch.tensor([[[1, 1, IGNORE]]])
    # -log(sigmoid(2)) and -log(sigmoid(-1)); the ignored pixel is out of the mean
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    loss = build_loss("ce", 2, ignore_index=IGNORE)(logits, target)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert build_loss("ce+dice", 2)(logits, target.clamp(max=1)).item() == pytest.approx(
        build_loss("bce+dice", 2)(logits, target.clamp(max=1)).item())


@pytest.mark.parametrize("seed", range(3))
def test_ce_dice_is_bce_dice_on_a_binary_task_values_and_gradients(seed):
    """The quick preset's ce+dice (was bce+dice) is the same two terms on one sigmoid channel."""
    logits, target, _ = batch(2, seed)
    out = {}
    for name in ("bce+dice", "ce+dice"):
        x = logits.clone().requires_grad_(True)
        loss = build_loss(name, 2, ignore_index=IGNORE)(x, target)
        loss.backward()
        out[name] = (loss.detach(), x.grad)
    assert torch.equal(out["bce+dice"][0], out["ce+dice"][0])
    assert torch.equal(out["bce+dice"][1], out["ce+dice"][1])


@pytest.mark.slow
def test_ce_dice_trains_a_binary_task_exactly_as_bce_dice(tmp_path):
    """Seeded CPU runs of the quick preset with either loss give the same curve and metrics."""
    data = load_dataset(DataSpec("shapes", image_size=32, options={"n_train": 32, "n_val": 16}),
                        tmp_path)
    runs = {name: train(Variant(widths=(16, 8, 8, 8), block="dsconv"), data,
                        load_config("quick", epochs=2, batch_size=8, device="cpu",
                                    encoder_init=None, loss=name), seed=0, progress=False)
            for name in ("bce+dice", "ce+dice")}
    assert runs["ce+dice"].status == "ok"
    assert runs["ce+dice"].metrics == runs["bce+dice"].metrics
    assert [h["train_loss"] for h in runs["ce+dice"].history] == \
        [h["train_loss"] for h in runs["bce+dice"].history]


def test_run_keys_hash_ce_dice_as_bce_dice():
    """Runs stored under bce+dice stay current after the quick preset took ce+dice."""
    assert key_name("ce+dice") == "bce+dice"
    assert [key_name(n) for n in ("bce+dice", "ce", "dice")] == ["bce+dice", "ce", "dice"]


@pytest.mark.parametrize("name, c", CASES)
def test_ignore_pixels_change_nothing_and_get_no_gradient(name, c):
    loss_fn = build_loss(name, c, ignore_index=IGNORE)
    logits, target, ignored = batch(c)
    other = logits.clone()
    other[ignored.unsqueeze(1).expand_as(other)] = 40.0
    logits.requires_grad_(True)
    loss = loss_fn(logits, target)
    assert loss_fn(other, target).item() == pytest.approx(loss.item(), abs=1e-6)
    loss.backward()
    mask = ignored.unsqueeze(1).expand_as(logits)
    assert torch.all(logits.grad[mask] == 0)
    assert logits.grad[~mask].abs().sum() > 0
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name, c", CASES)
def test_gradient_flows_without_ignore(name, c):
    logits, target, _ = batch(c, seed=3, ignore=False)
    logits.requires_grad_(True)
    loss = build_loss(name, c)(logits, target)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_all_ignored_batch_gives_finite_zero():
    target = torch.full((1, 3, 3), IGNORE)
    for name, c in (("ce+dice", 2), ("ce+dice", 3)):
        logits = torch.randn(1, 1 if c == 2 else c, 3, 3, requires_grad=True)
        loss = build_loss(name, c, ignore_index=IGNORE)(logits, target)
        loss.backward()
        assert loss.item() == 0 and torch.all(logits.grad == 0)


def test_shape_errors_name_the_expected_shape():
    target = torch.zeros(2, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"binary .*\(N, 1, H, W\); got \(2, 2, 4, 4\)"):
        build_loss("dice", 2)(torch.zeros(2, 2, 4, 4), target)
    with pytest.raises(ValueError, match=r"3-class .*\(N, 3, H, W\); got \(2, 1, 4, 4\)"):
        build_loss("ce", 3)(torch.zeros(2, 1, 4, 4), target)
    with pytest.raises(ValueError, match=r"\(N, H, W\) = \(2, 4, 4\).*got \(2, 1, 4, 4\)"):
        build_loss("ce", 2)(torch.zeros(2, 1, 4, 4), target.unsqueeze(1))
    with pytest.raises(ValueError, match="float logits"):
        build_loss("ce", 2)(torch.zeros(2, 1, 4, 4, dtype=torch.int64), target)


def test_deep_supervision_weights_halve_per_stage_and_sum_to_one():
    from ablate.training.losses import deep_supervision_weights

    assert deep_supervision_weights(4) == pytest.approx((8 / 15, 4 / 15, 2 / 15, 1 / 15))
    assert deep_supervision_weights(1) == (1.0,)
    assert sum(deep_supervision_weights(5)) == pytest.approx(1.0)


def test_supervised_loss_is_the_weighted_sum_over_the_heads():
    from ablate.training.losses import supervised_loss

    torch.manual_seed(0)
    loss = build_loss("ce+dice", 2)
    masks = torch.randint(0, 2, (2, 8, 8))
    outs = tuple(torch.randn(2, 1, 8, 8) for _ in range(3))
    expected = 4 / 7 * loss(outs[0], masks) + 2 / 7 * loss(outs[1], masks) + \
        1 / 7 * loss(outs[2], masks)
    assert torch.allclose(supervised_loss(loss, outs, masks), expected)
    assert torch.equal(supervised_loss(loss, outs[0], masks), loss(outs[0], masks))
