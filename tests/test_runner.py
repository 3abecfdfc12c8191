import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ablate.analysis.report import write_report
from ablate.analysis.stats import summarize
from ablate.cli import main
from ablate.common.plugins import load_plugins
from ablate.config import load_config
from ablate.data import BatchLoader, DataSpec, load_dataset
from ablate.evaluation.evaluate import evaluate
from ablate.experiment import parse_experiment
from ablate.models.model import build_model
from ablate.models.variant import Variant
from ablate.results import collect_runs, columns, run_dir
from ablate.runner import base_row, data_spec, planned_runs, run_experiment, run_key

REPO = Path(__file__).resolve().parent.parent
EXP = """\
name: tiny
dataset: {name: shapes, options: {n_train: 16, n_val: 8}}
preset: quick
train: {epochs: %(epochs)d, image_size: 32, batch_size: 8, device: cpu, samples: 1,
        encoder_init: null}
seeds: [0, 1]
baseline: {widths: [16, 8, 8, 8], block: dsconv}
variants:
%(variants)s
profile_size: 32
"""


def _write(tmp_path, variants="  - {pool: MAA}", epochs=1):
    path = tmp_path / "tiny.yaml"
    path.write_text(EXP % {"variants": variants, "epochs": epochs})
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the dataset cache and results land here
    return tmp_path


@pytest.mark.slow
def test_end_to_end_files_and_row_schema(workdir):
    assert main(["run", str(_write(workdir)), "--results", "res"]) == 0
    exp_dir = workdir / "res" / "tiny"
    for name in ("runs.csv", "runs.parquet", "summary.md", "summary.csv", "summary.tex",
                 "report.md", "experiment.json", "plots/dice_vs_gmacs.png",
                 "plots/dice_vs_gmacs.svg", "plots/dice_vs_params.png", "plots/dice_ci.png",
                 "plots/curves.png", "plots/samples.png"):
        assert (exp_dir / name).is_file(), name
    runs = pd.read_csv(exp_dir / "runs.csv")
    assert list(runs.columns[:len(columns())]) == list(columns())
    assert sorted(zip(runs.variant, runs.seed)) == sorted(
        (v, s) for v in ("r18-M-w16.8.8.8-k0123-cat-ds-bil", "r18-MAA-w16.8.8.8-k0123-cat-ds-bil")
        for s in (0, 1))
    assert (runs.status == "ok").all() and runs.dice.between(0, 1).all()
    assert pd.read_parquet(exp_dir / "runs.parquet").shape == runs.shape
    for path in ("history.csv", "samples.png", "row.json", "checkpoints/final.pt",
                 "checkpoints/best.pt"):
        assert (run_dir(exp_dir, runs.variant[0], 0) / path).is_file()
    assert not (run_dir(exp_dir, runs.variant[0], 0) / "checkpoints/last.pt").exists()
    report = (exp_dir / "report.md").read_text()
    assert "r18-MAA-w16.8.8.8-k0123-cat-ds-bil" in report and "plots/dice_vs_gmacs.png" in report


@pytest.mark.slow
def test_row_numbers_recomputed_independently(workdir):
    exp = parse_experiment(json.loads(json.dumps(
        {"dataset": {"name": "shapes", "options": {"n_train": 16, "n_val": 8}},
         "train": {"epochs": 1, "image_size": 32, "batch_size": 8, "device": "cpu",
                   "samples": 0, "amp": False,  # fp32: the saved weights give the row's Dice
                   "encoder_init": None},  # not the preset's: making it is a minute's training
         "seeds": [0], "baseline": {"widths": [16, 8, 8, 8]}, "variants": [{"fusion": "add"}],
         "profile_size": 32})), default_name="schema")
    runs = run_experiment(exp, "res", progress=False)
    info, splits = load_dataset(DataSpec("shapes", image_size=32,
                                         options={"n_train": 16, "n_val": 8}))
    for _, row in runs.iterrows():
        variant = Variant.from_id(row.variant)
        fresh = build_model(variant, 1)
        assert row.params == sum(p.numel() for p in fresh.parameters())
        assert row.params_m == pytest.approx(row.params / 1e6)
        from fvcore.nn import FlopCountAnalysis
        fv = FlopCountAnalysis(fresh.eval(), torch.zeros(1, 3, 32, 32))
        fv.unsupported_ops_warnings(False)
        assert row.gmacs_fvcore == pytest.approx(fv.total() / 1e9)
        assert row.gflops_torch == pytest.approx(2 * row.gmacs_exact)
        state = torch.load(run_dir(workdir / "res" / "schema", variant, 0) / "checkpoints/final.pt",
                           weights_only=True)
        fresh.load_state_dict(state["model"])
        scores = evaluate(fresh, BatchLoader(splits["val"], 3), info.num_classes)
        assert row.dice == pytest.approx(scores["dice"], abs=1e-6)
        assert row.train_images_per_s == pytest.approx(16 / row.train_time_s)
        assert row.profile_input == "3x32x32" and row.device.startswith("cpu")


@pytest.mark.slow
def test_rerun_skips_finished_and_stale_rows_are_redone(workdir):
    path = _write(workdir)
    assert main(["run", str(path), "--results", "res"]) == 0
    before = pd.read_csv(workdir / "res/tiny/runs.csv")
    assert main(["run", str(path), "--results", "res"]) == 0
    again = pd.read_csv(workdir / "res/tiny/runs.csv")
    assert again.wall_s.tolist() == before.wall_s.tolist()  # nothing retrained
    _write(workdir, epochs=2)
    assert main(["run", str(path), "--results", "res"]) == 0
    redone = pd.read_csv(workdir / "res/tiny/runs.csv")
    assert (redone.epochs_run == 2).all() and len(redone) == 4


@pytest.mark.slow
def test_failing_variant_is_recorded_and_the_sweep_goes_on(workdir, capsys):
    path = _write(workdir, "  - {pretrained: /nonexistent/weights.pth}\n  - {pool: MAA}")
    assert main(["run", str(path), "--results", "res"]) == 1
    runs = pd.read_csv(workdir / "res/tiny/runs.csv")
    assert len(runs) == 6
    failed = runs[runs.status == "failed"]
    assert len(failed) == 2 and failed.error.str.contains("does not exist").all()
    assert (runs[runs.status == "ok"].variant.nunique()) == 2
    assert "2 run(s) failed" in capsys.readouterr().err
    assert "## Failed runs" in (workdir / "res/tiny/report.md").read_text()


@pytest.mark.slow
def test_report_rebuilds_from_stored_runs(workdir):
    path = _write(workdir)
    assert main(["run", str(path), "--results", "res"]) == 0
    report = workdir / "res/tiny/report.md"
    report.unlink()
    assert main(["report", str(path), "--results", "res"]) == 0
    assert report.is_file()
    assert main(["report", str(_write(workdir / "..", "  - {pool: AAM}")), "--results",
                 "elsewhere"]) == 2


@pytest.mark.slow
def test_sigkill_mid_sweep_then_restart_gives_exactly_one_row_each(workdir):
    path = _write(workdir, "  - {pool: MAA}\n  - {pool: AAM}", epochs=2)
    cmd = [sys.executable, "-m", "ablate.cli", "run", str(path), "--results", "res"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    runs_dir = workdir / "res/tiny/runs"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(runs_dir.glob("*/seed*/row.json"))) < 2:
        time.sleep(0.2)
    # kill while a later run is mid-training (its last.pt written, no row yet)
    while time.time() < deadline and not any(
            (p.parent / "checkpoints/last.pt").exists() and not (p.parent / "row.json").exists()
            for p in runs_dir.glob("*/seed*/run_key")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent: json.loads(p.read_text())["wall_s"]
                for p in runs_dir.glob("*/seed*/row.json")}
    assert 2 <= len(finished) < 6

    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = pd.read_csv(workdir / "res/tiny/runs.csv")
    assert len(runs) == 6 and not runs.duplicated(["variant", "seed"]).any()
    assert (runs.status == "ok").all()
    for folder, wall in finished.items():  # finished runs were kept, not redone
        assert json.loads((folder / "row.json").read_text())["wall_s"] == wall


@pytest.mark.slow
def test_identical_cell_of_another_experiment_is_reused_not_retrained(workdir):
    first = _write(workdir)
    assert main(["run", str(first), "--results", "res"]) == 0
    second = workdir / "other.yaml"
    second.write_text(first.read_text().replace("name: tiny", "name: other").replace(
        "{pool: MAA}", "{pool: AAM}"))
    assert main(["run", str(second), "--results", "res"]) == 0
    a = pd.read_csv(workdir / "res/tiny/runs.csv").set_index(["variant", "seed"])
    b = pd.read_csv(workdir / "res/other/runs.csv").set_index(["variant", "seed"])
    base = "r18-M-w16.8.8.8-k0123-cat-ds-bil"
    for seed in (0, 1):
        assert b.loc[(base, seed), "reused_from"] == "tiny"
        assert b.loc[(base, seed), "wall_s"] == a.loc[(base, seed), "wall_s"]
        assert b.loc[(base, seed), "experiment"] == "other"
    assert b.loc[("r18-AAM-w16.8.8.8-k0123-cat-ds-bil", 0), "reused_from"] != "tiny"
    assert (run_dir(workdir / "res/other", base, 0) / "history.csv").is_file()


@pytest.fixture
def foreground_share():
    """A throw-away metric registered for one test: the share of predicted foreground pixels."""
    from ablate.evaluation.metrics import METRICS, register_metric

    @register_metric("fg_share", better="min", label="Foreground share",
                     definition="predicted foreground pixels / scored pixels")
    def _fg_share(acc):
        cm = acc.confusion.double()
        return float(cm[:, 1:].sum() / cm.sum())

    yield "fg_share"
    METRICS.unregister("fg_share")


@pytest.mark.slow
def test_a_registered_metric_reaches_history_row_summary_and_report(workdir, foreground_share):
    """One registration is all a new metric needs: no other list of metric names to edit."""
    path = _write(workdir)
    path.write_text(path.read_text() + f"metric: {foreground_share}\n")
    assert main(["run", str(path), "--results", "res"]) == 0
    exp_dir = workdir / "res" / "tiny"
    runs = pd.read_csv(exp_dir / "runs.csv")
    assert runs[foreground_share].between(0, 1).all()
    history = pd.read_csv(run_dir(exp_dir, runs.variant[0], int(runs.seed[0])) / "history.csv")
    assert history[foreground_share].between(0, 1).all()
    assert history[foreground_share].iloc[-1] == runs[foreground_share][0]
    summary = pd.read_csv(exp_dir / "summary.csv")
    assert f"{foreground_share}_mean" in summary.columns
    report = (exp_dir / "report.md").read_text()
    assert "Foreground share" in report and "predicted foreground pixels" in report
    assert "fg_share" in (exp_dir / "summary.md").read_text() or "Foreground share" in (
        exp_dir / "summary.md").read_text()


def test_every_row_names_the_plugins_its_process_imported(good_plugin):
    def row():
        return base_row(Variant(), 0, "e", "quick", load_config("quick"))

    assert row()["plugins"] == "" and "plugins" in columns()
    load_plugins(["goodplug"])
    digest = hashlib.sha256(good_plugin.read_bytes()).hexdigest()[:12]
    assert row()["plugins"] == f"goodplug@sha256:{digest}"


@pytest.mark.slow
def test_a_plugin_s_loss_and_metric_are_used_by_ablate_run(good_plugin):
    """An experiment file names its plugin; nothing else is needed for its loss and metric."""
    path = _write(good_plugin.parent)
    text = path.read_text().replace("encoder_init: null}", "encoder_init: null, loss: plug_dice}")
    text = text.replace("seeds: [0, 1]", "seeds: [0]")
    path.write_text(f"plugins: [{good_plugin.name}]\n{text}metric: plug_fg\n")
    assert main(["run", str(path), "--results", "res"]) == 0
    runs = pd.read_csv(good_plugin.parent / "res" / "tiny" / "runs.csv")
    digest = hashlib.sha256(good_plugin.read_bytes()).hexdigest()[:12]
    assert (runs.plugins == f"goodplug.py@sha256:{digest}").all() and len(runs) == 2
    assert (runs.status == "ok").all() and (runs.loss == "plug_dice").all()
    assert runs.plug_fg.between(0, 1).all()
    assert "Predicted foreground" in (good_plugin.parent / "res/tiny/report.md").read_text()


@pytest.mark.slow
def test_a_reused_run_is_judged_on_the_experiments_metric(workdir):
    """The run key leaves the metric out (it does not change training), so a study that compares
    another metric reuses the runs; their convergence columns are judged again on its metric."""
    from ablate.training.convergence import judge

    path = _write(workdir, variants="  - {pool: MAA}", epochs=6)
    assert main(["run", str(path), "--results", "res"]) == 0
    on_dice = pd.read_csv(workdir / "res" / "tiny" / "runs.csv")
    path.write_text(path.read_text() + "metric: val_loss\n")
    assert main(["run", str(path), "--results", "res"]) == 0
    on_loss = pd.read_csv(workdir / "res" / "tiny" / "runs.csv")
    assert (on_loss.train_time_s == on_dice.train_time_s).all()  # reused, not trained again
    for _, row in on_loss.iterrows():
        history = pd.read_csv(run_dir(workdir / "res" / "tiny", row.variant, row.seed)
                              / "history.csv").to_dict("records")
        expected = judge(history, "val_loss", "min")
        assert row.conv_gain == pytest.approx(expected.conv_gain)
        assert row.conv_gain != pytest.approx(judge(history, "dice", "max").conv_gain)


@pytest.fixture
def adaptive_exp(monkeypatch, adaptive_raw, fake_cell):
    """The adaptive experiment, with cells that write made-up rows instead of training."""
    import ablate.runner as runner
    monkeypatch.setattr(runner, "run_cell", fake_cell)
    monkeypatch.setattr(runner, "load_dataset", lambda *a, **k: None)
    return parse_experiment(adaptive_raw, "adaptive")


def test_adaptive_seeds_add_seeds_only_to_undecided_comparisons(tmp_path, adaptive_exp):
    exp = adaptive_exp
    assert planned_runs(exp, pd.DataFrame()) == [(v, s) for s in range(3) for v in exp.variants]
    runs = run_experiment(exp, tmp_path, progress=False)
    seeds = runs.groupby("pool")["seed"].apply(sorted).to_dict()
    s = summarize(runs, exp.baseline.id, margin=0.01, looks=exp.looks).set_index("variant")
    verdict = {v.pool: s.loc[v.id, "verdict"] for v in exp.variants[1:]}
    assert verdict["MAA"] == "worse" and seeds["MAA"] == [0, 1, 2]  # decided at look 1
    assert verdict["AAM"] == "equivalent" and len(seeds["AAM"]) < 6
    assert verdict["MAM"] == "undecided" and seeds["MAM"] == list(range(6))
    assert seeds["M"] == list(range(6)) and len(runs) == 6 + 3 + len(seeds["AAM"]) + 6
    report = tmp_path / "adaptive"
    text = write_report(report, runs, exp.baseline.id, equivalence=exp.margins(),
                        looks=exp.looks).read_text()
    assert f"adaptivity saved {24 - len(runs)} runs" in text
    # A stale row (other settings) is not a result: the plan waits for it to be redone.
    first = run_dir(report, exp.variants[1], 0) / "row.json"
    row = json.loads(first.read_text())
    first.write_text(json.dumps(row | {"run_key": "stale"}))
    assert len(planned_runs(exp, collect_runs(report, exp))) == 12


def test_analysis_keys_do_not_change_run_keys(adaptive_raw):
    """Seeds as {min, max} and equivalence margins change what is read, not what a run is:
    a study that adds them reuses its runs."""
    plain = {k: v for k, v in adaptive_raw.items() if k != "equivalence"}
    listed = parse_experiment({**plain, "seeds": [0, 1, 2]}, "adaptive")
    adaptive = parse_experiment(adaptive_raw, "adaptive")
    assert adaptive.seeds == (0, 1, 2, 3, 4, 5) and adaptive.looks == (3, 4, 5, 6)
    for exp in (listed, adaptive):
        assert [run_key(v, data_spec(exp), exp.config, s, exp.profile_size)
                for v, s in exp.runs()[:8]] == [
            run_key(v, data_spec(listed), listed.config, s, listed.profile_size)
            for v, s in listed.runs()[:8]]


def test_rows_stored_before_a_knob_existed_get_its_default_column(tmp_path):
    """A stored row.json without a knob added since (the run key, and so the run, unchanged)
    is collected with that knob's default in its column."""
    exp = parse_experiment({"name": "old", "seeds": [0]})
    variant = exp.baseline
    out = run_dir(tmp_path, variant, 0)
    out.mkdir(parents=True)
    stored = {k: v for k, v in variant.columns().items() if k not in ("norm", "attention")}
    (out / "row.json").write_text(json.dumps({"variant": variant.id, "seed": 0,
                                              "status": "failed", **stored}))
    runs = collect_runs(tmp_path, exp)
    assert runs.loc[0, "norm"] == "bn" and runs.loc[0, "attention"] == "none"
