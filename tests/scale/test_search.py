"""Tests of ablate.scale.search: studies refuse other settings, the budget and the pruner,
trials through the one ``runner.run_cell``, and real ``ablate worker`` processes sharing a study
(SQLite, a journal file, PostgreSQL): exactly N trials, SIGKILL, no password in any output."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from ablate import runner
from ablate.scale import search
from ablate.scale.search import run_search
from ablate.scale.search_report import epochs_saved, trials_table, write_search_report
from ablate.scale.search_spec import load_search, parse_search
from ablate.scale.storage import open_store

POOL = {"study": "pool", "space": {"pool": ["M", "MAA", "AAM"], "block": ["conv", "dsconv"]}}


def test_a_study_refuses_workers_with_other_settings(tiny, tiny_store):
    store = tiny_store
    search.open_study(parse_search(tiny()), store)
    search.open_study(parse_search(tiny(trials=3, description="more trials")), store)
    with pytest.raises(ValueError, match=r"study 'tiny' in sqlite:///.* was made with other "
                                         r"settings \(space differ\)"):
        search.open_study(parse_search(tiny(space={"pool": ["M", "AAM"]})), store)
    assert search.load_study_spec("tiny", store).trials == 3
    with pytest.raises(ValueError, match="no study 'nope' in .*; allowed: tiny"):
        search.load_study_spec("nope", store)


@pytest.mark.slow
def test_budget_skips_over_budget_variants_without_training_them(tmp_path, monkeypatch, tiny,
                                                                 tiny_store):
    trained = []
    real_train = runner.train

    def spy(variant, *args, **kwargs):
        trained.append(variant.encoder)
        return real_train(variant, *args, **kwargs)

    monkeypatch.setattr(runner, "train", spy)
    spec = parse_search(tiny(objectives="dice", budget_gmacs=0.06, trials=1,
                             baseline={"widths": [16, 8, 8, 8], "encoder": "resnet34"},
                             space={"encoder": ["resnet34", "resnet18"]}))
    store = tiny_store
    assert run_search(spec, store, tmp_path, progress=False, sampler_seed=0) == 1
    assert trained == ["resnet18"]
    write_search_report(spec, store, tmp_path)
    trials = pd.read_csv(tmp_path / "tiny" / "trials.csv")
    skipped = trials[trials["status"] == "skipped"]
    assert len(skipped) >= 1 and (skipped["encoder"] == "resnet34").all()
    assert skipped["error"].str.startswith("over budget").all()
    assert (skipped["gmacs_thop"] > 0.06).all() and (skipped["epochs_run"].isna()).all()
    ok = trials[trials["status"] == "ok"]
    assert list(ok["encoder"]) == ["resnet18"] and (ok["gmacs_thop"] <= 0.06).all()
    assert f"{len(skipped)} over budget" in (tmp_path / "tiny" / "report.md").read_text()


@pytest.mark.slow
def test_pruned_trials_record_their_row_and_the_epochs_saved(tmp_path, monkeypatch, tiny,
                                                              tiny_store):
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    spec = parse_search(tiny(objectives="dice", pruner="median", trials=1, max_trials=1,
                             train={**tiny()["train"], "epochs": 3}, space={"pool": ["M"]}))
    store = tiny_store
    assert run_search(spec, store, tmp_path, progress=False, sampler_seed=0) == 0
    study = optuna.load_study(study_name="tiny", storage=store.optuna)
    table = trials_table(study, spec)
    assert list(table["trial_state"]) == ["PRUNED"] and list(table["status"]) == ["pruned"]
    assert list(table["epochs_run"]) == [1] and table["dice"].notna().all()
    assert table["gmacs_thop"].gt(0).all()  # from a throw-away copy: no model after pruning
    assert epochs_saved(table) == 2
    assert study.trials[0].intermediate_values == {1: table["dice"][0]}
    text = write_search_report(spec, store, tmp_path).read_text()
    assert "1 pruned (2 epochs saved by pruning)" in text
    assert "No complete trial yet" in text


@pytest.mark.slow
def test_a_trial_whose_row_exists_reuses_it_through_run_cell(tmp_path, monkeypatch, tiny):
    spec = parse_search(tiny(objectives="dice", trials=1, space={"pool": ["M"]}))
    first = open_store(f"sqlite:///{tmp_path / 'first.db'}", heartbeat=1, grace=5)
    assert run_search(spec, first, tmp_path, progress=False, sampler_seed=0) == 1
    row_file = runner.run_dir(tmp_path / "tiny", spec.baseline, 0) / "row.json"
    row = json.loads(row_file.read_text())
    cells, run_cell = [], runner.run_cell

    def spy(exp, variant, *args, **kwargs):
        cells.append(variant.id)
        return run_cell(exp, variant, *args, **kwargs)

    monkeypatch.setattr(runner, "run_cell", spy)
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a current row retrained"))
    fresh = open_store(f"sqlite:///{tmp_path / 'fresh.db'}", heartbeat=1, grace=5)
    assert run_search(spec, fresh, tmp_path, progress=False, sampler_seed=0) == 1  # new study
    assert cells == [spec.baseline.id]
    assert json.loads(row_file.read_text()) == row
    trial = optuna.load_study(study_name="tiny", storage=fresh.optuna).trials[0]
    assert trial.value == row["dice"] and trial.user_attrs["wall_s"] == row["wall_s"]


def _search_file(tmp_path: Path, tiny, **changes) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(tiny(**POOL, **changes)))
    return path


def _check_study(spec, url: str, n: int) -> list[optuna.trial.FrozenTrial]:
    """Exactly ``n`` complete trials, all with different parameters; returns every trial."""
    study = optuna.load_study(study_name=spec.name, storage=open_store(url).optuna)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == n
    assert len({tuple(sorted(t.params.items())) for t in complete}) == n
    assert len({t.user_attrs["variant"] for t in complete}) == n
    return trials


@pytest.mark.slow
def test_two_workers_on_sqlite_finish_exactly_n_trials_without_duplicates(tmp_path, tiny,
                                                                          start_worker,
                                                                          finish_workers):
    path = _search_file(tmp_path, tiny, trials=3)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = start_worker(str(path), "--storage", url)
    store, deadline = open_store(url), time.time() + 120
    while "pool" not in optuna.get_all_study_names(store.optuna):
        assert time.time() < deadline and first.poll() is None, "the study was never created"
        time.sleep(0.1)
    joiner = start_worker("--study", "pool", "--storage", url)  # settings from the study
    finish_workers([first, joiner])
    trials = _check_study(load_search(path), url, 3)
    ended = Counter(t.user_attrs.get("status") for t in trials)
    assert set(ended) <= {"ok", "skipped"} and ended["ok"] == 3
    skipped = [t.user_attrs["error"] for t in trials if t.user_attrs.get("status") == "skipped"]
    assert all(e.startswith("duplicate: trial ") for e in skipped)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_nothing(tmp_path, tiny, start_worker, finish_workers):
    path = _search_file(tmp_path, tiny, trials=2)
    spec = load_search(path)
    url = f"journal:{tmp_path / 'journal.log'}"
    first = start_worker(str(path), "--storage", url)
    runs = tmp_path / "results" / spec.name / "runs"
    deadline, killed = time.time() + 180, None
    while killed is None and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
        if spec.name not in optuna.get_all_study_names(storage=open_store(url).optuna):
            continue
        study = optuna.load_study(study_name=spec.name, storage=open_store(url).optuna)
        for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            if len(t.params) < 2:
                continue
            if (runs / spec.variant(t.params).id / "seed0" / "run_key").is_file():
                first.send_signal(signal.SIGKILL)  # training has started
                killed = t.number
    first.communicate()
    assert killed is not None, "the first worker never reached a training trial"
    finish_workers([start_worker(str(path), "--storage", url)])
    trials = _check_study(spec, url, 2)
    lost = trials[killed]
    assert lost.state == optuna.trial.TrialState.FAIL and "status" not in lost.user_attrs
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed)
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == lost.params
    table = trials_table(optuna.load_study(study_name=spec.name,
                                           storage=open_store(url).optuna), spec)
    row = table.set_index("trial").loc[killed]
    assert row["status"] == "lost" and row["error"].endswith(f"retried as trial {retry.number}")
    assert row["variant"] == retry.user_attrs["variant"]


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(dirs[-1]).parent if dirs else None


@pytest.fixture
def postgres_url(tmp_path):
    """A throw-away PostgreSQL cluster on 127.0.0.1 with a password; skipped when impossible."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server (initdb, pg_ctl): install Debian's postgresql "
                    "package (.ci/postgres.sh does)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install "
                                          "'ablate[postgres]')")
    user = {}
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            import pwd

            entry = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        user = {"user": entry.pw_uid, "group": entry.pw_gid}
    root = Path(tempfile.mkdtemp(prefix="ablate-pg-"))
    data, password = root / "data", "s3cret-pw"
    (root / "pw").write_text(password)
    if user:
        os.chown(root, user["user"], user["group"])
        os.chown(root / "pw", user["user"], user["group"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, text=True, **user)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "ablate", f"--pwfile={root / 'pw'}",
            "-A", "scram-sha-256")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"),
            "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {exc.stderr.strip()[-300:]}")
    yield f"postgresql+psycopg://ablate:{password}@127.0.0.1:{port}/postgres"
    run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_postgresql_and_no_password_in_any_output(tmp_path, postgres_url, tiny,
                                                                  start_worker, finish_workers):
    path = _search_file(tmp_path, tiny, trials=2)
    spec = load_search(path)
    outs = finish_workers([start_worker(str(path), "--storage", postgres_url) for _ in range(2)])
    _check_study(spec, postgres_url, 2)
    assert all("postgresql+psycopg://ablate:***@127.0.0.1" in out for out in outs)
    report = write_search_report(spec, open_store(postgres_url), tmp_path / "results")
    assert "ablate:***@127.0.0.1" in report.read_text()
    texts = [*outs, *(p.read_text(errors="ignore") for p in (tmp_path / "results").rglob("*")
                      if p.is_file() and p.suffix in (".md", ".csv", ".json", ".tex"))]
    assert not [t for t in texts if "s3cret-pw" in t]
