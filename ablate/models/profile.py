"""Complexity profile of any ``nn.Module``: exact params and MACs, cross-checked by three counters.

Units and conventions (every field name carries its unit):
    MAC     one multiply-accumulate. ``gmacs_*`` are 1e9 MACs for ONE input of ``input_size``.
    FLOP    two per MAC. Only ``gflops_torch`` is in FLOPs (``FlopCounterMode`` counts 2 per MAC).
    params  counted from the parameters themselves (shared tensors once).

The counters and what they price, besides convolutions and linear layers:
    macs_exact   conv / transposed conv / linear modules only, from layer shapes (bias excluded).
    thop         per module: BatchNorm (2 per element, 4 if affine), AvgPool (one add per input and
                 one divide per output), ``nn.Upsample`` (bilinear 11 per output element); MaxPool
                 and ReLU are priced 0; code outside modules (``x + skip``, ``torch.cat``,
                 ``F.interpolate``, the residual ``+=``) is not seen at all.
    fvcore       per traced aten op, one "flop" per MAC: BatchNorm in eval (2 per element, 1
                 without affine), interpolation (``upsample_*``); adds, pools and ReLU are
                 skipped; conv bias ignored.
    torch        ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matmuls only.

No counter sees the elementwise add of ``add`` fusion. The record lists, per counter, the ops it
ran but did not price, what it priced beyond conv + linear, and flags any counter whose conv +
linear MACs differ from ``macs_exact`` by more than 0.1 %.

The model is deep-copied and the copy profiled in eval mode, so the caller's model, its
state_dict, BN statistics and outputs are untouched (thop attaches hooks and attributes).
``params`` counts every parameter; ``params_unrun`` those of modules the profiled forward never
called, and ``note`` says why (the model's ``profile_note``, e.g. deep supervision's training-only
heads) or, for a model without one, that they exist.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ..common.checks import not_allowed

#: Result-row columns :meth:`Profile.row` fills, in order.
COLUMNS = ("params", "params_m", "macs_exact", "gmacs_exact", "gmacs_thop", "gmacs_fvcore",
           "gflops_torch", "profile_input", "unpriced_thop", "unpriced_fvcore", "counter_mismatch",
           "profile_note")
#: The units of the counters' columns, stored with every result row (``counter_units``).
COUNTER_UNITS = ("gmacs_* = 1e9 multiply-accumulates per image at profile_input (thop, fvcore: "
                 "one MAC = one 'flop'; exact: conv + linear from layer shapes); gflops_torch = "
                 "1e9 FLOPs (2 per MAC, torch FlopCounterMode, conv + matmul only)")
MISMATCH_TOLERANCE = 1e-3
_CONV_LINEAR = (nn.modules.conv._ConvNd, nn.Linear)
_FVCORE_CONV_LINEAR = {"conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum"}
_TORCH_CONV_LINEAR = {"convolution", "mm", "addmm", "bmm", "baddbmm"}
# ops that move or allocate data without arithmetic; not worth listing as "not priced"
_NO_ARITHMETIC = {"cat", "constant_pad_nd", "clone", "copy_", "empty", "_to_copy", "lift_fresh",
                  "new_empty", "fill_", "zero_", "zeros", "ones", "detach", "alias", "contiguous",
                  "empty_like", "zeros_like", "stack", "split", "chunk"}


@dataclass(frozen=True)
class Profile:
    """Complexity of one model at one input size (per single input; see module docstring)."""

    input_size: tuple[int, ...]
    params: int
    params_trainable: int
    params_m: float
    macs_exact: int
    gmacs_exact: float
    gmacs_thop: float
    gmacs_fvcore: float
    gflops_torch: float
    conv_linear_macs: dict[str, int]
    extra_gmacs: dict[str, dict[str, float]]
    unpriced: dict[str, tuple[str, ...]]
    mismatches: tuple[str, ...]
    params_unrun: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def row(self) -> dict[str, Any]:
        """The flat columns a results table keeps (:data:`COLUMNS`; nested details become
        short strings)."""
        text = {"profile_input": "x".join(map(str, self.input_size)),
                "unpriced_thop": " ".join(self.unpriced["thop"]),
                "unpriced_fvcore": " ".join(self.unpriced["fvcore"]),
                "counter_mismatch": " ".join(self.mismatches),
                "profile_note": self.note}
        return {c: text[c] if c in text else getattr(self, c) for c in COLUMNS}


def profile_model(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224)) -> Profile:
    """Profile a deep copy of ``model`` on one zero-batch-free input of shape ``input_size``.

    ``input_size`` excludes the batch dimension; counts are for a single input.
    """
    net, x = _probe(model, input_size)
    input_size = tuple(x.shape[1:])
    params = {id(p): p for p in model.parameters()}
    n_params = sum(p.numel() for p in params.values())
    n_trainable = sum(p.numel() for p in params.values() if p.requires_grad)

    with torch.no_grad():
        exact, ops_by_owner, unrun = _trace(net, x)
        thop_total, thop_conv, thop_extra, thop_unpriced = _thop(net, x, ops_by_owner)
        fv_total, fv_conv, fv_extra, fv_unpriced = _fvcore(net, x)
        torch_flops, torch_conv, torch_unpriced = _torch_counter(net, x, ops_by_owner)

    conv_linear = {"exact": exact, "thop": thop_conv, "fvcore": fv_conv, "torch": torch_conv}
    mismatches = tuple(
        f"{name}:{macs}!={exact}" for name, macs in conv_linear.items()
        if name != "exact" and abs(macs - exact) > MISMATCH_TOLERANCE * max(exact, 1)
    )
    return Profile(
        input_size=input_size,
        params=n_params,
        params_trainable=n_trainable,
        params_m=n_params / 1e6,
        macs_exact=exact,
        gmacs_exact=exact / 1e9,
        gmacs_thop=thop_total / 1e9,
        gmacs_fvcore=fv_total / 1e9,
        gflops_torch=torch_flops / 1e9,
        conv_linear_macs=conv_linear,
        extra_gmacs={"thop": thop_extra, "fvcore": fv_extra},
        unpriced={"thop": thop_unpriced, "fvcore": fv_unpriced, "torch": torch_unpriced},
        mismatches=mismatches,
        params_unrun=unrun,
        note=getattr(model, "profile_note", "") or (
            f"{unrun} params in modules the profiled forward never called" if unrun else ""),
    )


def macs_by_module(model: nn.Module,
                   input_size: tuple[int, ...] = (3, 224, 224)) -> dict[str, int]:
    """Exact conv / transposed conv / linear MACs of each module, by qualified name.

    The same trace and convention as ``Profile.macs_exact`` (bias excluded, one input of
    ``input_size``), so the values sum to it. A module registered under several names is listed
    under its first (``named_modules`` order) and a module called several times gets the sum of
    its calls; modules without MACs are left out. Only the exact trace runs (no thop, fvcore or
    torch counter), on a deep copy in eval mode like ``profile_model``.
    """
    net, x = _probe(model, input_size)
    ledger: Counter = Counter()
    with torch.no_grad():
        _trace(net, x, ledger)
    return {name: ledger[m] for name, m in net.named_modules() if m in ledger}


def exact_macs(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224)) -> int:
    """``macs_exact`` alone (conv / transposed conv / linear MACs from layer shapes, one input of
    ``input_size``), from one forward of an eval-mode deep copy; no other counter runs."""
    net, x = _probe(model, input_size)
    with torch.no_grad():
        return _trace(net, x)[0]


def _probe(model: nn.Module, input_size: tuple[int, ...]) -> tuple[nn.Module, torch.Tensor]:
    """An eval-mode deep copy of ``model`` (counters attach hooks and attributes; the caller's
    model stays untouched) and one zero input of ``input_size`` on its device, in its dtype."""
    input_size = tuple(int(s) for s in input_size)
    if not input_size or any(s <= 0 for s in input_size):
        raise not_allowed("input_size", input_size,
                          "positive sizes without the batch dimension, e.g. (3, 224, 224)")
    net = copy.deepcopy(model).eval()
    ref = next(net.parameters(), None)
    floating = ref is not None and ref.is_floating_point()
    x = torch.zeros((1, *input_size), device=ref.device if ref is not None else "cpu",
                    dtype=ref.dtype if floating else torch.float32)
    return net, x


def _layer_macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-accumulates of one conv / transposed conv / linear call, from shapes alone."""
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    kernel = 1
    for k in module.kernel_size:
        kernel *= k
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # each input element is scattered into (out_channels / groups) * kernel outputs
        return inp.numel() * (module.out_channels // module.groups) * kernel
    return out.numel() * (module.in_channels // module.groups) * kernel


class _OpRecorder(TorchDispatchMode):
    """Records every aten op with the innermost module running when it was called."""

    def __init__(self, stack: list[nn.Module]) -> None:
        super().__init__()
        self.stack = stack
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not func.is_view and name not in _NO_ARITHMETIC:
            self.ops[(self.stack[-1] if self.stack else None, name)] += 1
        return func(*args, **(kwargs or {}))


def _trace(net: nn.Module, x: torch.Tensor,
           ledger: Counter | None = None) -> tuple[int, Counter, int]:
    """One forward: exact conv/linear MACs from module hooks, the aten ops per owning module, and
    the params of modules never called; ``ledger``, when given, gets each conv/linear module's
    own MACs (summed over its calls)."""
    stack: list[nn.Module] = []
    exact = 0
    called: set[int] = set()

    def push(module, args):
        stack.append(module)
        called.add(id(module))

    def pop(module, args, out):
        nonlocal exact
        stack.pop()
        if isinstance(module, _CONV_LINEAR):
            macs = _layer_macs(module, args[0], out)
            exact += macs
            if ledger is not None:
                ledger[module] += macs

    # ``modules()`` yields a module registered under several names once, so each gets one pair of
    # hooks and its MACs are added once per call, not once per name
    handles = [h for m in net.modules()
               for h in (m.register_forward_pre_hook(push), m.register_forward_hook(pop))]
    recorder = _OpRecorder(stack)
    try:
        with recorder:
            net(x)
    finally:
        for h in handles:
            h.remove()
    owned = {id(p): (m, p) for m in net.modules() for p in m.parameters(recurse=False)}
    unrun = sum(p.numel() for m, p in owned.values() if id(m) not in called)
    return exact, recorder.ops, unrun


def _thop(net: nn.Module, x: torch.Tensor, ops_by_owner: Counter):
    import thop
    from thop.profile import register_hooks, zero_ops

    total, _, tree = thop.profile(net, inputs=(x,), verbose=False, ret_layer_info=True)
    per_type: Counter = Counter()
    # thop's layer tree lists a module once under every name it is registered by (a ResNet kept as
    # ``self.resnet`` whose children are also ``self.layer1``...); a leaf's ops already cover all
    # of its calls, so each module is counted once, by identity, as thop's own total does.
    seen: set[int] = set()

    def walk(module: nn.Module, subtree: dict) -> None:
        for name, child in module.named_children():
            if id(child) in seen:
                continue
            seen.add(id(child))
            ops, _, below = subtree[name]
            if not list(child.children()):
                per_type[type(child).__name__] += ops
            walk(child, below)

    walk(net, tree)
    conv_linear = sum(ops for name, ops in per_type.items()
                      if any(name == c.__name__ for c in _conv_linear_types()))
    extra = {name: ops / 1e9 for name, ops in per_type.items()
             if ops and not any(name == c.__name__ for c in _conv_linear_types())}

    def rule(module: nn.Module):
        return next((register_hooks[t] for t in type(module).__mro__ if t in register_hooks), None)

    unpriced = set()
    for (owner, op) in ops_by_owner:
        if owner is None:
            continue
        is_leaf = not list(owner.children())
        owner_rule = rule(owner)
        if is_leaf and owner_rule is not None and owner_rule is not zero_ops:
            continue
        if op in ("mm", "addmm", "bmm"):  # thop counts functional matmuls itself
            continue
        where = type(owner).__name__
        unpriced.add(f"{where}.{op}" if not is_leaf else f"{where}(0)")
    return total, int(conv_linear), extra, tuple(sorted(unpriced))


def _conv_linear_types() -> list[type]:
    return [nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
            nn.ConvTranspose3d, nn.Linear]


def _fvcore(net: nn.Module, x: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices raised by fvcore's import
        from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(net, x)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices from fvcore's tracer
        by_op = analysis.by_operator()
        total = analysis.total()
        unsupported = analysis.unsupported_ops()
    conv_linear = sum(v for k, v in by_op.items() if k in _FVCORE_CONV_LINEAR)
    extra = {k: v / 1e9 for k, v in by_op.items() if k not in _FVCORE_CONV_LINEAR and v}
    unpriced = tuple(sorted(op.replace("aten::", "") for op in unsupported))
    return total, int(conv_linear), extra, unpriced


def _torch_counter(net: nn.Module, x: torch.Tensor, ops_by_owner: Counter):
    counter = FlopCounterMode(display=False)
    with counter:
        net(x)
    counts = counter.get_flop_counts().get("Global", {})
    conv_linear = sum(v for op, v in counts.items()
                      if op.__name__ in _TORCH_CONV_LINEAR) // 2
    priced = {op.__name__ for op in counts}
    unpriced = tuple(sorted({op for (_, op) in ops_by_owner} - priced))
    return counter.get_total_flops(), int(conv_linear), unpriced
