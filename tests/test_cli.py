import json
import subprocess
import sys

import pytest

from ablate import cli
from ablate.cli import PLUGIN_COMMANDS, build_parser, main
from ablate.common.plugins import loaded
from ablate.evaluation.metrics import METRICS
from ablate.training.losses import LOSSES


def test_knobs_lists_every_knob(capsys):
    assert main(["knobs"]) == 0
    out = capsys.readouterr().out
    for knob in ("encoder", "pool", "widths", "skips", "fusion", "block", "upsample", "pretrained"):
        assert f"{knob}  (default:" in out
    assert main(["knobs", "--json", "pool"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["default"] == "M"


def test_knobs_encoder_shows_each_encoders_skips_and_strides(capsys):
    assert main(["knobs", "encoder"]) == 0
    out = capsys.readouterr().out
    assert "resnet50 (r50): e0 1/2, e1 1/4, e2 1/8, e3 1/16; e4 1/32 feeds the decoder" in out
    assert "unet (unet): e0 1/1, e1 1/2, e2 1/4, e3 1/8; e4 1/16 feeds the decoder" in out
    assert "timm-<name> (token timm.<name>)" in out
    assert "timm-convnext_tiny (timm.convnext_tiny): e0 1/4, e1 1/8, e2 1/16; e3 1/32" in out


def test_profile_json_row(capsys):
    args = ["profile", "--variant", "r18-MAA-w16.8-k23-cat-ds-bil", "--pool", "AAM",
            "--input-size", "64", "--json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["variant"] == "r18-AAM-w16.8-k23-cat-ds-bil"
    assert row["profile_input"] == "3x64x64" and row["params"] > 11_000_000


def test_profile_any_encoder_with_its_own_defaults(capsys):
    args = ["profile", "--encoder", "timm-convnext_atto", "--widths", "16,8", "--input-size",
            "64", "--json"]
    assert main(args) == 0  # skips: all of the convnext's that two stages reach (e2, e1)
    row = json.loads(capsys.readouterr().out)
    assert row["variant"] == "timm.convnext_atto-M-w16.8-k12-cat-cv-bil"


def test_profile_from_yaml(tmp_path, capsys):
    path = tmp_path / "v.yaml"
    path.write_text("pool: MAA\nwidths: [16, 8]\nskips: [e2, e3]\n")
    assert main(["profile", "--variant-file", str(path), "--input-size", "32"]) == 0
    assert "r18-MAA-w16.8-k23-cat-cv-bil" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["profile", "--pool", "MXA"], "pool='MXA' is not allowed"),
    (["profile", "--widths", "1,2,3,4,5,6"], "6 stages"),
    (["profile", "--skips", "e7"], "unknown skip 'e7'"),
    (["profile", "--encoder", "vgg"], "allowed: resnet18, resnet34, resnet50, timm-<name>"),
    (["profile", "--encoder", "unet", "--pool", "MAA"], "unet has no pool points"),
    (["profile", "--input-size", "3x4x5x6"], "--input-size"),
    (["profile", "--variant-file", "missing.yaml"], "no such file"),
])
def test_bad_input_exits_2_with_message(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error:") and message in err


@pytest.mark.slow
@pytest.mark.parametrize("module", ["ablate", "ablate.cli"])
def test_console_script_has_no_traceback(module):
    """``python -m ablate`` is the ``ablate`` command, as ``python -m ablate.cli`` is."""
    proc = subprocess.run([sys.executable, "-m", module, "profile", "--widths", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "widths='0' is not allowed" in proc.stderr


def test_worker_needs_exactly_one_thing_to_work_on(capsys):
    assert main(["worker"]) == 2
    assert "give one of: a search file, --study NAME, or --experiment FILE" in \
        capsys.readouterr().err


@pytest.mark.parametrize("command", PLUGIN_COMMANDS)
def test_every_command_that_builds_variants_or_reads_files_takes_plugins(command):
    given = {"run": ["e.yaml"], "report": ["e.yaml"], "search": ["s.yaml"],
             "launch": ["slurm", "e.yaml"]}.get(command, [])
    args = build_parser().parse_args([command, *given, "--plugin", "a", "--plugin", "b.py"])
    assert args.plugin == ["a", "b.py"]


@pytest.mark.parametrize("command", [["knobs"], ["profile", "--input-size", "32"],
                                     ["report", "e.yaml"], ["worker", "--study", "s"]])
@pytest.mark.parametrize("files, plugin, message", [
    ({}, "nowhere", "--plugin: plugin 'nowhere': not found: no module named 'nowhere'"),
    ({"boom.py": "import os\nraise RuntimeError('no GPU here')\n"}, "boom.py",
     "--plugin: plugin 'boom.py': error inside the module ({dir}/boom.py, line 2): "
     "RuntimeError: no GPU here"),
    ({"dupplug.py": "from ablate.training.losses import LOSSES, dice\n\n"
                    "LOSSES.register('dice')(dice)\n"}, "dupplug",
     "--plugin: plugin 'dupplug': loss 'dice' is already registered ({dir}/dupplug.py, line 3)"),
])
def test_a_broken_plugin_exits_2_naming_the_module_and_the_name(plugin_sandbox, capsys, command,
                                                                 files, plugin, message):
    for name, text in files.items():
        (plugin_sandbox / name).write_text(text)
    assert main([*command, "--plugin", plugin]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ablate: error: ") and message.format(dir=plugin_sandbox) in err
    assert "Traceback" not in err


def test_plugins_are_imported_before_the_command_line_is_read(good_plugin, monkeypatch, capsys):
    """Before the parser is built from the registries: a plugin's knob would have its flag."""
    seen, build = [], cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: seen.append(loaded()) or build())
    assert main(["knobs", "--plugin", "goodplug.py", "--plugin", "goodplug", "pool"]) == 0
    assert seen == [loaded()] and [i.name for i in loaded()] == ["goodplug.py"]  # once
    assert "plug_dice" in LOSSES and "plug_fg" in METRICS


def test_decoder_axes_on_the_command_line(capsys):
    args = ["profile", "--norm", "gn", "--act", "silu", "--attention", "scse",
            "--deep-supervision", "on", "--widths", "16,8", "--input-size", "64", "--json"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["variant"] == "r18-M-w16.8-k23-cat-cv-bil-gn-silu-scse-dsv"
    assert row["profile_note"].startswith("deep supervision: 1 auxiliary 1x1 heads")
    assert main(["knobs", "norm"]) == 0
    out = capsys.readouterr().out
    assert "gn (gn): GroupNorm, groups = the largest divisor of the width not above 32" in out
    assert "none (nx): no normalisation; the convolutions keep their bias" in out
    assert main(["profile", "--attention", "cbam"]) == 2
    assert "attention='cbam' is not allowed; allowed: gate, none, scse" in capsys.readouterr().err
