"""Asking for sinks: names checked against the registry and the installed packages, before any
training, with exit 2 and the extra to install."""

from __future__ import annotations

import pytest

from ablate.cli import main
from ablate.experiment import parse_experiment
from ablate.tracking import sinks
from ablate.tracking.sinks import SINKS, Sink, check_sinks, register_sink, sinks_markdown

EXP = """\
name: t
dataset: {name: shapes, options: {n_train: 16, n_val: 8}}
train: {epochs: 1, image_size: 32, batch_size: 8, device: cpu}
baseline: {widths: [16, 8, 8, 8]}
tracking: %s
"""


def test_built_in_sinks_and_their_extra():
    assert {"tensorboard", "mlflow", "wandb"} <= set(SINKS.names())
    assert all(SINKS.meta(n)["extra"] == "track" for n in ("tensorboard", "mlflow", "wandb"))
    assert "`mlflow`" in sinks_markdown()


def test_unknown_or_malformed_names_are_refused_with_what_is_allowed():
    with pytest.raises(ValueError, match=r"tracking='nope' is not allowed; allowed: .*mlflow"):
        check_sinks(["nope"])
    with pytest.raises(ValueError, match="expected a list of sink names"):
        check_sinks("mlflow")
    assert check_sinks(["mlflow", "mlflow"]) == ("mlflow",)


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(sinks, "missing_modules", lambda name: ["wandb"] * (name == "wandb"))
    with pytest.raises(ValueError, match=r"needs wandb.*pip install 'ablate\[track\]'"):
        check_sinks(["tensorboard", "wandb"])


def test_a_plugin_adds_a_sink_with_one_registration():
    @register_sink("mine", requires=("json",), extra="mine", help="a test sink")
    class Mine(Sink):
        pass

    try:
        assert check_sinks(["mine"]) == ("mine",)
        exp = parse_experiment({"tracking": ["mine"]})
        assert exp.tracking == ("mine",)
    finally:
        SINKS.unregister("mine")


def test_the_cli_refuses_bad_sinks_with_exit_2_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "t.yaml"
    path.write_text(EXP % "[nope]")
    assert main(["run", str(path), "--results", "res"]) == 2
    assert "t.yaml: tracking: tracking='nope' is not allowed" in capsys.readouterr().err
    path.write_text(EXP % "[]")
    assert main(["run", str(path), "--results", "res", "--track", "bogus"]) == 2
    assert "--track: tracking='bogus' is not allowed" in capsys.readouterr().err
    monkeypatch.setattr(sinks, "missing_modules", lambda name: [name])
    assert main(["run", str(path), "--results", "res", "--track", "mlflow"]) == 2
    assert "pip install 'ablate[track]'" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()  # refused before anything ran


def test_defaults_stay_local_unless_the_user_configured_a_tracker(tmp_path, monkeypatch):
    from ablate.tracking.mlflow import tracking_uri
    from ablate.tracking.wandb import WandbSink

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    sink = WandbSink(tmp_path, "exp")
    assert (sink.mode, sink.project) == ("offline", "exp")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    monkeypatch.setenv("WANDB_MODE", "online")
    assert tracking_uri(tmp_path) == "http://tracker:5000"
    assert WandbSink(tmp_path, "exp").mode == "online"
