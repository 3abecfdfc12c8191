"""The worked plugin in ``examples/plugin/``: it loads, its knob reaches ids, columns and
``ablate knobs``, its residual block's parameters match a hand count, and a tiny experiment and
a tiny search run through it from the committed YAML files (``plugin_sandbox``: the working
directory is a temporary copy, and its registrations are forgotten after each test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml

from ablate.cli import main
from ablate.common.plugins import load_plugins

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugin"
PLUGIN = "examples/plugin/resblock.py"  # as the YAML files name it, from the working directory
TINY_TRAIN = {"epochs": 1, "image_size": 32, "batch_size": 8, "samples": 0, "threads": 1,
              "encoder_init": None}
TINY_DATA = {"name": "shapes", "options": {"n_train": 16, "n_val": 8}}


@pytest.fixture
def example(plugin_sandbox):
    """``examples/plugin`` copied under the sandbox's working directory; that directory."""
    shutil.copytree(EXAMPLE, plugin_sandbox / "examples" / "plugin")
    return plugin_sandbox


@pytest.fixture
def loaded(example):
    """The plugin loaded; its ``PluginInfo``."""
    (info,) = load_plugins([PLUGIN])
    return info


def _tiny(example: Path, name: str, **changes) -> Path:
    """The committed YAML file ``name`` with tiny data and training (``changes`` on top)."""
    raw = yaml.safe_load((example / "examples" / "plugin" / name).read_text())
    raw.update(dataset=TINY_DATA, train={**raw["train"], **TINY_TRAIN}, **changes)
    path = example / f"tiny_{name}"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_plugin_registers_a_block_and_a_knob_that_change_no_existing_model(loaded):
    from ablate.models.decoder import BLOCKS
    from ablate.models.variant import KNOBS, Variant, list_knobs

    assert loaded.label == f"{PLUGIN}==0.1.0" and loaded.module == "resblock"
    assert BLOCKS.meta("res")["token"] == "rs" and list(KNOBS)[-1] == "dropout"
    base = Variant()
    assert base.dropout == 0.0 and base.id == "r18-M-w256.128.64.32-k0123-cat-cv-bil"
    assert "dropout" not in base.to_dict()  # no stored run key changes
    v = base.replace(widths=(16, 8, 8, 8), block="res", dropout="0.1")
    assert v.id == "r18-M-w16.8.8.8-k0123-cat-rs-bil-do10" and Variant.from_id(v.id) == v
    assert v.columns()["block"] == "res" and v.columns()["dropout"] == "0.1"
    assert Variant.from_id(v.replace(norm="gn").id).norm == "gn"  # tokens after others read back
    assert list_knobs("dropout")[0]["default"] == "0"
    with pytest.raises(ValueError, match=r"dropout=0.07 is not allowed; allowed: 0 to 0.5"):
        base.replace(dropout=0.07)


@pytest.mark.slow
def test_ablate_knobs_and_profile_take_the_plugin_on_the_command_line(example, capsys):
    assert main(["knobs", "--plugin", PLUGIN]) == 0
    out = capsys.readouterr().out
    assert "res (rs): residual block (resblock plugin)" in out
    assert "dropout  (default: 0; reaches the decoder)" in out
    assert main(["profile", "--plugin", PLUGIN, "--block", "res", "--dropout", "0.1",
                 "--widths", "16,8,8,8", "--input-size", "32"]) == 0
    assert "params" in capsys.readouterr().out


def test_the_residual_block_s_params_counted_by_hand(loaded):
    from ablate.models.decoder import BLOCKS
    from ablate.models.model import build_model
    from ablate.models.variant import Variant

    def params(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    res = BLOCKS.get("res")
    # 4 -> 8: conv3x3 4*8*9 + BN 2*8, conv3x3 8*8*9 + BN 2*8, shortcut conv1x1 4*8 + BN 2*8
    assert params(res(4, 8)) == 288 + 16 + 576 + 16 + 32 + 16
    assert params(res(8, 8)) == 576 + 16 + 576 + 16  # identity shortcut
    assert params(res(4, 8, norm="none")) == (288 + 8) + (576 + 8) + (32 + 8)  # biases, no BN
    assert params(res(4, 8, dropout=0.2)) == params(res(4, 8))
    # In a U-Net (r18: e0..e4 have 64, 64, 128, 256, 512 channels), res is conv plus a
    # projection wherever the fused input's width differs from the stage's: every stage here.
    fused, widths = (512 + 256, 16 + 128, 8 + 64, 8 + 64), (16, 8, 8, 8)
    conv = Variant(widths=widths)
    extra = sum(c * w + 2 * w for c, w in zip(fused, widths))
    assert params(build_model(conv.replace(block="res"), 2)) == params(build_model(conv, 2)) + extra
    model = build_model(conv.replace(block="res", dropout=0.1), 2)
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout2d)]
    assert len(drops) == 4 and all(d.p == 0.1 for d in drops)


#: How a variant with dropout and a block that does not take it is refused.
REFUSED = (r"dropout=0.1 needs a decoder block that takes `dropout` \(res\); block {block} does "
           r"not \(its builder {builder} has no `dropout` argument\)")


def test_dropout_with_a_block_that_does_not_take_it_is_refused_when_the_variant_is_made(loaded):
    from ablate.models.decoder import UNetDecoder
    from ablate.models.encoders import encoder_contract
    from ablate.models.variant import Variant

    with pytest.raises(ValueError, match=REFUSED.format(block="conv", builder="conv_block")):
        Variant(dropout=0.1)
    res = Variant(block="res", dropout="0.1")
    with pytest.raises(ValueError, match=REFUSED.format(block="dsconv", builder="dsconv_block")):
        res.replace(block="dsconv")
    assert res.replace(dropout=0).replace(block="dsconv").block == "dsconv"
    with pytest.raises(ValueError, match=REFUSED.format(block="conv", builder="conv_block")):
        UNetDecoder(encoder_contract("resnet18"), widths=(8,), skips=(), block="conv",
                    upsample="bilinear", fusion="concat", dropout=0.1)  # and when built


def test_an_experiment_or_search_file_crossing_dropout_with_other_blocks(example, capsys):
    from ablate.scale.search_spec import load_search

    path = _tiny(example, "experiment.yaml", variants=[{"block": "res"}, {"dropout": 0.1}])
    assert main(["run", str(path), "--results", "res"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: variants[1]: " in err and "block dsconv does not" in err
    assert not (example / "res").exists()  # refused before anything ran
    # A search space may cross them: the impossible combination is skipped when a trial draws
    # it (``ablate.scale.search``), and counted out of the space's valid variants.
    space = {"block": ["dsconv", "res"], "dropout": [0, 0.1]}
    spec = load_search(_tiny(example, "search.yaml", space=space))
    assert spec.variant({"block": "res", "dropout": 0.1}).id.endswith("-rs-bil-do10")
    with pytest.raises(ValueError, match=REFUSED.format(block="dsconv", builder="dsconv_block")):
        spec.variant({"block": "dsconv", "dropout": 0.1})
    with pytest.raises(ValueError, match=r"trials: 4 is more than the 3 distinct valid variants"):
        load_search(_tiny(example, "search.yaml", space=space, trials=4))
    with pytest.raises(ValueError, match=r"space: no choice of the space makes a valid variant; "
                                         r"e.g. dropout=0.1 needs a decoder block that takes"):
        load_search(_tiny(example, "search.yaml", space={"dropout": [0.1, 0.2]}))


@pytest.mark.slow
def test_a_tiny_experiment_runs_through_the_plugin(example):
    path = _tiny(example, "experiment.yaml")
    assert main(["run", str(path), "--results", "res"]) == 0
    runs = pd.read_csv(example / "res" / "plugin_example" / "runs.csv", keep_default_na=False)
    assert list(runs.variant) == ["r18-M-w16.8.8.8-k0123-cat-ds-bil",
                                  "r18-M-w16.8.8.8-k0123-cat-rs-bil",
                                  "r18-M-w16.8.8.8-k0123-cat-rs-bil-do10"]
    assert (runs.status == "ok").all() and (runs.plugins == f"{PLUGIN}==0.1.0").all()
    assert list(runs.block) == ["dsconv", "res", "res"] and list(runs.dropout) == [0, 0, 0.1]
    assert runs.params.iloc[1] > runs.params.iloc[0]


@pytest.mark.slow
def test_a_tiny_search_runs_through_the_plugin(example):
    from ablate.scale.search import load_study_spec
    from ablate.scale.storage import open_store

    path = _tiny(example, "search.yaml", trials=2)
    url = f"sqlite:///{example / 'study.db'}"
    assert main(["search", str(path), "--storage", url, "--results", "res"]) == 0
    assert load_study_spec("plugin_example_search", open_store(url)).plugins == (PLUGIN,)
    study = optuna.load_study(study_name="plugin_example_search", storage=url)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and {t.user_attrs["plugins"] for t in done} == {f"{PLUGIN}==0.1.0"}
    assert study.trials[0].distributions["block"].choices == ("dsconv", "res")
    # trial 0 is the baseline; the seeded random sampler then picks the plugin's block
    assert [t.user_attrs["variant"] for t in done] == ["r18-M-w16.8.8.8-k0123-cat-ds-bil",
                                                       "r18-M-w16.8.8.8-k0123-cat-rs-bil"]
