import csv
import itertools
import json
from pathlib import Path

import pytest
import yaml

from ablate import build_model
from ablate.common.registry import ChangesExistingModels
from ablate.models.encoders import list_encoders
from ablate.models.profile import exact_macs
from ablate.models.variant import KNOBS, Variant, list_knobs
from ablate.runner import run_key


def test_baseline_id_and_seed_example():
    assert Variant().id == "r18-M-w256.128.64.32-k0123-cat-cv-bil"
    v = Variant(pool="MAA", widths=(128, 64, 32, 32), skips=("e2", "e3"), block="dsconv")
    assert v.id == "r18-MAA-w128.64.32.32-k23-cat-ds-bil"


def test_equal_variants_share_id_and_hash():
    a = Variant(pool="mam", widths="128,64,32,32", skips="e3,e2")
    b = Variant(pool="MAMS", widths=[128, 64, 32, 32], skips=[3, 2])
    assert a == b and hash(a) == hash(b) and a.id == b.id
    assert Variant(pool="MSSS") == Variant(pool="M")


def _one_of_each():
    """One variant per value of every categorical knob, plus pool / skips / widths samples."""
    base = Variant()
    out = [base]
    out += [base.replace(encoder=row["encoder"], skips="all") for row in list_encoders()]
    for name in KNOBS.names():  # every value of every knob with finitely many
        levels = KNOBS.get(name).levels
        out += [base.replace(**{name: v}) for v in (levels() if levels else ())]
    out += [base.replace(pool="MAA", norm="none", act="silu", attention="gate",
                         deep_supervision=True, pretrained="IMAGENET1K_V1"),
            base.replace(norm="gn", deep_supervision="on")]
    out += [base.replace(pool=p) for p in ("A", "S", "MAM", "MAA", "AAM", "SSSS", "MMMM", "AS")]
    out += [base.replace(skips=s) for s in ("none", "e3", "23", "0123", "013")]
    out += [base.replace(widths=w, skips="none") for w in ((8,), (8, 8), (8, 8, 8, 8, 8))]
    return out


def test_different_variants_never_share_an_id():
    variants = set(_one_of_each())
    ids = {v.id for v in variants}
    assert len(ids) == len(variants)


@pytest.mark.parametrize("variant", _one_of_each(), ids=lambda v: v.id)
def test_round_trips(variant):
    assert Variant.from_dict(variant.to_dict()) == variant
    assert Variant.from_dict(yaml.safe_load(yaml.safe_dump(variant.to_dict()))) == variant
    assert Variant.from_id(variant.id) == variant


def test_pretrained_in_id():
    v = Variant(pretrained="IMAGENET1K_V1")
    assert v.id.endswith("-ptIMAGENET1K_V1") and Variant.from_id(v.id) == v
    f1, f2 = Variant(pretrained="/a/w.pth"), Variant(pretrained="/b/w.pth")
    assert f1.id != f2.id and f1.id.split("-")[-1].startswith("ptf")
    with pytest.raises(ValueError, match="cannot be read back"):
        Variant.from_id(f1.id)


@pytest.mark.parametrize("overrides, pattern", [
    ({"pool": "MXA"}, r"pool='MXA'.*letter 'X'.*allowed: 1 to 4 letters"),
    ({"pool": ""}, r"pool=''.*1 to 4 letters"),
    ({"pool": "MAMAM"}, r"pool='MAMAM'"),
    ({"widths": (1, 2, 3, 4, 5, 6)}, r"widths=.*6 stages.*allowed: 1 to 5"),
    ({"widths": (128, 0)}, r"widths=.*positive"),
    ({"widths": (128, -4)}, r"widths=.*positive"),
    ({"widths": "12,x"}, r"widths='12,x'.*integers"),
    ({"widths": ()}, r"widths=.*0 stages"),
    ({"skips": ("e7",)}, r"skips=.*unknown skip 'e7'.*e0, e1, e2, e3"),
    ({"encoder": "resnet99"}, r"encoder='resnet99'.*allowed: resnet18, resnet34, resnet50"),
    ({"fusion": "mul"}, r"fusion='mul'.*allowed: add, concat"),
    ({"block": "mbconv"}, r"block='mbconv'.*allowed: conv, conv_bias, dsconv"),
    ({"upsample": "pixelshuffle"}, r"upsample='pixelshuffle'.*bilinear, nearest, transpose"),
    ({"pretrained": "IMAGENET9K"}, r"pretrained='IMAGENET9K'.*IMAGENET1K_V1"),
    ({"widths": (64, 32)}, r"e0 is fused by decoder stage 4.*only 2 stages"),
])
def test_bad_values_name_knob_value_and_allowed(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        Variant().replace(**overrides)


def test_unknown_keys_refused():
    with pytest.raises(ValueError, match=r"unknown knob 'depth'; allowed: .*encoder"):
        Variant.from_dict({"depth": 3})
    with pytest.raises(ValueError, match="unknown knob"):
        Variant().replace(colour="red")


def test_frozen():
    with pytest.raises(AttributeError):
        Variant().pool = "A"


def test_list_knobs_covers_every_field():
    rows = list_knobs()
    assert [r["knob"] for r in rows] == ["encoder", "pool", "widths", "skips", "fusion", "block",
                                         "upsample", "pretrained", "norm", "act", "attention",
                                         "deep_supervision"]
    by_name = {r["knob"]: r for r in rows}
    assert by_name["pool"]["default"] == "M"
    assert "dsconv" in by_name["block"]["allowed"] and "transpose" in by_name["upsample"]["allowed"]
    assert all(r["help"] for r in rows)
    assert [r["knob"] for r in list_knobs("s*")] == ["skips"]


def test_from_id_errors():
    with pytest.raises(ValueError, match=rf"7 to {len(KNOBS)} '-'-separated tokens"):
        Variant.from_id("r18-MAA")
    with pytest.raises(ValueError, match="encoder token 'r99'"):
        Variant.from_id("r99-M-w8-k3-cat-cv-bil")


def test_all_skip_subsets_distinct():
    subsets = [c for n in range(5) for c in itertools.combinations(("e0", "e1", "e2", "e3"), n)]
    assert len({Variant(skips=s).id for s in subsets}) == 16


RESULTS = Path(__file__).parents[2] / "results"


def _committed_tables():
    """(folder, settings, rows) of every committed table with variant ids: each study's
    runs.csv with its experiment.json, each search's trials.csv with its search.json."""
    tables = []
    for settings, table in (("experiment.json", "runs.csv"), ("search.json", "trials.csv")):
        for path in sorted(RESULTS.glob(f"*/{table}")):
            stored = json.loads((path.parent / settings).read_text())
            rows = [r for r in csv.DictReader(path.open()) if r.get("run_key")]
            tables.append((path.parent.name, stored, rows))
    return tables


TABLES = _committed_tables()
COMMITTED = {r["variant"]: r for _, _, rows in TABLES for r in rows}


class _Stored:
    """Stands in for a DataSpec / TrainConfig: ``run_key`` reads only ``to_dict()``."""

    def __init__(self, mapping):
        self.mapping = mapping

    def to_dict(self):
        return self.mapping


def test_committed_results_exist():
    assert len(COMMITTED) >= 15 and sum(len(rows) for _, _, rows in TABLES) >= 100


@pytest.mark.parametrize("folder, stored, rows", TABLES, ids=[t[0] for t in TABLES])
def test_committed_ids_read_back_to_the_same_run_keys(folder, stored, rows):
    """Every committed variant id reads back (``from_id``) to a variant with the same id and
    knob columns whose ``to_dict`` gives the committed row's run key, recomputed by
    ``runner.run_key`` from the dataset and resolved config the study stored. Knobs added
    later (at their defaults) must change none of it."""
    data = _Stored({**stored["dataset"], "image_size": stored["config"]["image_size"]})
    config = _Stored(stored["config"])
    for row in rows:
        variant = Variant.from_id(row["variant"])
        assert variant.id == row["variant"]
        assert Variant.from_dict(json.loads(json.dumps(variant.to_dict()))) == variant
        assert all(row[k] == v for k, v in variant.columns().items() if k in row), row["variant"]
        key = run_key(variant, data, config, int(row["seed"]), stored["profile_size"])
        assert key == row["run_key"], (folder, row["variant"], row["seed"])
    if "baseline" in stored and isinstance(stored["baseline"], dict):  # a search's identity
        assert Variant.from_dict(stored["baseline"]).to_dict() == stored["baseline"]


@pytest.mark.parametrize("variant_id", sorted(COMMITTED))
def test_committed_variants_keep_their_params_and_macs(variant_id):
    """The model of every committed id has exactly the row's params and ``macs_exact`` (the
    head's output channels, set by the dataset, read from the params)."""
    row = COMMITTED[variant_id]
    variant = Variant.from_id(variant_id)
    one = sum(p.numel() for p in build_model(variant, 1).parameters())
    per_class = build_model(variant, 1).head.in_channels + 1
    extra = int(float(row["params"])) - one
    assert extra >= 0 and extra % per_class == 0
    model = build_model(variant, 1 + extra // per_class)
    assert sum(p.numel() for p in model.parameters()) == int(float(row["params"]))
    size = tuple(int(s) for s in row["profile_input"].split("x"))
    assert exact_macs(model, size) == int(float(row["macs_exact"]))


def test_all_skips_are_those_the_stages_reach():
    assert Variant().skips == ("e0", "e1", "e2", "e3") and Variant(skips="all") == Variant()
    assert Variant(widths=(8, 8)).skips == ("e2", "e3")
    assert Variant(widths=(8,) * 5).skips == ("e0", "e1", "e2", "e3")
    assert Variant(encoder="unet", widths=(8,) * 3).skips == ("e1", "e2", "e3")
    assert Variant.from_dict({"skips": ["all"]}) == Variant()
    with pytest.raises(ValueError, match="unknown skip 'all,e1'|unknown skip 'all'"):
        Variant(skips="all,e1")


@pytest.fixture
def probe():
    """A throw-away knob registered as a plugin would (one registration), with a decoder block
    ``pconv`` (token ``pcv``) that takes it; both removed after."""
    from ablate.models.decoder import BLOCKS, conv_block
    from ablate.models.variant import flag, register_knob

    @BLOCKS.register("pconv", token="pcv")
    def pconv(in_ch, out_ch, norm="bn", act="relu", probe=False):
        """the conv block, taking the probe knob."""
        return conv_block(in_ch, out_ch, norm, act)

    knob = register_knob(flag("probe", "prb", "a test knob read by the pconv block"))
    yield knob
    KNOBS.unregister("probe")
    BLOCKS.unregister("pconv")


def test_one_registration_reaches_everything(probe):
    from ablate.cli import build_parser, variant_from_args
    from ablate.experiment import parse_experiment
    from ablate.runner import columns
    from ablate.scale.search_spec import parse_search

    base = Variant(block="pconv")
    assert base.probe is False and base.id == "r18-M-w256.128.64.32-k0123-cat-pcv-bil"
    assert "probe" not in base.to_dict()  # no stored run key changes
    on = base.replace(probe="on")
    assert on.probe is True and on.id == base.id + "-prb" and Variant.from_id(on.id) == on
    assert on != base and on.to_dict()["probe"] is True
    with_weights = on.replace(pretrained="IMAGENET1K_V1")
    assert with_weights.id.endswith("-ptIMAGENET1K_V1-prb")
    assert Variant.from_id(with_weights.id) == with_weights
    assert list(on.columns())[-1] == "probe" and on.columns()["probe"] == "on"
    assert "probe" in columns() and list_knobs("probe")[0]["default"] == "off"
    args = build_parser().parse_args(["profile", "--variant", base.id, "--probe", "yes"])
    assert variant_from_args(args) == on
    exp = parse_experiment({"baseline": {"block": "pconv"}, "grid": {"probe": [False, True]}})
    assert [v.probe for v in exp.variants] == [False, True]
    spec = parse_search({"study": "s", "baseline": {"block": "pconv"},
                         "space": {"probe": ["off", "on"]}, "trials": 2})
    assert spec.space[0].choices == (False, True) and spec.variant({"probe": True}) == on
    with pytest.raises(ValueError, match=r"probe='maybe' is not allowed; allowed: off or on"):
        base.replace(probe="maybe")
    with pytest.raises(ValueError, match=r"token 'prx' is not read by any knob"):
        Variant.from_id(base.id + "-prx")


def test_registration_refuses_what_would_change_or_confuse_ids(probe):
    from ablate.models.decoder import BLOCKS
    from ablate.models.variant import Knob, categorical, flag, register_knob

    with pytest.raises(ValueError, match="'probe' is already registered"):
        register_knob(flag("probe", "prb2", "again"))
    with pytest.raises(ValueError, match="id token 'prb' would also be read by knob 'probe'"):
        register_knob(flag("probe2", "prb", "same token"))
    with pytest.raises(ValueError, match="id token 'ptx' would also be read by knob 'pretrained'"):
        register_knob(flag("probe2", "ptx", "looks like weights"))
    with pytest.raises(ChangesExistingModels, match="has the id token 'cv'.*every existing "
                                                    "variant id"):
        register_knob(categorical("block2", BLOCKS, "a token at its default", "conv"))
    with pytest.raises(ValueError, match="flag 'probe2': token='' is not allowed"):
        flag("probe2", "", "on would add nothing to the id")
    with pytest.raises(ValueError, match="block 'res': token 'cv' is already used by block "
                                         "'conv'"):
        BLOCKS.register("res", token="cv")(BLOCKS.get("conv"))
    with pytest.raises(ValueError, match="knob name 'replace' is not allowed"):
        register_knob(flag("replace", "rpl", "a Variant method"))
    with pytest.raises(ValueError, match="reaches='loss' is not allowed"):
        register_knob(flag("probe2", "pb2", "nowhere", reaches="loss"))
    with pytest.raises(ChangesExistingModels, match="knob 'probe2': its default is not allowed"):
        register_knob(Knob("probe2", "bad default", "x", int, lambda v: "", int, default="x"))
    assert "probe2" not in KNOBS and "block2" not in KNOBS and "res" not in BLOCKS


def test_variant_is_a_frozen_hashable_value():
    import copy
    import pickle

    v = Variant(pool="MAA")
    assert pickle.loads(pickle.dumps(v)) == v and copy.deepcopy(v) == v
    assert {v: 1}[Variant(pool="maa")] == 1 and v.replace(pool="M") == Variant()
    assert repr(v).startswith("Variant(encoder='resnet18', pool='MAA'")
    with pytest.raises(AttributeError, match="frozen"):
        v.widths = (8,)
    with pytest.raises(AttributeError, match="no knob 'colour'"):
        _ = v.colour


def test_decoder_axes_tokens_and_defaults():
    """The new knobs add no token at their defaults (ids, run keys of today's models unchanged);
    each other value has its own token, in KNOBS order after the weights."""
    base = Variant()
    assert base.norm == "bn" and base.act == "relu" and base.attention == "none"
    assert base.deep_supervision is False
    assert set(base.to_dict()) == {"encoder", "pool", "widths", "skips", "fusion", "block",
                                   "upsample", "pretrained"}
    tokens = {("norm", "gn"): "gn", ("norm", "in"): "in", ("norm", "none"): "nx",
              ("act", "gelu"): "gelu", ("act", "silu"): "silu", ("attention", "scse"): "scse",
              ("attention", "gate"): "ag", ("deep_supervision", True): "dsv"}
    for (name, value), token in tokens.items():
        v = base.replace(**{name: value})
        assert v.id == f"{base.id}-{token}" and Variant.from_id(v.id) == v
    v = base.replace(norm="gn", act="gelu", attention="scse", deep_supervision=True)
    assert v.id == base.id + "-gn-gelu-scse-dsv"
    assert v.columns() == {**base.columns(), "norm": "gn", "act": "gelu",
                           "attention": "scse", "deep_supervision": "on"}
    with pytest.raises(ValueError, match="token 'gn' is not read by any knob"):
        Variant.from_id(base.id + "-gelu-gn")  # out of KNOBS order


def test_a_knob_reaching_the_head_must_be_one_the_heads_take(plugin_sandbox):
    """The heads have one builder and no knob value picks another, so a plugin's knob reaching
    them would be ignored: its registration is refused (the plugin with it)."""
    from ablate.common.plugins import PluginError, load_plugins
    from ablate.models.variant import flag, register_knob

    (plugin_sandbox / "headplug.py").write_text(
        "from ablate.models.variant import flag, register_knob\n\n"
        "register_knob(flag('head_bias', 'hb', 'a bias-free head', reaches='head'))\n")
    with pytest.raises(PluginError, match=r"plugin 'headplug.py': .*knob 'head_bias': "
                                          r"reaches='head' is not allowed \(the head has one "
                                          r"builder, build_heads, which takes only "
                                          r"deep_supervision; .*allowed: encoder or decoder"):
        load_plugins(["headplug.py"])
    assert "head_bias" not in KNOBS
    with pytest.raises(ValueError, match=r"knob name 'in_channels' is not allowed: build_encoder "
                                         r"gets in_channels from the model"):
        register_knob(flag("in_channels", "inc", "the model's own", reaches="encoder"))
    assert "in_channels" not in KNOBS
