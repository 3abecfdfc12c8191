"""Fixtures shared by the tests of ``ablate.runner``, ``ablate.scale`` and ``ablate.tracking``:
an experiment with adaptive seeds whose cells write made-up rows instead of training, plugins,
and a tracking sink that journals its calls."""

from __future__ import annotations

import copy
import json
import uuid
from collections import Counter

import pytest

#: Seeds 3 to 6 and a ±0.01 Dice margin over three variants of a tiny baseline.
ADAPTIVE = {"name": "adaptive", "dataset": {"name": "shapes"}, "preset": "quick",
            "seeds": {"min": 3, "max": 6}, "equivalence": {"dice": 0.01},
            "baseline": {"widths": [16, 8, 8, 8]},
            "variants": [{"pool": "MAA"}, {"pool": "AAM"}, {"pool": "MAM"}]}
#: Dice by pool over seeds 0-5: MAA far below the baseline (decided at the first look), AAM
#: level with it (equivalent within ±0.01 once the seeds pin it down), MAM noisy (undecided).
NOISE = [0.003, -0.002, 0.004, -0.003, 0.001, -0.001]
DICE = {"M": [0.80 + e for e in NOISE], "MAA": [0.60 + 0.9 * e for e in NOISE],
        "AAM": [0.80 + 1.1 * e for e in NOISE],
        "MAM": [0.80 + e + d for e, d in zip(NOISE, [0.03, -0.03, 0.02, -0.03, 0.03, -0.02])]}


@pytest.fixture
def adaptive_raw() -> dict:
    """The adaptive experiment as a mapping (as read from YAML)."""
    return copy.deepcopy(ADAPTIVE)


@pytest.fixture
def fake_cell():
    """A stand-in for ``ablate.runner.run_cell`` that writes a row with the made-up Dice."""
    from ablate.results import write_row
    from ablate.runner import base_row

    def cell(exp, variant, seed, data, out, key, *args, **kwargs):
        row = base_row(variant, seed, exp.name, exp.preset, exp.config)
        row.update(status="ok", dice=DICE[variant.pool][seed], run_key=key)
        write_row(out, row)
        return row
    return cell


@pytest.fixture
def plugin_sandbox(monkeypatch, tmp_path):
    """The working directory is ``tmp_path`` (write plugin files there), and every plugin the
    test imports is forgotten after it: the registries' entries, the plugin modules and
    ``ablate.common.plugins``' record are put back as they were."""
    import gc
    import importlib
    import sys

    from ablate.common import plugins
    from ablate.common.registry import Registry

    for name in ("ablate.cli", "ablate.runner", "ablate.scale.search", "ablate.scale.grid",
                 "ablate.scale.search_report", "ablate.analysis.report", "ablate.models.model",
                 "ablate.models.profile"):  # their registrations are made before the snapshot
        importlib.import_module(name)
    saved = [(r, dict(r._entries), dict(r._help), dict(r._meta))
             for r in gc.get_objects() if issubclass(type(r), Registry)]
    monkeypatch.setattr(plugins, "_BY_NAME", {})
    monkeypatch.setattr(plugins, "_BY_SOURCE", {})
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for registry, entries, help_, meta in saved:
        registry._entries, registry._help, registry._meta = entries, help_, meta
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(str(tmp_path)) or name.startswith("_ablate_plugin_"):
            del sys.modules[name]


#: A plugin with the package's own one-line registrations: a loss and a metric.
GOOD_PLUGIN = '''"""A test plugin: a loss and a metric."""
from ablate.evaluation.metrics import register_metric
from ablate.training.losses import LOSSES, dice


@LOSSES.register("plug_dice", tasks="binary, multi-class")
def plug_dice(num_classes, ignore_index):
    """soft Dice, from a plugin."""
    return dice(num_classes, ignore_index)


@register_metric("plug_fg", better="max", label="Predicted foreground",
                 definition="pixels predicted foreground / scored pixels")
def plug_fg(acc):
    return (acc.confusion[:, 1:].sum() / acc.confusion.sum()).item()
'''


@pytest.fixture
def good_plugin(plugin_sandbox):
    """``goodplug.py`` (``GOOD_PLUGIN``) in the sandbox's working directory; its path."""
    path = plugin_sandbox / "goodplug.py"
    path.write_text(GOOD_PLUGIN)
    return path


@pytest.fixture
def dup_plugin(plugin_sandbox):
    """``dupplug.py`` in the sandbox's working directory: it registers the loss ``dice`` again."""
    path = plugin_sandbox / "dupplug.py"
    path.write_text("from ablate.training.losses import LOSSES, dice\n\n"
                    "LOSSES.register('dice')(dice)\n")
    return path


class _Journal:
    """A tracking sink for tests: one JSON line per call in ``<exp_dir>/journal.jsonl`` (short
    appends, whole lines even from racing workers). Registered by the ``journal`` fixture."""

    def __init__(self, exp_dir, experiment):
        self.path = exp_dir / "journal.jsonl"

    def write(self, **entry):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def start(self, cell):
        run = _JournalRun(self, uuid.uuid4().hex, f"{cell.variant} seed{cell.seed}")
        self.write(call="start", id=run.id, cell=run.cell, attempt=cell.attempt)
        return run

    def mark_killed(self, run_id, cell):
        self.write(call="killed", id=run_id, cell=f"{cell.variant} seed{cell.seed}")

    def publish_variant(self, variant, knobs, values, tags):
        self.write(call="variant", variant=variant)

    def publish_study(self, summary, report, files):
        self.write(call="study")

    def where(self):
        return str(self.path)

    def close(self):
        pass


class _JournalRun:
    def __init__(self, sink, run_id, cell):
        self.sink, self.id, self.cell = sink, run_id, cell

    def log_epoch(self, epoch, values):
        self.sink.write(call="epoch", id=self.id, epoch=epoch)

    def finish(self, status, values, tags, files):
        self.sink.write(call="finish", id=self.id, cell=self.cell, status=status)


@pytest.fixture
def journal():
    """Registers the ``journal`` tracking sink (``_Journal``); returns ``check(exp_dir, cells)``,
    which asserts tracking's exactly-once promise on its file: one finished run per cell of
    ``cells`` ("<variant> seed<k>"), every other run started marked killed or ended, and
    returns the entries."""
    from ablate.tracking.sinks import SINKS, Sink, register_sink

    register_sink("journal", help="test sink")(type("Journal", (_Journal, Sink), {}))

    def check(exp_dir, cells, case=""):
        path = exp_dir / "journal.jsonl"
        entries = [json.loads(line) for line in path.read_text().splitlines()]
        finished = Counter(e["cell"] for e in entries
                           if e["call"] == "finish" and e["status"] == "finished")
        assert finished == Counter(dict.fromkeys(cells, 1)), f"{case}: {finished}"
        started = {e["id"] for e in entries if e["call"] == "start"}
        closed = {e["id"] for e in entries if e["call"] in ("finish", "killed")}
        assert started == closed, f"{case}: runs left open: {started - closed}"
        return entries

    yield check
    SINKS.unregister("journal")
