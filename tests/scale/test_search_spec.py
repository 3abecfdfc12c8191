"""Tests of ablate.scale.search_spec: search files refused with file, key and what is allowed;
the space's storable choices and the variants they make."""

from __future__ import annotations

import pytest
import yaml

from ablate.scale.search_spec import SearchError, load_search, parse_search


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 3}, "unknown key 'epochs'; allowed: study, description"),
    ({"space": {"colour": ["red"]}}, "space: unknown knob 'colour'; allowed: encoder, pool"),
    ({"space": {"pool": ["M", "MXA"]}}, "space.pool: pool='MXA' is not allowed"),
    ({"space": {"pool": ["M", "MSSS"]}}, "space.pool: ['M', 'MSSS'] lists the same choice twice"),
    ({"space": {"widths": [[8, 8]], "width_mult": [1.0]}}, "give widths or width_mult"),
    ({"space": {"width_mult": [0, 1]}}, "space.width_mult: 0 is not allowed"),
    ({"space": {"pool": "M"}}, "space.pool: expected a non-empty list"),
    ({"objectives": "gmacs,dice"}, "objectives: 'gmacs,dice' is not allowed; allowed: one metric"),
    ({"objectives": "dice,flops"}, "objectives: 'flops' is not allowed; allowed: boundary_iou"),
    ({"pruner": "median"}, "pruner: 'median' needs a single objective"),
    ({"pruner": "asha"}, "pruner: 'asha' is not allowed; allowed: hyperband, median, none"),
    ({"objectives": "dice", "pruner": {"name": "median", "n_warmup": 1}},
     "pruner: median with {'n_warmup': 1}"),
    ({"sampler": "cmaes"}, "sampler: 'cmaes' is not allowed; allowed: nsga2, random, tpe"),
    ({"trials": 5}, "trials: 5 is more than the 4 distinct valid variants"),
    ({"trials": 0}, "trials: 0 is not allowed; allowed: an integer >= 1"),
    ({"budget_gmacs": -1}, "budget_gmacs: -1 is not allowed"),
    ({"train": {"epochz": 1}}, "train: unknown training key 'epochz'"),
    ({"study": "a b"}, "study: 'a b' is not allowed"),
    ({"space": {"skips": [["e0", "e1", "e2", "e3"]]}, "baseline": {"widths": [8, 8],
                                                                  "skips": ["e3"]}},
     "no choice of the space makes a valid variant"),
])
def test_bad_search_files_are_refused_with_file_key_and_allowed(tmp_path, tiny, changes,
                                                               message):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny(**changes)))
    with pytest.raises(SearchError) as err:
        load_search(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_space_choices_are_storable_and_map_to_variants(tiny):
    spec = parse_search(tiny(space={"width_mult": [0.5, 1], "skips": [["e3", "e2"], "none"],
                                    "pool": ["MAAS", "AAM"]}, trials=8))
    choices = {p.name: p.choices for p in spec.space}
    assert choices == {"width_mult": (0.5, 1.0), "skips": ("e2,e3", "none"),
                       "pool": ("MAA", "AAM")}
    variant = spec.variant({"width_mult": 0.5, "skips": "e2,e3", "pool": "AAM"})
    assert variant.widths == (8, 4, 4, 4) and variant.skips == ("e2", "e3")
    assert variant.id == "r18-AAM-w8.4.4.4-k23-cat-cv-bil"
    assert spec.baseline_params() is None  # the baseline keeps every skip: not in the space
    assert parse_search(tiny()).baseline_params() == {"pool": "M", "block": "conv"}
    assert spec.betters == ["max", "min"]
    widths = parse_search(tiny(space={"widths": [[16, 8, 8, 8], "8,8,8,8"]}))
    assert widths.space[0].choices == ("16,8,8,8", "8,8,8,8")


def test_plugins_are_imported_first_and_kept(good_plugin, tiny):
    path = good_plugin.parent / "s.yaml"  # a plugin's metric is an objective, its loss known
    path.write_text(yaml.safe_dump(tiny(plugins=["goodplug.py"], objectives="plug_fg,gmacs",
                                        train={**tiny()["train"], "loss": "plug_dice"})))
    spec = load_search(path)
    assert spec.plugins == ("goodplug.py",) and spec.experiment.plugins == spec.plugins
    assert spec.betters == ["max", "min"] and spec.config.loss == "plug_dice"
    assert spec.identity()["plugins"] == ["goodplug.py"]  # a joining worker must agree
    assert yaml.safe_load(spec.raw)["plugins"] == ["goodplug.py"]  # what the study stores


def test_a_bad_plugin_is_refused_with_file_and_key(dup_plugin, tiny):
    path = dup_plugin.parent / "s.yaml"
    path.write_text(yaml.safe_dump(tiny(plugins=["dupplug"])))
    with pytest.raises(SearchError, match=r"s.yaml: plugins: plugin 'dupplug': loss 'dice' is "
                                          "already registered"):
        load_search(path)


def test_plugins_given_on_the_command_line_are_stored_with_the_file(good_plugin, tiny):
    spec = parse_search(tiny())
    assert spec.with_plugins([]) is spec
    more = spec.with_plugins(["goodplug.py", "goodplug.py"])
    assert more.plugins == ("goodplug.py",) and yaml.safe_load(more.raw)["plugins"] == \
        ["goodplug.py"]
    assert more.identity() == {**spec.identity(), "plugins": ["goodplug.py"]}
    assert parse_search(yaml.safe_load(more.raw)).plugins == ("goodplug.py",)
