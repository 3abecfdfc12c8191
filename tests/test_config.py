import pytest

from ablate.config import PRESETS, TrainConfig, load_config


def test_defaults_are_seed_002_recipe():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.lr, cfg.weight_decay, cfg.eta_min, cfg.loss, cfg.image_size) == (
        15, 1e-3, 1e-4, 1e-6, "dice", 224)
    assert (cfg.optimizer, cfg.scheduler) == ("adamw", "cosine")


def test_seed004_preset_is_its_recipe():
    cfg = load_config("seed004")
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay) == ("adam", 5e-3, 0.0)
    assert (cfg.scheduler, cfg.step_epochs, cfg.step_gamma) == ("step", 1, 0.1)
    assert (cfg.epochs, cfg.batch_size, cfg.loss, cfg.image_size) == (3, 16, "ce", 256)
    assert not cfg.augment and cfg.encoder_init is None


def test_presets_are_yaml_files():
    assert {"quick", "full"} <= set(PRESETS.names())
    full = load_config("full")
    assert full.image_size == 224 and full.epochs == 15
    quick = load_config("quick", epochs=2)
    assert quick.epochs == 2 and quick.image_size < full.image_size
    assert PRESETS.help("quick")


@pytest.mark.parametrize("overrides, pattern", [
    ({"epochs": 0}, r"epochs=0 is not allowed; allowed: a positive integer"),
    ({"lr": -1}, r"lr=-1 is not allowed"),
    ({"loss": "focal"}, r"loss='focal' is not allowed; allowed: .*dice"),
    ({"device": "tpu"}, r"device='tpu' is not allowed; allowed: auto, cpu, cuda, mps"),
    ({"augment": "yes"}, r"augment='yes' is not allowed; allowed: true or false"),
    ({"epoch": 3}, r"unknown training key 'epoch'; allowed: epochs"),
    ({"optimizer": "lion"}, r"optimizer='lion' is not allowed; allowed: adam, adamw, sgd"),
    ({"scheduler": "onecycle"}, r"scheduler='onecycle' is not allowed; allowed: cosine, none"),
    ({"step_epochs": 0}, r"step_epochs=0 is not allowed; allowed: a positive integer"),
    ({"step_gamma": -0.5}, r"step_gamma=-0.5 is not allowed"),
])
def test_bad_values(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_config("quick", **overrides)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'fast'; allowed: full, quick"):
        load_config("fast")


def test_round_trip():
    cfg = load_config("quick", epochs=3)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("given, per_epoch, expected", [
    ({"epochs": 4}, 10, (40, 10, 4)),
    ({"steps": 25}, 10, (25, 10, 3)),       # the third epoch is partial: 5 steps
    ({"steps": 30}, 10, (30, 10, 3)),
    ({"images": 100}, 10, (7, 10, 1)),      # ceil(100 / 16) whole batches of 16
    ({}, 10, (150, 10, 15)),                # no budget given: the default 15 epochs
])
def test_budget_resolves_to_steps_and_epochs(given, per_epoch, expected):
    budget = TrainConfig(batch_size=16, **given).budget(per_epoch)
    assert (budget.steps, budget.steps_per_epoch, budget.epochs) == expected
    assert sum(budget.steps_in(e) for e in range(budget.epochs)) == budget.steps
    assert budget.steps_in(budget.epochs) == 0


def test_budget_label_says_how_it_was_given():
    assert TrainConfig(steps=2000).budget_label == "2000 steps"
    assert TrainConfig(images=64000).budget_label == "64000 images"
    assert TrainConfig().budget_label == "15 epochs"


@pytest.mark.parametrize("given, pattern", [
    ({"epochs": 3, "steps": 10}, r"budget is given 2 times \(epochs=3, steps=10\); allowed: one "
                                 r"of epochs, steps or images"),
    ({"steps": 0}, r"steps=0 is not allowed; allowed: a positive integer"),
    ({"images": 2.5}, r"images=2.5 is not allowed; allowed: a positive integer"),
])
def test_bad_budgets(given, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**given)


def test_a_budget_override_replaces_the_presets():
    quick = load_config("quick", steps=300)
    assert (quick.epochs, quick.steps, quick.images) == (None, 300, None)
    assert quick.replace(images=4800).budget_label == "4800 images"
    with pytest.raises(ValueError, match="budget is given 2 times"):
        load_config("quick", steps=300, epochs=2)


def test_an_epoch_shorter_than_one_batch_is_refused():
    with pytest.raises(ValueError, match="an epoch of 0 steps is not allowed; allowed: at least "
                                         "one full batch of 16"):
        TrainConfig().budget(0)
