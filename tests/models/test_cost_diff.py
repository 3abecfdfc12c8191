"""Tests of ablate.models.cost_diff: per-module params and MACs, counted by hand, and totals that
reconcile with ``profile_model`` exactly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ablate import Variant, build_model, profile_model
from ablate.cli import main
from ablate.models.cost_diff import cost_diff, module_ledger, variant_cost_diff
from ablate.models.decoder import BLOCKS, FUSIONS, UPSAMPLES

SIZE = (3, 64, 64)
BASE = Variant()  # r18, widths 256,128,64,32, every skip (e3..e0), concat, conv block, bilinear
# resnet18 at 64x64: the deepest feature e4 (512 ch) at 1/32; stage i upsamples x2 and fuses
# (stage, upsampled channels, skip, skip channels, side of the stage's maps, stage width)
STAGES = ((0, 512, "e3", 256, 4, 256), (1, 256, "e2", 128, 8, 128),
          (2, 128, "e1", 64, 16, 64), (3, 64, "e0", 64, 32, 32))


def _rows(diff):
    return {r.module: r for r in diff.rows.itertuples(index=False)}


def _reconciles(diff, baseline_model, variant_model, size=SIZE):
    """The totals equal profile_model's params and macs_exact, and the rows sum to them."""
    before, after = profile_model(baseline_model, size), profile_model(variant_model, size)
    assert diff.params == (before.params, after.params)
    assert diff.macs == (before.macs_exact, after.macs_exact)
    assert diff.total == {"params_delta": after.params - before.params,
                          "macs_delta": after.macs_exact - before.macs_exact}
    assert diff.rows["params_delta"].sum() == diff.total["params_delta"]
    assert diff.rows["macs_delta"].sum() == diff.total["macs_delta"]


def test_add_fusion_adds_the_1x1_projections_and_narrows_the_first_block_conv():
    baseline, variant = build_model(BASE, 1), build_model(BASE.replace(fusion="add"), 1)
    diff = cost_diff(baseline, variant, SIZE)
    rows = _rows(diff)
    for stage, up, _, skip, side, width in STAGES:
        fuse = f"decoder.stages.{stage}.fuse"
        assert (rows[fuse].change, rows[fuse].type_baseline, rows[fuse].type_variant) == \
            ("changed", "Concat", "Add")
        assert (rows[fuse].params_delta, rows[fuse].macs_delta) == (0, 0)
        if skip == up:  # e0 already has the upsampled width: no projection
            assert rows[f"{fuse}.proj"].type_variant == "Identity"
            assert f"{fuse}.proj.0" not in rows
        else:  # a 1x1 conv without bias from skip to upsampled channels, then BN (2 per channel)
            conv, bn = rows[f"{fuse}.proj.0"], rows[f"{fuse}.proj.1"]
            assert (conv.change, conv.type_variant, conv.shape_variant) == \
                ("added", "Conv2d", f"{skip}->{up} 1x1")
            assert conv.params_delta == skip * up
            assert conv.macs_delta == skip * up * side * side
            assert (bn.change, bn.type_variant, bn.params_delta, bn.macs_delta) == \
                ("added", "BatchNorm2d", 2 * up, 0)
        # the block's first 3x3 conv reads `up` channels instead of `up + skip`
        block = rows[f"decoder.stages.{stage}.block.0"]
        assert (block.shape_baseline, block.shape_variant) == \
            (f"{up + skip}->{width} 3x3", f"{up}->{width} 3x3")
        assert block.params_delta == -skip * width * 9
        assert block.macs_delta == -skip * width * 9 * side * side
    assert diff.counts() == {"added": 10, "removed": 0, "changed": 8,
                             "unchanged": len(module_ledger(baseline, SIZE)) - 8}
    assert diff.rows.loc[0, "module"] == "decoder.stages.3.block.0"  # largest change first
    _reconciles(diff, baseline, variant)


def test_a_skip_drop_narrows_the_convs_that_read_the_dropped_skips():
    baseline, variant = build_model(BASE, 1), build_model(BASE.replace(skips="e2,e3"), 1)
    diff = cost_diff(baseline, variant, SIZE, labels=(BASE.id, "k23"))
    rows = _rows(diff)
    assert set(rows) == {"decoder.stages.2.fuse", "decoder.stages.3.fuse",
                         "decoder.stages.2.block.0", "decoder.stages.3.block.0"}
    for stage, up, _, skip, side, width in STAGES[2:]:  # e1 and e0 are dropped
        fuse, block = rows[f"decoder.stages.{stage}.fuse"], rows[f"decoder.stages.{stage}.block.0"]
        assert (fuse.change, fuse.type_baseline, fuse.params_delta) == ("removed", "Concat", 0)
        assert block.change == "changed"
        assert (block.shape_baseline, block.shape_variant) == \
            (f"{up + skip}->{width} 3x3", f"{up}->{width} 3x3")
        assert (block.params_baseline, block.params_variant) == \
            ((up + skip) * width * 9, up * width * 9)
        assert block.macs_delta == -skip * width * 9 * side * side
    # stage 3 at 32x32: -64*32*9*1024; stage 2 at 16x16: -64*64*9*256
    assert list(diff.rows["macs_delta"]) == [-18_874_368, -9_437_184, 0, 0]
    assert diff.total == {"params_delta": -(64 * 32 + 64 * 64) * 9,
                          "macs_delta": -18_874_368 - 9_437_184}
    _reconciles(diff, baseline, variant)


def test_a_model_against_itself_has_no_rows():
    model = build_model(Variant(widths=(8,)), 1)
    diff = cost_diff(model, model, (3, 32, 32))
    assert diff.rows.empty and diff.total == {"params_delta": 0, "macs_delta": 0}
    assert diff.unchanged == len(module_ledger(model, (3, 32, 32)))


class _Shared(nn.Module):
    """One conv registered twice and called twice; a linear layer whose weight another ties."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.again = self.conv
        self.head = nn.Linear(2 * 4 * 4, 3)
        self.tied = nn.Linear(2 * 4 * 4, 3)
        self.tied.weight = self.head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.again(self.conv(x)).flatten(1)
        return self.head(x) + self.tied(x)


def test_shared_modules_and_tensors_are_counted_once():
    ledger = module_ledger(_Shared(), (2, 4, 4)).set_index("module")
    assert "again" not in ledger.index  # listed under its first name only
    assert ledger.loc["conv", "params"] == 2 * 2 * 9
    assert ledger.loc["conv", "macs"] == 2 * (4 * 4 * 2 * 2 * 9)  # both calls
    assert ledger.loc["head", "params"] == 32 * 3 + 3
    assert ledger.loc["tied", "params"] == 3  # its weight is head's
    assert ledger.loc["tied", "macs"] == ledger.loc["head", "macs"] == 3 * 32
    prof = profile_model(_Shared(), (2, 4, 4))
    assert ledger["params"].sum() == prof.params and ledger["macs"].sum() == prof.macs_exact


@pytest.mark.slow
@pytest.mark.parametrize("knob, value", [("fusion", v) for v in FUSIONS.names()]
                         + [("block", v) for v in BLOCKS.names()]
                         + [("upsample", v) for v in UPSAMPLES.names()]
                         + [("pool", "MAA"), ("skips", "none")])
def test_every_knob_value_reconciles_with_the_profile(knob, value):
    """The ledger of every registered value sums to profile_model's params and macs_exact (so
    any diff of two of them reconciles)."""
    variant = BASE.replace(widths=(16, 8, 8, 8)).replace(**{knob: value})
    model, size = build_model(variant, 1), (3, 32, 32)
    ledger, prof = module_ledger(model, size), profile_model(model, size)
    assert (ledger["params"].sum(), ledger["macs"].sum()) == (prof.params, prof.macs_exact)
    diff = variant_cost_diff(BASE.replace(widths=(16, 8, 8, 8)), variant, size)
    assert diff.params[1] == prof.params and diff.macs[1] == prof.macs_exact


@pytest.mark.slow
def test_cli_prints_the_diff_largest_first_with_units_and_totals(capsys):
    args = ["profile", "--fusion", "add", "--input-size", "64", "--diff", BASE.id]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"where it costs against {BASE.id}" in out and "one 3x64x64 input" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Change"))
    assert "Δ params" in lines[header] and "Δ MACs (3x64x64)" in lines[header]
    assert lines[header + 2].split()[:2] == ["changed", "decoder.stages.3.block.0"]
    assert "Conv2d(256->512 1x1)" in out and "+131,072" in out and "+2,097,152" in out
    assert lines[-1].startswith("total: Δ params -618,752 (14,321,121 -> 13,702,369); "
                                "Δ MACs -40,894,464 (308,510,720 -> 267,616,256")
    assert main(args + ["--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["diff"]["params"][1] == row["params"]
    assert row["diff"]["macs"][1] == row["macs_exact"]
    assert row["diff"]["params_delta"] == sum(r["params_delta"] for r in row["diff"]["rows"])


def test_cli_refuses_an_unknown_baseline_id_naming_it(capsys):
    assert main(["profile", "--input-size", "32", "--diff", "r18-nope"]) == 2
    err = capsys.readouterr().err
    assert "--diff 'r18-nope' is not a variant id" in err
