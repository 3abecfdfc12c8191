"""Tests of ablate.analysis.costs: the report's per-module cost diffs, rebuilt from a runs table
whose params and MACs come from ``profile_model`` (an independent route)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ablate import Variant, build_model, profile_model
from ablate.analysis import costs
from ablate.analysis.costs import cost_section
from ablate.analysis.report import write_report

SIZE = (3, 32, 32)
OUTPUTS = 3  # not in the runs table: the section finds it from the baseline's params
BASE = Variant(widths=(16, 8))  # r18, skips e3 and e2
ADD = BASE.replace(fusion="add")
K3 = BASE.replace(skips="e3")


def _profiled(variant: Variant, seed: int = 0, **extra) -> dict:
    prof = profile_model(build_model(variant, OUTPUTS, SIZE[0]), SIZE)
    return dict(experiment="costs", variant=variant.id, seed=seed, status="ok", error="",
                params=prof.params, macs_exact=prof.macs_exact, gmacs_thop=prof.gmacs_thop,
                params_m=prof.params_m, profile_input="3x32x32", **extra)


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return pd.DataFrame([_profiled(v) for v in (BASE, ADD, K3)])


def _section(lines: list[str], variant: str) -> list[str]:
    lines = "\n".join(lines).splitlines()  # a table is one item
    start = lines.index(f"### `{variant}`")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return lines[start + 1:end]


def _column_sum(table_lines: list[str], column: int) -> int:
    cells = [line.split("|")[column + 1].strip() for line in table_lines[2:]]
    return sum(int(c.replace(",", "")) for c in cells)


def test_each_variant_has_its_largest_changes_and_totals_matching_the_rows(tmp_path, runs,
                                                                          monkeypatch):
    monkeypatch.setattr(costs, "MAX_ROWS", 3)
    lines = cost_section(tmp_path, runs, BASE.id)
    assert lines[0] == "## Where each variant costs"
    assert "3 output channel(s)" in lines[2] and "one 3x32x32 input" in lines[2]
    row = runs.set_index("variant")
    for variant in (ADD, K3):
        body = _section(lines, variant.id)
        table = [line for line in body if line.startswith("|")]
        d_params = int(row.loc[variant.id, "params"] - row.loc[BASE.id, "params"])
        d_macs = int(row.loc[variant.id, "macs_exact"] - row.loc[BASE.id, "macs_exact"])
        # the shown rows plus the "more modules" line add up to the runs table's deltas
        assert _column_sum(table, 4) == d_params and _column_sum(table, 5) == d_macs
        total = next(line for line in body if line.startswith("**Total"))
        assert total.startswith(f"**Total: Δ params {d_params:+,}** (")
        assert f"**Δ MACs {d_macs:+,}**" in total
    add_table = [line for line in _section(lines, ADD.id) if line.startswith("|")]
    assert len(add_table) == 2 + 3 + 1 and "more modules" in add_table[-1]
    # the skip drop: stage 1's first conv reads stage 0's 16 channels, no longer + e2's 128
    k3 = "\n".join(_section(lines, K3.id))
    assert "Conv2d(144->8 3x3)" in k3 and "Conv2d(16->8 3x3)" in k3
    assert f"{-128 * 8 * 9:+,}" in k3 and f"{-128 * 8 * 9 * 4 * 4:+,}" in k3  # e2: 4x4
    table = pd.read_csv(tmp_path / costs.FILE)
    sums = table.groupby("variant")[["params_delta", "macs_delta"]].sum()
    for variant in (ADD, K3):
        assert sums.loc[variant.id, "params_delta"] == \
            row.loc[variant.id, "params"] - row.loc[BASE.id, "params"]
    assert set(table["baseline"]) == {BASE.id}


def test_a_row_that_no_longer_matches_its_model_is_said_so(tmp_path, runs):
    stale = runs.copy()
    stale.loc[stale["variant"] == ADD.id, "macs_exact"] += 1
    lines = cost_section(tmp_path, stale, BASE.id)
    assert _section(lines, ADD.id)[1].startswith(f"Not computed: {ADD.id} rebuilt has ")
    assert "(the code changed since the run?)" in _section(lines, ADD.id)[1]
    assert any(line.startswith("**Total") for line in _section(lines, K3.id))


@pytest.mark.slow
def test_what_cannot_be_diffed_is_named(tmp_path, runs, monkeypatch):
    assert cost_section(tmp_path, runs.drop(columns="profile_input"), BASE.id)[2] == \
        "Not computed: the runs table has no profile_input column."
    failed = runs.assign(params=np.where(runs["variant"] == BASE.id, np.nan, runs["params"]))
    assert cost_section(tmp_path, failed, BASE.id)[2] == \
        f"Not computed: the baseline {BASE.id} has no profiled run."
    odd = pd.concat([runs, runs.iloc[[1]].assign(variant="r18-odd")], ignore_index=True)
    assert _section(cost_section(tmp_path, odd, BASE.id), "r18-odd")[1].startswith(
        "Not computed: variant id 'r18-odd' does not have")
    monkeypatch.setattr(costs, "MAX_VARIANTS", 1)
    capped = cost_section(tmp_path, runs, BASE.id)
    assert f"### `{ADD.id}`" in capped and f"### `{K3.id}`" not in capped
    assert capped[-2].startswith("1 more variants are not diffed here (at most 1); for one of "
                                 "them: `ablate profile --variant ID --input-size 3x32x32 "
                                 f"--num-classes 3 --diff {BASE.id}`")
    only = runs[runs["variant"] == BASE.id]
    assert cost_section(tmp_path, only, BASE.id)[2] == \
        "Only the baseline was profiled: nothing to compare."


@pytest.mark.slow
def test_the_report_has_the_section_before_the_figures(tmp_path, runs):
    table = pd.concat([runs.assign(seed=s, dataset="shapes",
                                   dice=[0.8 + 0.01 * s + 0.002 * i ** s for i in range(3)])
                       for s in range(2)], ignore_index=True)
    text = write_report(tmp_path, table, BASE.id).read_text()
    assert text.index("## Where each variant costs") < text.index("## Figures")
    assert f"### `{ADD.id}`" in text and f"### `{K3.id}`" in text
    assert (tmp_path / costs.FILE).is_file()
