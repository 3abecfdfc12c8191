"""The MLflow sink, read back through MLflow's own client from the SQLite store it defaults to."""

from __future__ import annotations

import pytest

mlflow = pytest.importorskip("mlflow")

from ablate.tracking.mlflow import tracking_uri  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tracked_study):
    client = mlflow.MlflowClient(tracking_uri(tracked_study.exp_dir))
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return client, runs


def _role(runs, role):
    return [r for r in runs if r.data.tags.get("ablate.role") == role]


def test_default_store_is_sqlite_in_the_results_folder(tracked_study):
    assert (tracked_study.exp_dir / "mlflow.db").is_file()
    assert tracking_uri(tracked_study.exp_dir).startswith("sqlite:///")


def test_one_finished_run_per_cell_and_the_killed_attempt_marked_killed(tracked_study, store):
    _, runs = store
    cells = _role(runs, "cell")
    finished = [r for r in cells if r.info.status == "FINISHED"]
    assert sorted(r.data.tags["ablate.variant"] for r in finished) == sorted(
        tracked_study.runs["variant"])
    killed = [r for r in cells if r.info.status == "KILLED"]
    assert [(r.data.tags["ablate.variant"], r.data.tags["ablate.attempt"]) for r in killed] == [
        (tracked_study.killed, "1")]
    again = [r for r in finished if r.data.tags["ablate.variant"] == tracked_study.killed]
    assert again[0].data.tags["ablate.attempt"] == "2"
    assert len(cells) == len(tracked_study.runs) + 1


def test_epochs_final_row_and_params_match_the_tables(tracked_study, store):
    client, runs = store
    for run in (r for r in _role(runs, "cell") if r.info.status == "FINISHED"):
        variant = run.data.tags["ablate.variant"]
        history = tracked_study.history[variant]
        dice = client.get_metric_history(run.info.run_id, "dice")
        assert sorted((m.step, m.value) for m in dice) == list(
            zip(history["epoch"], history["dice"]))  # the resumed cell's epoch 1 too, once
        loss = client.get_metric_history(run.info.run_id, "train_loss")
        assert [m.value for m in sorted(loss, key=lambda m: m.step)] == list(
            history["train_loss"])
        row = tracked_study.runs.set_index("variant").loc[variant]
        assert run.data.metrics["final.params"] == row["params"]
        assert run.data.metrics["final.gmacs_thop"] == pytest.approx(row["gmacs_thop"])
        assert run.data.params["run_key"] == row["run_key"]
        assert run.data.params["knob.pool"] == row["pool"]
        assert run.data.params["train.epochs"] == "2"
        assert run.data.params["env.torch"] == str(row["torch"])
        assert run.data.tags["ablate.status"] == "ok"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"history.csv", "samples.png", "row.json"} <= artifacts


def test_one_aggregate_run_per_variant_nesting_its_seeds(tracked_study, store):
    _, runs = store
    parents = _role(runs, "variant")
    assert sorted(r.data.tags["ablate.variant"] for r in parents) == sorted(
        tracked_study.runs["variant"])  # the report was built twice: updated, not duplicated
    by_id = {r.info.run_id: r for r in parents}
    for cell in _role(runs, "cell"):
        parent = by_id[cell.data.tags["mlflow.parentRunId"]]
        assert parent.data.tags["ablate.variant"] == cell.data.tags["ablate.variant"]
    for parent in parents:
        ok = tracked_study.runs[tracked_study.runs["variant"] == parent.data.tags["ablate.variant"]]
        assert parent.info.status == "FINISHED"
        assert parent.data.metrics["dice_mean"] == pytest.approx(ok["dice"].mean())
        assert parent.data.tags["summary.converged"] == (
            f"{int(ok['converged'].sum())}/{len(ok)}")
        assert "summary.verdict" in parent.data.tags
    dice = tracked_study.runs.set_index("variant")["dice"]
    (other,) = [p for p in parents if p.data.tags["summary.is_baseline"] == "False"]
    (base,) = [p for p in parents if p.data.tags["summary.is_baseline"] == "True"]
    assert other.data.metrics["delta"] == pytest.approx(
        dice[other.data.tags["ablate.variant"]] - dice[base.data.tags["ablate.variant"]])
    assert "p_value" not in other.data.metrics  # one seed: no test, so nothing is logged


def test_one_study_run_with_the_report(store):
    client, runs = store
    (study,) = _role(runs, "study")
    artifacts = {a.path for a in client.list_artifacts(study.info.run_id)}
    assert {"report.md", "summary.csv", "runs.csv"} <= artifacts
