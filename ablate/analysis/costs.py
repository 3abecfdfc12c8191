"""The report's "Where each variant costs": per-module cost diffs of each variant from the
baseline (``ablate.models.cost_diff``), rebuilt from the runs table alone.

Nothing is trained: each variant's model is built untrained from its id (encoder weights not
loaded) at the runs' profile size (``profile_input``). The runs table does not keep the number
of model outputs, so it is the one for which the baseline's rebuilt params equal its row's
``params`` (params are affine in it). Each diff's totals are then checked against the rows'
``params`` and ``macs_exact``; a model that no longer matches its row (the code changed since the
run) is said so, not hidden.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..models.cost_diff import CostDiff, diff_ledgers, module_ledger
from ..models.model import build_model
from ..models.variant import Variant

TITLE = "Where each variant costs"
#: Modules listed per variant (the rest are summed on one line), and variants diffed at most.
MAX_ROWS = 10
MAX_VARIANTS = 40
FILE = "cost_diff.csv"


def cost_section(exp_dir: Path | str, runs: pd.DataFrame, baseline: str) -> list[str]:
    """Markdown lines of the section; writes every differing module of every variant to
    ``cost_diff.csv`` in ``exp_dir``."""
    lines = [f"## {TITLE}", ""]
    try:
        diffs, size, outputs = cost_diffs(runs, baseline)
    except ValueError as exc:
        return lines + [f"Not computed: {exc}.", ""]
    if not diffs:
        return lines + ["Only the baseline was profiled: nothing to compare.", ""]
    lines += [
        f"Where each variant's params and MACs differ from the baseline `{baseline}`, module by "
        "module (ablate.models.cost_diff): modules matched by qualified name are added, removed "
        "or changed. Params are each module's own (a shared tensor once); MACs are the exact "
        f"conv / transposed conv / linear multiply-accumulates for one {size} input, bias "
        "excluded (the runs table's `macs_exact`; thop's GMACs above also price BN and "
        "upsampling). Largest change first (the larger share of the baseline's params or "
        f"MACs), at most {MAX_ROWS} modules per variant and the rest summed on one line; the "
        "totals are the differences of the rows' `params` and `macs_exact`. Models rebuilt "
        f"untrained from the ids, {outputs} output channel(s). Every module: [{FILE}]({FILE}).",
        ""]
    others = [v for v in pd.unique(runs["variant"]) if v != baseline]
    frames = []
    for variant, diff in diffs.items():
        lines += [f"### `{variant}`", ""]
        if isinstance(diff, str):
            lines += [f"Not computed: {diff}.", ""]
            continue
        frames.append(diff.rows.assign(variant=variant, baseline=baseline))
        lines += _variant_lines(diff)
    if len(others) > len(diffs):
        lines += [f"{len(others) - len(diffs)} more variants are not diffed here (at most "
                  f"{MAX_VARIANTS}); for one of them: `ablate profile --variant ID --input-size "
                  f"{size} --num-classes {outputs} --diff {baseline}`.", ""]
    if frames:
        table = pd.concat(frames, ignore_index=True)
        first = ["variant", "baseline"]
        table[first + [c for c in table.columns if c not in first]].to_csv(
            Path(exp_dir) / FILE, index=False)
    return lines


def cost_diffs(runs: pd.DataFrame, baseline: str) -> tuple[dict[str, CostDiff | str], str, int]:
    """Each other variant's diff from ``baseline`` (or why not, as text; the first
    ``MAX_VARIANTS`` in the runs' order), the profile size and the number of model outputs; a
    ValueError says why none can be made."""
    missing = [c for c in ("variant", "params", "macs_exact", "profile_input")
               if c not in runs.columns]
    if missing:
        raise ValueError(f"the runs table has no {', '.join(missing)} column")
    profiled = runs[runs["params"].notna() & runs["macs_exact"].notna()
                    & runs["profile_input"].notna() & (runs["profile_input"].astype(str) != "")]
    rows = profiled.drop_duplicates("variant").set_index("variant")
    if baseline not in rows.index:
        raise ValueError(f"the baseline {baseline} has no profiled run")
    size = str(rows.loc[baseline, "profile_input"])
    input_size = _size(size)
    base = Variant.from_id(baseline)
    outputs = _outputs(base, input_size[0], int(rows.loc[baseline, "params"]))
    base_ledger = module_ledger(_model(base, outputs, input_size[0]), input_size)
    _check(base_ledger["params"].sum(), base_ledger["macs"].sum(), rows.loc[baseline], baseline)

    others = [v for v in pd.unique(runs["variant"]) if v != baseline]
    diffs: dict[str, CostDiff | str] = {}
    for name in others[:MAX_VARIANTS]:
        if name not in rows.index:
            diffs[name] = "no profiled run"
            continue
        if str(rows.loc[name, "profile_input"]) != size:
            diffs[name] = f"profiled at {rows.loc[name, 'profile_input']}, the baseline at {size}"
            continue
        try:
            model = _model(Variant.from_id(name), outputs, input_size[0])
            diff = diff_ledgers(base_ledger, module_ledger(model, input_size), input_size,
                                (baseline, name))
            _check(diff.params[1], diff.macs[1], rows.loc[name], name)
        except (ValueError, RuntimeError) as exc:
            diffs[name] = str(exc).rstrip(".")
            continue
        diffs[name] = diff
    return diffs, size, outputs


def _variant_lines(diff: CostDiff) -> list[str]:
    if diff.rows.empty:
        return ["No module differs: same params and MACs as the baseline.", ""]
    counts = diff.counts()
    table = diff.table(top=MAX_ROWS, tablefmt="pipe")
    return [table, "",
            f"**Total: Δ params {_signed(diff.total['params_delta'])}** ({diff.params[0]:,} → "
            f"{diff.params[1]:,}), **Δ MACs {_signed(diff.total['macs_delta'])}** "
            f"({diff.macs[0]:,} → {diff.macs[1]:,}); {counts['added']} modules added, "
            f"{counts['removed']} removed, {counts['changed']} changed, "
            f"{counts['unchanged']} unchanged.", ""]


def _size(text: str) -> tuple[int, ...]:
    try:
        size = tuple(int(s) for s in text.split("x"))
    except ValueError:
        size = ()
    if len(size) < 2 or min(size) <= 0:
        raise ValueError(f"profile_input {text!r} is not CxHxW")
    return size


def _model(variant: Variant, outputs: int, in_channels: int):
    return build_model(variant.replace(pretrained=None), outputs, in_channels)


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _outputs(baseline: Variant, in_channels: int, params: int) -> int:
    """The number of outputs k for which the baseline's params equal its row's."""
    one, two = (_params(_model(baseline, k, in_channels)) for k in (1, 2))
    extra, rest = divmod(params - one, two - one)
    if rest or extra < 0:
        raise ValueError(f"the baseline {baseline.id} rebuilt has {one:,} params with one output "
                         f"and {two - one:,} more per output; its row's {params:,} fits no "
                         "number of outputs (the code changed since the run?)")
    return 1 + extra


def _check(params: int, macs: int, row: pd.Series, name: str) -> None:
    """The rebuilt model's totals equal its row's, or a ValueError says how they differ."""
    if (int(params), int(macs)) != (int(row["params"]), int(row["macs_exact"])):
        raise ValueError(f"{name} rebuilt has {int(params):,} params and {int(macs):,} MACs, its "
                         f"row {int(row['params']):,} and {int(row['macs_exact']):,} (the code "
                         "changed since the run?)")


def _signed(value: int) -> str:
    return f"{int(value):+,}" if value else "0"

