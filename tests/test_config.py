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
