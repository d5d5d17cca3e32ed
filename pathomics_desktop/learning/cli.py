"""``pathomics models ...``: list the patch-classifier backbones and show their size/compute.

torch and timm are imported inside the handlers so ``pathomics --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json

from pathomics_desktop.learning.backbones import BACKBONES


def register(subparsers) -> None:
    models = subparsers.add_parser("models", help="patch-classifier backbones (list, info)")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION")

    listing = sub.add_parser("list", help="list the available backbones")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_list)

    info = sub.add_parser("info", help="parameters and multiply-accumulates of one backbone")
    info.add_argument("name", choices=list(BACKBONES))
    info.add_argument("--num-classes", type=int, default=2, help="classes of the head (2)")
    info.add_argument("--input-size", type=int, default=224, help="square input in px (224)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)
    models.set_defaults(func=lambda args: (models.print_help(), 1)[1])


def _list(args: argparse.Namespace) -> int:
    rows = [{"name": name, "family": family, "description": text}
            for name, (family, text) in BACKBONES.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<15} {row['family']:<12} {row['description']}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from pathomics_desktop.errors import UserError
    from pathomics_desktop.learning.complexity import model_info

    if args.num_classes < 1:
        raise UserError(f"--num-classes must be at least 1 (got {args.num_classes})")
    info = model_info(args.name, num_classes=args.num_classes, input_size=args.input_size)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{info['name']}: {info['params'] / 1e6:.2f} M parameters, "
              f"{info['gmacs']:.2f} GMACs at {info['input_size']} px "
              f"({info['num_classes']} classes)")
    return 0
