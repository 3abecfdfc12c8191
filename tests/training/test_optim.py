import math

import pytest
import torch

from ablate.config import load_config
from ablate.training.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize("name, cls", [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam),
                                       ("sgd", torch.optim.SGD)])
def test_optimizers_read_lr_and_weight_decay(name, cls):
    opt = build_optimizer(_params(), name, lr=0.02, weight_decay=0.5)
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.02, 0.5)
    assert group.get("momentum", 0.9) == 0.9


def _lrs(epochs: int, **settings) -> list[float]:
    """The lr of every epoch, the schedule stepped once per epoch as ablate.training.loop does."""
    config = load_config("quick", epochs=epochs, **settings)
    opt = build_optimizer(_params(), config.optimizer, config.lr, config.weight_decay)
    sched = build_scheduler(opt, config.scheduler, epochs, eta_min=config.eta_min,
                            step_epochs=config.step_epochs, step_gamma=config.step_gamma)
    lrs = []
    for _ in range(epochs):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return lrs


def test_step_schedule_is_seed_004s():
    assert _lrs(3, optimizer="adam", lr=5e-3, scheduler="step") == pytest.approx(
        [5e-3, 5e-4, 5e-5])
    assert _lrs(6, lr=1.0, scheduler="step", step_epochs=2, step_gamma=0.5) == pytest.approx(
        [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])


def test_cosine_and_constant():
    lr, floor, epochs = 3e-3, 1e-6, 8
    expected = [floor + (lr - floor) * (1 + math.cos(math.pi * e / epochs)) / 2
                for e in range(epochs)]
    assert _lrs(epochs, lr=lr, eta_min=floor) == pytest.approx(expected)
    assert _lrs(4, lr=0.1, scheduler="none") == pytest.approx([0.1] * 4)


def test_registries_name_their_entries():
    assert OPTIMIZERS.names() == ["adam", "adamw", "sgd"]
    assert SCHEDULERS.names() == ["cosine", "none", "step"]
    assert all(OPTIMIZERS.help(n) for n in OPTIMIZERS)
    assert all(SCHEDULERS.help(n) for n in SCHEDULERS)
