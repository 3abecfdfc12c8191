"""Tests of ablate.distributed: redaction, atomic claims, and real worker processes sharing a
storage (SQLite, a journal file, PostgreSQL): exactly N trials, SIGKILL, a grid run once."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from ablate.cli import main
from ablate.scale import distributed
from ablate.scale.distributed import journal_path, open_store, redact
from ablate.scale.search import load_search, trials_table, write_search_report

HEARTBEAT = ["--heartbeat", "1", "--grace", "4"]
TRAIN = {"epochs": 1, "image_size": 32, "batch_size": 8, "samples": 0, "threads": 1}
DATASET = {"name": "shapes", "options": {"n_train": 16, "n_val": 8}}
SEARCH = {
    "study": "pool",
    "dataset": DATASET,
    "preset": "quick",
    "train": TRAIN,
    "baseline": {"widths": [16, 8, 8, 8]},
    "space": {"pool": ["M", "MAA", "AAM"], "block": ["conv", "dsconv"]},
    "objectives": "dice,gmacs",
    "sampler": "random",
    "profile_size": 32,
}


def test_redact_hides_passwords_and_nothing_else():
    assert redact("postgresql+psycopg://ablate:s3cret@db.lan:5432/studies") == \
        "postgresql+psycopg://ablate:***@db.lan:5432/studies"
    assert redact("postgresql://ablate@db.lan/studies") == "postgresql://ablate@db.lan/studies"
    assert redact("sqlite:///results/x/study.db") == "sqlite:///results/x/study.db"
    assert redact("journal:results/x/journal.log") == "journal:results/x/journal.log"
    assert "s3cret" not in redact("not a url s3cret")
    assert journal_path("journal:///abs/j.log") == Path("/abs/j.log")
    assert journal_path("journal:rel/j.log") == Path("rel/j.log")
    with pytest.raises(ValueError, match="allowed: journal:PATH"):
        journal_path("journal:")
    with pytest.raises(ValueError, match="heartbeat=0 is not allowed"):
        open_store("sqlite:///x.db", heartbeat=0)
    with pytest.raises(ValueError, match="grace=5 is not allowed with heartbeat=5"):
        open_store("sqlite:///x.db", heartbeat=5, grace=5)


def _urls(tmp_path: Path) -> dict[str, str]:
    return {"sqlite": f"sqlite:///{tmp_path / 'claims.db'}",
            "journal": f"journal:{tmp_path / 'journal.log'}"}


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_claims_are_exclusive_go_stale_and_are_never_retaken_once_done(tmp_path, kind):
    claims = open_store(_urls(tmp_path)[kind], heartbeat=1).claims("unit")
    claims.grace = 0.5
    assert claims.claim("a", "w1") and claims.claim("a", "w1")  # re-entrant
    assert not claims.claim("a", "w2")
    assert claims.claim("a", "w3", takeover="w1")  # a retry takes its predecessor's hold
    assert not claims.beat("a", "w1") and claims.beat("a", "w3")
    time.sleep(0.7)
    assert claims.all()["a"].stale
    assert claims.claim("a", "w2")  # stale: taken over
    assert not claims.finish("a", "w3")
    assert claims.finish("a", "w2", '{"dice": 1}')
    assert not claims.claim("a", "w4") and not claims.claim("a", "w2")
    held = claims.all()["a"]
    assert (held.state, held.owner, held.result, held.stale) == ("done", "w2", '{"dice": 1}', False)
    assert claims.claim("b", "w1")
    claims.release("b", "w1")
    assert claims.claim("b", "w2")
    assert set(open_store(_urls(tmp_path)[kind]).claims("other").all()) == set()


RACE = """
import json, random, sys, time
from pathlib import Path
from ablate.scale.distributed import open_store
barrier, me, n, urls = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
stores = [open_store(url).claims("race") for url in urls]
keys = [str(i) for i in range(n)]
random.Random(me).shuffle(keys)  # different orders: the processes collide on many keys
won = []
for b, claims in enumerate(stores):
    (barrier / f"{b}-{me}").touch()
    while len(list(barrier.glob(f"{b}-*"))) < 2:  # start each race together
        time.sleep(0.001)
    won.append([k for k in keys if claims.claim(k, me)])
print(json.dumps(won))
"""


def test_two_processes_racing_for_the_same_keys_never_both_win(tmp_path):
    urls, n = list(_urls(tmp_path).values()), 30
    for url in urls:
        open_store(url).claims("race").all()  # create the table before the race
    (tmp_path / "barrier").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "barrier"), f"w{i}",
                               str(n), *urls], stdout=subprocess.PIPE, text=True)
             for i in range(2)]
    won = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    for b, url in enumerate(urls):
        first, second = set(won[0][b]), set(won[1][b])
        assert not first & second and first | second == {str(i) for i in range(n)}, url
        owners = {k: c.owner for k, c in open_store(url).claims("race").all().items()}
        assert owners == {k: f"w{i}" for i, keys in enumerate((first, second)) for k in keys}


def _worker(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablate.cli", "worker", *args,
                             "--results", str(tmp_path / "results"), *HEARTBEAT],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"worker failed:\n{out}\n{err}"
        outs.append(out + err)
    return outs


def _search_file(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump({**SEARCH, **changes}))
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


class _FlakyRDB:
    """Stands in for RDBStorage: raises ``errors`` one per call, then opens."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.calls = errors, 0

    def __call__(self, url, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return f"storage for {url}"


def _db_error(kind: type, message: str) -> Exception:
    return kind("CREATE TABLE alembic_version (...)", {}, Exception(message))


@pytest.mark.parametrize("kind, message", [
    (sa.exc.OperationalError, "table alembic_version already exists"),     # SQLite
    (sa.exc.ProgrammingError, 'relation "studies" already exists'),         # PostgreSQL
    (sa.exc.IntegrityError, "UNIQUE constraint failed: version_info.version_info_id"),
])
def test_workers_racing_to_create_a_new_database_retry(monkeypatch, tmp_path, kind, message):
    fake = _FlakyRDB([_db_error(kind, message)])
    monkeypatch.setattr(distributed, "RDBStorage", fake)
    monkeypatch.setattr(distributed.time, "sleep", lambda s: None)
    store = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    assert fake.calls == 2 and store.optuna == f"storage for sqlite:///{tmp_path / 'new.db'}"


def test_other_database_errors_are_refused_at_once_with_the_reason(monkeypatch, tmp_path):
    fake = _FlakyRDB([_db_error(sa.exc.OperationalError, "unable to open database file")] * 9)
    monkeypatch.setattr(distributed, "RDBStorage", fake)
    with pytest.raises(ValueError, match="cannot open storage .*: unable to open database file"):
        open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert fake.calls == 1


def test_worker_needs_exactly_one_thing_to_work_on(capsys):
    assert main(["worker"]) == 2
    assert "give one of: a search file, --study NAME, or --experiment FILE" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_two_workers_on_sqlite_finish_exactly_n_trials_without_duplicates(tmp_path):
    path = _search_file(tmp_path, trials=3)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = _worker(tmp_path, str(path), "--storage", url)
    store, deadline = open_store(url), time.time() + 120
    while "pool" not in optuna.get_all_study_names(store.optuna):
        assert time.time() < deadline and first.poll() is None, "the study was never created"
        time.sleep(0.1)
    joiner = _worker(tmp_path, "--study", "pool", "--storage", url)  # settings from the study
    _finish([first, joiner])
    trials = _check_study(load_search(path), url, 3)
    ended = Counter(t.user_attrs.get("status") for t in trials)
    assert set(ended) <= {"ok", "skipped"} and ended["ok"] == 3
    skipped = [t.user_attrs["error"] for t in trials if t.user_attrs.get("status") == "skipped"]
    assert all(e.startswith("duplicate: trial ") for e in skipped)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_nothing(tmp_path):
    path = _search_file(tmp_path, trials=2)
    spec = load_search(path)
    url = f"journal:{tmp_path / 'journal.log'}"
    first = _worker(tmp_path, str(path), "--storage", url)
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
    _finish([_worker(tmp_path, str(path), "--storage", url)])
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


@pytest.mark.slow
def test_two_grid_workers_run_every_cell_exactly_once(tmp_path):
    exp = tmp_path / "grid.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "grid", "dataset": DATASET, "preset": "quick", "train": TRAIN,
        "seeds": [0, 1], "baseline": {"widths": [16, 8, 8, 8]},
        "variants": [{"pool": "MAA"}], "profile_size": 32}))
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    outs = _finish([_worker(tmp_path, "--experiment", str(exp), "--storage", url)
                    for _ in range(2)])
    ran = [line.split(": ")[0] for out in outs for line in out.splitlines()
           if line.startswith("ran ")]
    cells = [f"ran {v} seed {s}" for v in ("r18-M-w16.8.8.8-k0123-cat-cv-bil",
                                           "r18-MAA-w16.8.8.8-k0123-cat-cv-bil") for s in (0, 1)]
    assert sorted(ran) == sorted(cells)  # each cell once, over both workers
    runs = pd.read_csv(tmp_path / "results" / "grid" / "runs.csv")
    assert len(runs) == 4 and (runs["status"] == "ok").all()
    assert runs[["variant", "seed"]].drop_duplicates().shape[0] == 4


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
def test_two_workers_on_postgresql_and_no_password_in_any_output(tmp_path, postgres_url):
    path = _search_file(tmp_path, trials=2)
    spec = load_search(path)
    outs = _finish([_worker(tmp_path, str(path), "--storage", postgres_url) for _ in range(2)])
    _check_study(spec, postgres_url, 2)
    assert all("postgresql+psycopg://ablate:***@127.0.0.1" in out for out in outs)
    report = write_search_report(spec, open_store(postgres_url), tmp_path / "results")
    assert "ablate:***@127.0.0.1" in report.read_text()
    texts = [*outs, *(p.read_text(errors="ignore") for p in (tmp_path / "results").rglob("*")
                      if p.is_file() and p.suffix in (".md", ".csv", ".json", ".tex"))]
    assert not [t for t in texts if "s3cret-pw" in t]
