"""Encoder initialisations: made once, cached, identical on a rerun, loaded into every variant."""

import pytest
import torch

from ablate import Variant, build_model, load_config
from ablate.data import DataSpec, load_dataset
from ablate.training.inits import INITS, InitRecipe
from ablate.training.loop import train
from ablate.training.pretrain import encoder_state, load_encoder_init

SIZE = 32


@pytest.fixture
def tiny_init():
    """A throw-away recipe small enough for a test: 16 images, one epoch."""
    name = "tiny-test"
    INITS.register(name, help="test recipe")(InitRecipe(
        dataset="shapes", options={"style": "clean", "n_train": 16, "n_val": 4, "seed": 1000},
        train={"epochs": 1, "batch_size": 8, "lr": 3e-3, "loss": "bce+dice",
               "augment": False},
        variant={"widths": (16, 8, 8, 8), "block": "dsconv"}))
    yield name
    INITS.unregister(name)


@pytest.mark.slow
def test_made_once_cached_and_reproducible(tmp_path, tiny_init):
    first = encoder_state(tiny_init, "resnet18", SIZE, cache_dir=tmp_path)
    files = list((tmp_path / "init").glob("*.pt"))
    assert len(files) == 1 and tiny_init in files[0].name
    # a cache hit reads the file back; a fresh make gives the same weights bit for bit (CPU)
    again = encoder_state(tiny_init, "resnet18", SIZE, cache_dir=tmp_path)
    fresh = encoder_state(tiny_init, "resnet18", SIZE, cache_dir=None)
    for key, value in first.items():
        assert torch.equal(value, again[key]) and torch.equal(value, fresh[key]), key
    # trained, not the random initialisation of a fresh encoder
    torch.manual_seed(0)
    untrained = build_model(Variant(widths=(16, 8, 8, 8), block="dsconv"), 1, 3).encoder
    assert not torch.equal(first["stem.0.weight"], untrained.state_dict()["stem.0.weight"])


@pytest.mark.parametrize("pool", ["M", "MAA", "AAM", "SAA"])
def test_loads_into_every_pool_order(tmp_path, tiny_init, pool):
    state = encoder_state(tiny_init, "resnet18", SIZE, cache_dir=tmp_path)
    model = build_model(Variant(pool=pool, widths=(16, 8, 8, 8)), 1, 3)
    load_encoder_init(model, state, tiny_init)
    loaded = model.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_another_encoder_is_refused_with_the_name(tmp_path, tiny_init):
    state = encoder_state(tiny_init, "resnet18", SIZE, cache_dir=tmp_path)
    model = build_model(Variant(encoder="resnet50", widths=(16, 8, 8, 8)), 1, 3)
    with pytest.raises((ValueError, RuntimeError), match="tiny-test|size mismatch"):
        load_encoder_init(model, state, tiny_init)


def test_unknown_init_is_refused_by_the_config():
    with pytest.raises(ValueError, match="encoder_init='imagenet' is not allowed; allowed: none"):
        load_config("quick", encoder_init="imagenet")


@pytest.mark.slow
def test_train_starts_from_the_init(tmp_path, tiny_init, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = load_dataset(DataSpec("shapes", image_size=SIZE,
                                 options={"style": "clean", "n_train": 8, "n_val": 4}), None)
    config = load_config("quick", epochs=1, image_size=SIZE, batch_size=8, device="cpu",
                         samples=0, encoder_init=tiny_init, lr=0.0, weight_decay=0.0,
                         eta_min=0.0)
    result = train(Variant(pool="MAA", widths=(16, 8, 8, 8)), data, config, progress=False)
    state = encoder_state(tiny_init, "resnet18", SIZE)  # the cache train() filled
    trained = result.model.encoder.state_dict()
    # lr 0: the weights are the init's (BatchNorm running statistics move; weights do not)
    assert torch.equal(trained["stem.0.weight"], state["stem.0.weight"])
    assert torch.equal(trained["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
