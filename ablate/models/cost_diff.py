"""Where a change costs: a per-module ledger of params and MACs, and its diff between two models.

The ledger has one row per module of ``named_modules()`` (the root is ``""``; a module
registered under several names is listed once, under its first name):

    params  the module's OWN parameters (``parameters(recurse=False)``), a tensor shared by
            several modules counted once, for the first of them in ``named_modules`` order. So
            every parameter is counted exactly once and the column sums to the model's params,
            as ``profile_model`` counts them; a container (``Sequential``, a stage) owns none.
    macs    exact conv / transposed conv / linear multiply-accumulates of the module itself,
            summed over its calls, for ONE input of ``input_size``, bias excluded: the trace
            behind ``Profile.macs_exact`` (``ablate.models.profile.macs_by_module``), so the
            column sums to ``macs_exact``. Every other module (BN, pools, upsampling, the add of
            ``add`` fusion) costs 0 here, as in ``macs_exact``.

``cost_diff`` matches two ledgers by qualified name: a module only in the variant is ``added``,
only in the baseline ``removed``, in both with another type, configuration (``extra_repr``),
params or MACs ``changed``; the others are counted as unchanged. Each row's deltas are
variant - baseline, so the deltas over the rows sum EXACTLY to params(variant) -
params(baseline) and macs_exact(variant) - macs_exact(baseline) (``CostDiff.total``). Rows come
largest change first: by the larger of |Δ params| / params(baseline) and |Δ MACs| /
macs_exact(baseline), ties in module order.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate
from torch import nn

from .model import build_model
from .profile import macs_by_module
from .variant import Variant

#: Ledger columns: qualified name, class name, short configuration, own params, own MACs, and
#: the full ``extra_repr`` (compared to tell a changed module from an unchanged one).
LEDGER_COLUMNS = ("module", "type", "shape", "params", "macs", "config")
#: Diff columns (``_baseline`` / ``_variant`` are empty / 0 for an added / removed module).
DIFF_COLUMNS = ("module", "change", "type_baseline", "type_variant", "shape_baseline",
                "shape_variant", "params_baseline", "params_variant", "params_delta",
                "macs_baseline", "macs_variant", "macs_delta")
CHANGES = ("added", "removed", "changed")


def module_ledger(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224)) -> pd.DataFrame:
    """One row per module of ``model`` (see the module docstring for what each module owns)."""
    macs = macs_by_module(model, input_size)
    seen: set[int] = set()
    rows = []
    for name, module in model.named_modules():
        own = 0
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                own += p.numel()
        rows.append((name, type(module).__name__, _shape(module), own, macs.get(name, 0),
                     module.extra_repr()))
    return pd.DataFrame(rows, columns=list(LEDGER_COLUMNS))


@dataclass(frozen=True, eq=False)
class CostDiff:
    """The per-module difference of a variant from a baseline at one input size.

    ``rows``: the added, removed and changed modules (``DIFF_COLUMNS``), largest change first;
    ``unchanged``: how many modules are the same; ``params`` / ``macs``: the (baseline,
    variant) totals, which the rows' deltas reconcile with exactly (checked when made).
    """

    baseline: str
    variant: str
    input_size: tuple[int, ...]
    rows: pd.DataFrame
    unchanged: int
    params: tuple[int, int]
    macs: tuple[int, int]

    def __post_init__(self) -> None:
        for unit, (before, after) in (("params", self.params), ("macs", self.macs)):
            summed = int(self.rows[f"{unit}_delta"].sum())
            if summed != after - before:
                raise RuntimeError(f"cost diff of {self.variant} vs {self.baseline}: {unit} "
                                   f"deltas sum to {summed}, totals differ by {after - before}")

    @property
    def total(self) -> dict[str, int]:
        """Δ params and Δ MACs (variant - baseline), = the sums of the rows' deltas."""
        return {"params_delta": self.params[1] - self.params[0],
                "macs_delta": self.macs[1] - self.macs[0]}

    def counts(self) -> dict[str, int]:
        """How many modules were added, removed, changed and left unchanged."""
        counts = self.rows["change"].value_counts()
        return {**{c: int(counts.get(c, 0)) for c in CHANGES}, "unchanged": self.unchanged}

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "variant": self.variant,
                "input_size": list(self.input_size), "params": list(self.params),
                "macs": list(self.macs), **self.total, **self.counts(),
                "rows": self.rows.to_dict("records")}

    def table(self, top: int | None = None, tablefmt: str = "simple") -> str:
        """The rows as a text table (at most ``top``, the rest summed on one line)."""
        shown = self.rows if top is None else self.rows.iloc[:top]
        body = [[r.change, r.module or "(model)", _label(r.type_baseline, r.shape_baseline),
                 _label(r.type_variant, r.shape_variant), _signed(r.params_delta),
                 _signed(r.macs_delta)] for r in shown.itertuples(index=False)]
        rest = self.rows.iloc[len(shown):]
        if len(rest):
            body.append(["", f"{len(rest)} more modules", "", "",
                         _signed(rest["params_delta"].sum()), _signed(rest["macs_delta"].sum())])
        headers = ["Change", "Module", "Baseline", "Variant", "Δ params",
                   f"Δ MACs ({self.size})"]
        return tabulate(body, headers, tablefmt=tablefmt, disable_numparse=True,
                        colalign=("left", "left", "left", "left", "right", "right"))

    @property
    def size(self) -> str:
        return "x".join(map(str, self.input_size))

    def summary(self) -> str:
        """The totals line: Δ params and Δ MACs with both totals and the module counts."""
        counts = self.counts()
        return (f"total: Δ params {_signed(self.total['params_delta'])} "
                f"({self.params[0]:,} -> {self.params[1]:,}); Δ MACs "
                f"{_signed(self.total['macs_delta'])} ({self.macs[0]:,} -> {self.macs[1]:,}, "
                f"exact conv + linear, bias excluded, one {self.size} input); "
                f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} "
                f"changed, {counts['unchanged']} unchanged modules")


def diff_ledgers(baseline: pd.DataFrame, variant: pd.DataFrame, input_size: tuple[int, ...],
                 labels: tuple[str, str] = ("baseline", "variant")) -> CostDiff:
    """Diff two ledgers of ``module_ledger`` made at ``input_size`` (see the module docstring)."""
    base = baseline.set_index("module")
    rows, unchanged = [], 0
    in_variant = set(variant["module"])
    # variant order, each removed module right after the baseline module that preceded it
    order = list(variant["module"])
    for i, name in enumerate(baseline["module"]):
        if name not in in_variant:
            before = baseline["module"].iloc[i - 1] if i else None
            order.insert(order.index(before) + 1 if before in order else len(order), name)
    var = variant.set_index("module")
    for name in order:
        b = base.loc[name] if name in base.index else None
        v = var.loc[name] if name in var.index else None
        if b is not None and v is not None and all(
                b[c] == v[c] for c in ("type", "params", "macs", "config")):
            unchanged += 1
            continue
        change = "added" if b is None else "removed" if v is None else "changed"
        pb, pv = (int(x["params"]) if x is not None else 0 for x in (b, v))
        mb, mv = (int(x["macs"]) if x is not None else 0 for x in (b, v))
        rows.append((name, change, *((x["type"] if x is not None else "") for x in (b, v)),
                     *((x["shape"] if x is not None else "") for x in (b, v)),
                     pb, pv, pv - pb, mb, mv, mv - mb))
    table = pd.DataFrame(rows, columns=list(DIFF_COLUMNS))
    params = (int(baseline["params"].sum()), int(variant["params"].sum()))
    macs = (int(baseline["macs"].sum()), int(variant["macs"].sum()))
    share = (table["params_delta"].abs() / max(params[0], 1)).combine(
        table["macs_delta"].abs() / max(macs[0], 1), max)
    table = table.iloc[share.sort_values(ascending=False, kind="stable").index]
    return CostDiff(labels[0], labels[1], tuple(input_size), table.reset_index(drop=True),
                    unchanged, params, macs)


def cost_diff(baseline_model: nn.Module, variant_model: nn.Module,
              input_size: tuple[int, ...] = (3, 224, 224),
              labels: tuple[str, str] = ("baseline", "variant")) -> CostDiff:
    """The per-module params and MACs difference of ``variant_model`` from ``baseline_model``
    for one input of ``input_size`` (no batch dimension); see the module docstring."""
    return diff_ledgers(module_ledger(baseline_model, input_size),
                        module_ledger(variant_model, input_size), input_size, labels)


def variant_cost_diff(baseline: Variant, variant: Variant,
                      input_size: tuple[int, ...] = (3, 224, 224),
                      num_classes: int = 1) -> CostDiff:
    """``cost_diff`` of the models two variants describe (``in_channels`` = ``input_size[0]``).

    Encoder weights are not loaded: they change no count.
    """
    models = [build_model(v.replace(pretrained=None), num_classes, input_size[0])
              for v in (baseline, variant)]
    return cost_diff(*models, input_size, labels=(baseline.id, variant.id))


def _shape(module: nn.Module) -> str:
    """A short configuration: ``768->256 3x3`` for a conv, ``512->10`` for a linear layer, the
    channels of a norm layer, else the ``extra_repr`` (shortened)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        text = f"{module.in_channels}->{module.out_channels} " + "x".join(
            map(str, module.kernel_size))
        if any(s != 1 for s in module.stride):
            text += " s" + "x".join(map(str, module.stride))
        if module.groups != 1:
            text += f" g{module.groups}"
        return text + (" +bias" if module.bias is not None else "")
    if isinstance(module, nn.Linear):
        return f"{module.in_features}->{module.out_features}" + (
            " +bias" if module.bias is not None else "")
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return str(module.num_features)
    if isinstance(module, nn.GroupNorm):
        return f"{module.num_channels} in {module.num_groups} groups"
    text = module.extra_repr()
    return text if len(text) <= 40 else text[:39] + "…"


def _label(type_name: str, shape: str) -> str:
    if not type_name:
        return "-"
    return f"{type_name}({shape})" if shape else type_name


def _signed(value: int) -> str:
    return f"{int(value):+,}" if value else "0"
