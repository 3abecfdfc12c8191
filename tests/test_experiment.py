from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy import stats

from ablate.config import load_config
from ablate.experiment import ExperimentError, load_experiment, parse_experiment
from ablate.models.variant import Variant

RESULTS = Path(__file__).parent.parent / "results"
EXPERIMENTS = sorted(Path(__file__).parent.parent.joinpath("experiments").glob("*.yaml"))
ABLATIONS = [p for p in EXPERIMENTS if not p.stem.startswith("search")]


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_shipped_experiments_load(path):
    exp = load_experiment(path)
    assert exp.name == path.stem
    assert exp.variants[0] == exp.baseline
    assert len(exp.variants) >= 2 or path.stem == "budget_check_quick"
    assert len(exp.seeds) >= 3 or path.stem == "seed004_budget_check_quick"
    if path.stem.endswith("_full") and exp.data.name == "shapes":
        # hard shapes, a budget longer than seed 002's 15 epochs
        assert exp.config.image_size == 224 and exp.config.epochs == 60
        assert exp.data.options["style"] == "hard"


def test_quick_studies_share_data_budget_and_init():
    """One dataset, budget, schedule and encoder init for every quick study on the quick recipe
    (never per study)."""
    quick = [e for e in map(load_experiment, ABLATIONS) if e.preset == "quick"]
    assert len(quick) == 9
    longer = {"budget_check_quick", "sanity_skips"}  # a longer budget, the same recipe
    plain = [e for e in quick if e.name not in longer]
    assert len({(e.data, e.config) for e in plain}) == 1
    config = plain[0].config
    assert config.encoder_init == "shapes-clean" and config.image_size == 32
    assert plain[0].data.options["style"] == "clean"
    double = next(e for e in quick if e.name == "budget_check_quick")
    assert double.config == config.replace(epochs=2 * config.epochs)
    sanity = next(e for e in quick if e.name == "sanity_skips")
    assert sanity.config.epochs > config.epochs
    assert sanity.config == config.replace(epochs=sanity.config.epochs)
    assert sanity.data.options["style"] == "clean"
    assert double.baseline == next(e for e in plain if e.name == "seed002_pooling_quick").baseline


def test_seed002_studies_match_the_log():
    pooling = load_experiment(Path("experiments/seed002_pooling_quick.yaml"))
    assert [v.pool for v in pooling.variants] == ["M", "MAM", "MAA", "AAM"]
    assert all(v.block == "dsconv" and v.widths == (180, 90, 45, 45) for v in pooling.variants)
    ladder = load_experiment(Path("experiments/seed002_skips_quick.yaml"))
    assert [v.id for v in ladder.variants] == [
        "r18-MAA-w180.90.45.45-k0123-cat-ds-bil", "r18-MAA-w128.64.32.32-k0123-cat-ds-bil",
        "r18-MAA-w128.64.32.32-k23-cat-ds-bil", "r18-MAA-w128.64.32.32-k23-add-ds-bil"]


def test_seed004_studies_keep_its_recipe():
    """Seed 004's optimizer and schedule everywhere; the quick form keeps its three lr phases,
    the budget check doubles each; the full form's baseline is seed 001's U-Net on VOC."""
    names = ("unet_vs_resnet50_full", "unet_vs_resnet50_quick", "budget_check_quick")
    full, quick, double = (load_experiment(Path(f"experiments/seed004_{n}.yaml")) for n in names)
    for exp in (full, quick, double):
        assert exp.preset == "seed004"
        assert (exp.config.optimizer, exp.config.scheduler) == ("adam", "step")
        assert exp.config.loss == "ce" and exp.metric == "iou"
        assert exp.config.epochs == 3 * exp.config.step_epochs
        assert [v.encoder for v in exp.variants][1:] == ["resnet50" if exp is full else "resnet18"]
    assert full.data.name == "voc" and full.config == load_config("seed004")
    assert full.baseline.id == "unet-M-w512.256.128.64-k0123-cat-cvb-trh"
    assert quick.data.options["mode"] == "multiclass" and quick.data == double.data
    assert double.config == quick.config.replace(epochs=2 * quick.config.epochs,
                                                 step_epochs=2 * quick.config.step_epochs)
    assert quick.variants == double.variants


def _raw(**extra):
    raw = {"dataset": {"name": "shapes"}, "seeds": [0, 1], "baseline": {"widths": [16, 8]
           , "skips": "23"}, "variants": [{"pool": "MAA"}]}
    raw.update(extra)
    return raw


def test_overrides_grid_and_dedup():
    exp = parse_experiment(_raw(grid={"pool": ["MAA", "AAM"], "fusion": ["concat", "add"]},
                                train={"epochs": 1}))
    base = Variant(widths=(16, 8), skips="23")
    assert exp.variants[0] == base
    assert len(exp.variants) == 1 + 4  # MAA from variants == MAA/concat from the grid
    assert exp.config.epochs == 1 and exp.runs()[:2] == [(base, 0), (exp.variants[1], 0)]


def test_adaptive_seeds_and_equivalence_margins():
    exp = parse_experiment(_raw(seeds={"min": 3, "max": 5},
                                equivalence={"dice": 0.005, "boundary_iou": 0.02}))
    assert exp.seeds == (0, 1, 2, 3, 4) and exp.looks == (3, 4, 5)
    assert (exp.adaptive.min, exp.adaptive.max) == (3, 5)
    assert exp.margins() == {"dice": 0.005, "boundary_iou": 0.02}
    listed = parse_experiment(_raw())
    assert listed.adaptive is None and listed.looks is None and listed.margins() == {}
    hash(exp)  # still a frozen, hashable value


@pytest.mark.parametrize("extra, pattern", [
    ({"epochs": 3}, r"src.yaml: unknown key 'epochs'; allowed: name, .*train"),
    ({"variants": [{"pool": "MXA"}]}, r"src.yaml: variants\[0\]: pool='MXA' is not allowed"),
    ({"variants": [{"depth": 3}]}, r"variants\[0\]: unknown knob 'depth'"),
    ({"baseline": {"widths": [1, 2, 3, 4, 5, 6]}}, r"baseline: widths=.*6 stages"),
    ({"grid": {"pool": "MAA"}}, r"grid: expected a mapping of knob -> list"),
    ({"train": {"epoch": 1}}, r"train: unknown training key 'epoch'"),
    ({"seeds": [0, 0]}, r"seeds: .* distinct integers"),
    ({"seeds": [-1]}, r"seeds: seed=-1 is not allowed"),
    ({"dataset": {"name": "cityscapes"}}, r"dataset: .*cityscapes"),
    ({"metric": "accuracy"}, r"metric: 'accuracy' is not allowed; allowed: dice"),
    ({"name": "a/b"}, r"name: 'a/b' is not allowed"),
    ({"seeds": {"min": 1, "max": 4}}, r"seeds: .*allowed: integers with 2 <= min <= max"),
    ({"seeds": {"min": 5, "max": 4}}, r"seeds: .*2 <= min <= max"),
    ({"seeds": {"min": 3}}, r"seeds: .*or \{min: m, max: M\}"),
    ({"seeds": {"min": 3, "max": 5, "step": 2}}, r"seeds: unknown key 'step'; allowed: min, max"),
    ({"equivalence": {"f1": 0.01}}, r"equivalence: unknown metric 'f1'; allowed: dice"),
    ({"equivalence": {"dice": 0}}, r"equivalence: margin of dice=0 is not allowed; allowed: a "
                                   r"number > 0"),
    ({"equivalence": 0.01}, r"equivalence: 0.01 is not allowed; allowed: a mapping"),
    ({"preset": "fast"}, r"train: unknown preset 'fast'"),
])
def test_bad_experiments_name_file_key_and_allowed(extra, pattern):
    with pytest.raises(ExperimentError, match=pattern):
        parse_experiment(_raw(**extra), source="src.yaml")


def test_plugins_are_imported_before_the_rest_is_validated(good_plugin):
    path = good_plugin.parent / "e.yaml"  # the plugin's loss and metric are known to it
    path.write_text(yaml.safe_dump(_raw(plugins=["goodplug.py"], train={"loss": "plug_dice"},
                                        metric="plug_fg", equivalence={"plug_fg": 0.01})))
    exp = load_experiment(path)
    assert exp.plugins == ("goodplug.py",) and exp.metric == "plug_fg"
    assert exp.config.loss == "plug_dice" and exp.margins() == {"plug_fg": 0.01}
    assert parse_experiment(_raw(plugins=["goodplug"])).plugins == ("goodplug",)  # no re-import


@pytest.mark.parametrize("plugins, pattern", [
    ("goodplug", r"e.yaml: plugins: 'goodplug' is not allowed; allowed: a list of module names"),
    (["dupplug.py"], r"e.yaml: plugins: plugin 'dupplug.py': loss 'dice' is already registered"),
    (["nowhere"], r"e.yaml: plugins: plugin 'nowhere': not found: no module named 'nowhere'"),
])
def test_bad_plugins_name_file_key_plugin_and_cause(dup_plugin, plugins, pattern):
    path = dup_plugin.parent / "e.yaml"
    path.write_text(yaml.safe_dump(_raw(plugins=plugins)))
    with pytest.raises(ExperimentError, match=pattern):
        load_experiment(path)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_experiment(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ExperimentError, match="bad.yaml: not valid YAML"):
        load_experiment(bad)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("name: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ExperimentError, match="not valid YAML"):
        load_experiment(unsafe)


@pytest.mark.parametrize("study", ["seed002_pooling_quick", "seed002_skips_quick", "sanity_skips",
                                   "decoder_widths_quick", "fusion_upsample_quick",
                                   "budget_check_quick", "decoder_design_quick"])
def test_committed_quick_studies_compare_trained_models(study):
    """The committed quick tables compare trained networks: every run converged by the stated
    criterion, and the seed 002 baselines reach mean validation Dice 0.85."""
    runs = pd.read_csv(RESULTS / study / "runs.csv")
    assert (runs.status == "ok").all() and runs.converged.astype(bool).all(), study
    exp = load_experiment(Path("experiments") / f"{study}.yaml")
    assert len(runs) == len(exp.variants) * len(exp.seeds)
    if study.startswith("seed002"):
        assert runs[runs.variant == exp.baseline.id].dice.mean() >= 0.85


def test_committed_sanity_study_detects_its_effect():
    """No skips is lower than every skip on Dice and boundary IoU at p < 0.05, by scipy's paired
    t-test on the committed runs (one comparison: Holm changes nothing)."""
    runs = pd.read_csv(RESULTS / "sanity_skips" / "runs.csv")
    exp = load_experiment(Path("experiments/sanity_skips.yaml"))
    base, none = (runs[runs.variant == v.id].set_index("seed").sort_index()
                  for v in exp.variants)
    for metric in ("dice", "boundary_iou"):
        assert (none[metric] < base[metric]).all()
        assert stats.ttest_rel(none[metric], base[metric]).pvalue < 0.05, metric
