import csv
import itertools
from pathlib import Path

import pytest
import yaml

from ablate import build_model
from ablate.models.encoders import list_encoders
from ablate.models.variant import KNOBS, Variant, list_knobs


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
    for name in ("fusion", "block", "upsample"):
        out += [base.replace(**{name: v}) for v in KNOBS.get(name).values]
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
                                         "upsample", "pretrained"]
    by_name = {r["knob"]: r for r in rows}
    assert by_name["pool"]["default"] == "M"
    assert "dsconv" in by_name["block"]["allowed"] and "transpose" in by_name["upsample"]["allowed"]
    assert all(r["help"] for r in rows)
    assert [r["knob"] for r in list_knobs("s*")] == ["skips"]


def test_from_id_errors():
    with pytest.raises(ValueError, match="7 or 8"):
        Variant.from_id("r18-MAA")
    with pytest.raises(ValueError, match="encoder token 'r99'"):
        Variant.from_id("r99-M-w8-k3-cat-cv-bil")


def test_all_skip_subsets_distinct():
    subsets = [c for n in range(5) for c in itertools.combinations(("e0", "e1", "e2", "e3"), n)]
    assert len({Variant(skips=s).id for s in subsets}) == 16


def _committed_rows():
    """One row per variant id in the committed results (runs.csv, and trials.csv of searches)."""
    rows = {}
    for path in sorted(Path(__file__).parents[2].glob("results/*/*.csv")):
        if path.name in ("runs.csv", "trials.csv"):
            for row in csv.DictReader(path.open()):
                rows.setdefault(row["variant"], row)
    return rows


COMMITTED = _committed_rows()


def test_committed_results_exist():
    assert len(COMMITTED) >= 15


@pytest.mark.parametrize("variant_id", sorted(COMMITTED))
def test_committed_ids_round_trip_and_build(variant_id):
    """Ids of committed results keep their meaning: same id, same knob columns, and the same
    parameters (up to the head's output channels, which the dataset sets)."""
    row = COMMITTED[variant_id]
    variant = Variant.from_id(variant_id)
    assert variant.id == variant_id
    assert all(row[k] == v for k, v in variant.columns().items() if k in row)
    model = build_model(variant, 1)
    extra = int(float(row["params"])) - sum(p.numel() for p in model.parameters())
    per_class = model.head.in_channels + 1
    assert extra >= 0 and extra % per_class == 0


def test_all_skips_are_those_the_stages_reach():
    assert Variant().skips == ("e0", "e1", "e2", "e3") and Variant(skips="all") == Variant()
    assert Variant(widths=(8, 8)).skips == ("e2", "e3")
    assert Variant(widths=(8,) * 5).skips == ("e0", "e1", "e2", "e3")
    assert Variant(encoder="unet", widths=(8,) * 3).skips == ("e1", "e2", "e3")
    assert Variant.from_dict({"skips": ["all"]}) == Variant()
    with pytest.raises(ValueError, match="unknown skip 'all,e1'|unknown skip 'all'"):
        Variant(skips="all,e1")
