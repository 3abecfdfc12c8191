"""The ``ablate`` command line: one subcommand per stage, each a thin call into the package.

Bad input (a ValueError, a missing file) prints ``ablate: error: <message>`` and exits 2, with
no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from .variant import KNOBS, Variant, list_knobs

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def deco(fn):
        COMMANDS[name] = fn
        return fn
    return deco


def _add_variant_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("variant (knob flags override --variant / --variant-file)")
    group.add_argument("--variant", help="a variant id, e.g. r18-MAA-w128.64.32.32-k23-cat-ds-bil")
    group.add_argument("--variant-file", type=Path, help="YAML mapping of knob values")
    for name in KNOBS.names():
        group.add_argument(f"--{name}", default=None, help=KNOBS.get(name).allowed)


def variant_from_args(args: argparse.Namespace) -> Variant:
    """The variant named by ``--variant`` / ``--variant-file``, with knob flags applied on top."""
    if args.variant and args.variant_file:
        raise ValueError("give --variant or --variant-file, not both")
    base = Variant()
    if args.variant:
        base = Variant.from_id(args.variant)
    elif args.variant_file:
        base = Variant.from_dict(_read_yaml_mapping(args.variant_file))
    overrides = {n: getattr(args, n) for n in KNOBS.names() if getattr(args, n) is not None}
    return base.replace(**overrides)


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of knob values, got {type(data).__name__}")
    return data


def _parse_size(text: str) -> tuple[int, int, int]:
    """``224`` -> (3, 224, 224); ``3x224x224`` or ``3,160,224`` as given."""
    parts = [int(p) for p in text.replace(",", "x").split("x")]
    if len(parts) == 1:
        return (3, parts[0], parts[0])
    if len(parts) == 2:
        return (3, *parts)
    if len(parts) == 3:
        return tuple(parts)
    raise ValueError(f"--input-size={text!r} is not allowed; allowed: S, HxW or CxHxW")


@_command("knobs")
def _knobs(args: argparse.Namespace) -> int:
    rows = list_knobs(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['knob']}  (default: {row['default']})\n    {row['help']}\n"
              f"    allowed: {row['allowed']}")
    return 0


@_command("profile")
def _profile(args: argparse.Namespace) -> int:
    from .model import build_model
    from .profile import profile_model

    variant = variant_from_args(args)
    size = _parse_size(args.input_size)
    model = build_model(variant, num_classes=args.num_classes, in_channels=size[0])
    prof = profile_model(model, size)
    row = {"variant": variant.id, **prof.row()}
    if args.json:
        print(json.dumps(row))
        return 0
    print(f"variant       {variant.id}\ninput         {row['profile_input']} (batch 1)")
    print(f"params        {prof.params:,} ({prof.params_m:.3f} M)")
    print(f"GMACs exact   {prof.gmacs_exact:.4f}  (conv + linear, from layer shapes)")
    print(f"GMACs thop    {prof.gmacs_thop:.4f}  (+ BN, avg-pool, nn.Upsample)")
    print(f"GMACs fvcore  {prof.gmacs_fvcore:.4f}  (+ BN, interpolation)")
    print(f"GFLOPs torch  {prof.gflops_torch:.4f}  (FlopCounterMode, 2 FLOPs per MAC)")
    for name, ops in prof.unpriced.items():
        print(f"not priced by {name:<7} {', '.join(ops) or '-'}")
    if prof.mismatches:
        print(f"WARNING conv+linear MACs differ from the exact count: {', '.join(prof.mismatches)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ablate", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("knobs", help="list every knob, its allowed values and default")
    p.add_argument("pattern", nargs="?", help="fnmatch pattern over knob names")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("profile", help="params and MACs of one variant, without training")
    _add_variant_args(p)
    p.add_argument("--input-size", default="224", help="S, HxW or CxHxW (default 224)")
    p.add_argument("--num-classes", type=int, default=2, help="output channels (default 2)")
    p.add_argument("--json", action="store_true", help="print the row as one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"ablate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
