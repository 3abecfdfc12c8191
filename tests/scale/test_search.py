"""Tests of ablate.scale.search: studies refuse other settings, the budget and the pruner,
trials through the one ``runner.run_cell``, and workers sharing a study (SQLite, a journal file,
PostgreSQL): exactly N trials with a worker killed at every fault point (``ablate.common.faults``),
no trial taken twice by racing workers, no password in any output."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from ablate import runner
from ablate.cli import main
from ablate.common.faults import FAULT_ENV, FAULTS
from ablate.data import load_dataset
from ablate.results import ROW_FILE, run_dir
from ablate.scale import search
from ablate.scale.ledger import LOST_ATTR, Ledger
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
    row_file = run_dir(tmp_path / "tiny", spec.baseline, 0) / ROW_FILE
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
def test_a_worker_killed_mid_training_loses_nothing(tmp_path, tiny, start_worker, finish_workers):
    path = _search_file(tmp_path, tiny, trials=2, train={**tiny()["train"], "epochs": 2})
    spec = load_search(path)
    url = f"journal:{tmp_path / 'journal.log'}"
    first = start_worker(str(path), "--storage", url, env={FAULT_ENV: "epoch-end"})
    first.communicate(timeout=300)
    assert first.returncode == -signal.SIGKILL  # after the first epoch of its first trial
    finish_workers([start_worker(str(path), "--storage", url)])
    trials = _check_study(spec, url, 2)
    lost = trials[0]  # the queued baseline
    assert lost.state == optuna.trial.TrialState.FAIL and "status" not in lost.user_attrs
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == lost.params
    assert retry.user_attrs["epochs_run"] == 2
    table = trials_table(optuna.load_study(study_name=spec.name,
                                           storage=open_store(url).optuna), spec)
    row = table.set_index("trial").loc[0]
    assert row["status"] == "lost" and row["error"].endswith(f"retried as trial {retry.number}")
    assert row["variant"] == retry.user_attrs["variant"] == spec.baseline.id


def _search_worker(spec, url: str, results: Path, cache: Path, fast: dict,
                   report: bool = False, go: Path | None = None):
    """What ``ablate worker`` (``report``: ``ablate search``) does, on fast heartbeats; once the
    file ``go`` exists, when given (workers that start together)."""
    def work() -> None:
        while go is not None and not go.exists():
            time.sleep(0.01)
        store = open_store(url, **fast)
        run_search(spec, store, results, progress=False, cache_dir=cache)
        if report:
            write_search_report(spec, store, results)
    return work


def _check_search_ended_exactly(spec, url: str, trained: Counter, table: pd.DataFrame,
                                case: str) -> None:
    """Exactly ``spec.trials`` complete trials, each variant trained to completion at most once,
    nothing RUNNING, and ``table`` (trials.csv) agreeing with the storage: same trials and
    states, ``ok`` for the complete ones only, and no retry named that never ran."""
    study = optuna.load_study(study_name=spec.name, storage=open_store(url).optuna)
    trials = study.get_trials()
    state = {t.number: t.state.name for t in trials}
    complete = [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == spec.trials, f"{case}: {len(complete)} complete: {state}"
    runs = Counter({k.split()[1]: n for k, n in trained.items() if k.split()[0] == spec.name})
    assert set(runs.values()) == {1}, f"{case}: trained twice: {runs}"
    assert {trials[n].user_attrs["variant"] for n in complete} <= set(runs), case
    assert "RUNNING" not in state.values(), f"{case}: {state}"
    assert list(table["trial"]) == list(state), case
    assert list(table["trial_state"]) == list(state.values()), f"{case}: trials.csv differs"
    status = dict(zip(table["trial"], table["status"]))
    assert [n for n, s in status.items() if s == "ok"] == complete, f"{case}: {status}"
    assert all(state[n] == "FAIL" for n, s in status.items() if s == "lost"), case
    assert all((state[n] == "WAITING") == (s == "waiting") for n, s in status.items()), case
    named = [int(n) for e in table["error"].dropna() for n in re.findall(r"retried as trial "
                                                                         r"(\d+)", e)]
    assert all(state[n] in ("COMPLETE", "PRUNED", "FAIL") for n in named), f"{case}: {named}"


@pytest.mark.slow
def test_a_worker_taken_for_dead_stops_training_and_the_study_still_ends_exactly(
        tiny, fake_training, taken_over, tmp_path):
    """A live worker whose beats came late: mid-training, a heir takes its slot over, fails its
    trial as lost and gives the variant to the retry (then the heir dies too). The late worker
    stops at the next epoch end, takes nothing more for the slot, and the study still ends with
    exactly ``trials`` complete trials, each variant trained once."""
    spec = parse_search(tiny(trials=2, train={**tiny()["train"], "epochs": 3}))
    store = open_store(f"sqlite:///{tmp_path / 'study.db'}", heartbeat=0.1, grace=1)

    def heir(variant) -> None:
        ledger = Ledger(optuna.load_study(study_name=spec.name, storage=store.optuna), store)
        [(slot, held)] = ledger.slots.all().items()
        assert ledger.slots.claim(slot, "heir", takeover=held.owner)
        assert ledger.settle(slot) is None
        retry = ledger.take(slot, "heir")
        assert store.claims(f"search/{spec.name}/variants").claim(
            variant.id, f"trial {retry.trial.number}", takeover=f"trial {retry.retry_of}")

    epochs, logged = taken_over(heir), []
    assert run_search(spec, store, tmp_path / "results", progress=False, log=logged.append) == 2
    assert epochs == [1]  # stopped at the end of the epoch in which it lost the hold
    trials = optuna.load_study(study_name=spec.name, storage=store.optuna).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL and LOST_ATTR in trials[0].system_attrs
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2
    assert set(Counter(k.split()[1] for k in fake_training()).values()) == {1}
    assert any("trial 0 of this worker" in line for line in logged), logged


@pytest.mark.slow
def test_an_interrupted_worker_gives_its_slot_back_and_its_trial_is_retried(tiny, tiny_store,
                                                                           fake_training,
                                                                           monkeypatch, tmp_path):
    """SystemExit mid-training (what a SLURM requeue raises through submitit) is no trial
    failure: the trial stays running, its slot is free at once, and the next worker settles it
    as lost and retries it."""
    spec, fake = parse_search(tiny(trials=2)), runner.run_one

    def interrupted(*args, **kwargs):
        monkeypatch.setattr(runner, "run_one", fake)
        raise SystemExit(-1)

    monkeypatch.setattr(runner, "run_one", interrupted)
    with pytest.raises(SystemExit):
        run_search(spec, tiny_store, tmp_path / "results", progress=False)
    [cut] = optuna.load_study(study_name="tiny", storage=tiny_store.optuna).trials
    assert cut.state == optuna.trial.TrialState.RUNNING
    assert tiny_store.claims("search/tiny/slots").all() == {}  # given back, not held
    assert run_search(spec, tiny_store, tmp_path / "results", progress=False) == 2
    trials = optuna.load_study(study_name="tiny", storage=tiny_store.optuna).trials
    assert trials[0].state == optuna.trial.TrialState.FAIL and LOST_ATTR in trials[0].system_attrs
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == cut.number)
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == cut.params


SEARCH_FAULTS = [p for p in FAULTS.names() if "search" in FAULTS.meta(p)["where"]]


@pytest.mark.slow
def test_a_worker_killed_at_any_fault_point_leaves_exactly_n_trials(storage, tiny, fast, fast_tmp,
                                                                     fake_training, fork, ended,
                                                                     journal):
    """Per fault point, a worker (as ``ablate search``) dies there; then two more finish the
    study together (one of them takes the dead worker's slot over while the other runs). The
    study is tracked (the ``journal`` sink): one finished tracker run per trained variant, and
    a trial lost mid-training leaves its tracker run killed."""
    results, cache = fast_tmp / "results", fast_tmp / "cache"
    specs = {p: parse_search(tiny(**{**POOL, "study": f"fault-{p}"}, trials=2,
                                  train={**tiny()["train"], "epochs": 2}, tracking=["journal"]))
             for p in SEARCH_FAULTS}
    load_dataset(specs["epoch-end"].data_spec, cache)  # decoded once, before any fork

    def start(point: str, fault: str | None, report: bool, go: Path | None = None) -> int:
        spec = specs[point]
        return fork(_search_worker(spec, storage(spec.name), results, cache, fast, report, go),
                    fault)

    victims = {p: start(p, fault=p, report=True) for p in specs}
    assert {p: ended(pid) for p, pid in victims.items()} == dict.fromkeys(specs, "killed")
    time.sleep(fast["grace"])  # every victim's claims are stale now
    heirs = {p: [start(p, None, p == "runs-table", go=fast_tmp / "go") for _ in range(2)]
             for p in specs}
    (fast_tmp / "go").touch()
    assert {p: [ended(pid) for pid in pids] for p, pids in heirs.items()} == \
        dict.fromkeys(specs, ["exit 0", "exit 0"])
    for point, spec in specs.items():
        url = storage(spec.name)
        table = (pd.read_csv(results / spec.name / "trials.csv") if point == "runs-table" else
                 trials_table(optuna.load_study(study_name=spec.name,
                                                storage=open_store(url).optuna), spec))
        _check_search_ended_exactly(spec, url, fake_training(), table, f"killed at {point}")
        trained = [k.split(" ", 1)[1] for k in fake_training() if k.split()[0] == spec.name]
        entries = journal(results / spec.name, trained, point)
        if point == "epoch-end":
            assert entries[0]["id"] in {e["id"] for e in entries if e["call"] == "killed"}


@pytest.mark.slow
def test_four_workers_on_one_sqlite_study_never_take_a_trial_twice(tiny, fast, fast_tmp,
                                                                   fake_training, fork, ended,
                                                                   monkeypatch):
    """The pop race forced: queued trials and many instant trials, four workers, three times."""
    results, cache, handed = fast_tmp / "results", fast_tmp / "cache", fast_tmp / "handed.log"
    take = Ledger.take

    def spy(self, slot: str, owner: str):
        taken = take(self, slot, owner)
        if taken is None:  # this worker's slot was taken over: it took nothing
            return taken
        with open(handed, "a") as f:
            f.write(f"{self.study.study_name} {taken.trial.number} {os.getpid()}\n")
        return taken

    monkeypatch.setattr(Ledger, "take", spy)
    space = {"pool": ["M", "A", "MAA", "AAM"], "block": ["conv", "dsconv"],
             "upsample": ["bilinear", "nearest", "transpose"]}
    url = f"sqlite:///{fast_tmp / 'stress.db'}"
    for round_ in range(3):
        spec = parse_search(tiny(study=f"stress{round_}", space=space, trials=12))
        study = search.open_study(spec, open_store(url, **fast))
        for pool, block in [(p, b) for p in space["pool"] for b in space["block"]]:
            study.enqueue_trial({"pool": pool, "block": block, "upsample": "nearest"})
        load_dataset(spec.data_spec, cache)
        workers = [fork(_search_worker(spec, url, results, cache, fast)) for _ in range(4)]
        assert [ended(pid) for pid in workers] == ["exit 0"] * 4
        lines = [line.split() for line in handed.read_text().splitlines()]
        taken = Counter(n for name, n, _ in lines if name == spec.name)
        assert len(taken) >= 12 and set(taken.values()) == {1}, taken
        assert len({pid for name, _, pid in lines if name == spec.name}) > 1  # they did share
        table = trials_table(optuna.load_study(study_name=spec.name,
                                               storage=open_store(url).optuna), spec)
        _check_search_ended_exactly(spec, url, fake_training(), table, f"round {round_}")


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


def _study_made_elsewhere(url: str, raw: dict) -> None:
    """A study as ``ablate search`` on another machine leaves it: its file stored, and nothing
    of it imported here."""
    study = optuna.create_study(study_name=raw["study"], storage=open_store(url).optuna,
                                directions=["maximize", "minimize"])
    study.set_user_attr(search._SPEC_ATTR, json.dumps(raw))


def test_a_worker_joining_a_study_imports_its_plugins(good_plugin, tiny, fake_training):
    url = f"sqlite:///{good_plugin.parent / 'study.db'}"
    _study_made_elsewhere(url, tiny(plugins=[good_plugin.name], objectives="plug_fg,gmacs"))
    assert main(["worker", "--study", "tiny", "--storage", url, "--results", "res"]) == 0
    trials = optuna.load_study(study_name="tiny", storage=open_store(url).optuna).trials
    digest = hashlib.sha256(good_plugin.read_bytes()).hexdigest()[:12]
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2  # and a duplicate, skipped
    assert {t.user_attrs["plugins"] for t in trials} == {f"goodplug.py@sha256:{digest}"}
    assert sum(fake_training().values()) == 2  # plug_fg, the plugin's metric, was the objective


def test_a_worker_that_cannot_import_a_plugin_refuses_before_claiming(plugin_sandbox, tiny,
                                                                     capsys):
    url = f"sqlite:///{plugin_sandbox / 'study.db'}"
    _study_made_elsewhere(url, tiny(plugins=["plugin_not_here"]))
    assert main(["worker", "--study", "tiny", "--storage", url, "--results", "res"]) == 2
    assert "ablate: error: study tiny: plugins: plugin 'plugin_not_here': not found" in \
        capsys.readouterr().err
    store = open_store(url)
    assert optuna.load_study(study_name="tiny", storage=store.optuna).trials == []
    for kind in ("slots", "trials", "variants", "meta"):
        assert store.claims(f"search/tiny/{kind}").all() == {}
    assert not (plugin_sandbox / "res").exists()


def test_plugins_given_to_ablate_search_reach_workers_joining_its_study(good_plugin, tiny,
                                                                       fake_training):
    path, url = good_plugin.parent / "s.yaml", f"sqlite:///{good_plugin.parent / 'study.db'}"
    path.write_text(yaml.safe_dump(tiny(trials=1)))
    assert main(["search", str(path), "--plugin", "goodplug.py", "--storage", url,
                 "--results", "res"]) == 0
    assert search.load_study_spec("tiny", open_store(url)).plugins == ("goodplug.py",)


def test_track_given_to_ablate_search_logs_its_trials_and_is_stored_for_workers(
        tmp_path, monkeypatch, tiny, fake_training, journal):
    monkeypatch.chdir(tmp_path)
    path, url = tmp_path / "s.yaml", f"sqlite:///{tmp_path / 'study.db'}"
    path.write_text(yaml.safe_dump(tiny(trials=2)))
    assert main(["search", str(path), "--track", "journal", "--storage", url,
                 "--results", "res"]) == 0
    trained = [k.split(" ", 1)[1] for k in fake_training()]
    entries = journal(tmp_path / "res" / "tiny", trained)
    assert [e["call"] for e in entries].count("study") == 1  # the study run, with the report
    assert search.load_study_spec("tiny", open_store(url)).tracking == ("journal",)
