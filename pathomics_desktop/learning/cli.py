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
    cam = sub.add_parser("cam", help="Grad-CAM heatmap overlay of one tile (PNG)")
    cam.add_argument("name", choices=list(BACKBONES))
    cam.add_argument("tile", help="tile image (PNG/JPEG/TIFF, RGB)")
    cam.add_argument("--weights", required=True, help="trained weights (.pt/.pth/.safetensors)")
    cam.add_argument("--num-classes", type=int, default=2)
    cam.add_argument("--class", dest="target_class", type=int, default=None,
                     help="class to explain (default: the predicted class)")
    cam.add_argument("--method", choices=["gradcam", "hirescam"], default="gradcam")
    cam.add_argument("--alpha", type=float, default=0.45, help="heatmap opacity (0.45)")
    cam.add_argument("--out", required=True, help="output PNG")
    cam.add_argument("--json", action="store_true", help="print JSON")
    cam.set_defaults(func=_cam)
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


def _cam(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from pathomics_desktop.errors import UserError
    from pathomics_desktop.learning.backbones import create_backbone
    from pathomics_desktop.learning.gradcam import grad_cam, render_cam_overlay
    from pathomics_desktop.learning.preprocess import tiles_to_tensor

    try:
        with Image.open(args.tile) as image:
            tile = np.asarray(image.convert("RGB"))
    except (FileNotFoundError, UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read tile image {args.tile}: {exc}") from exc
    model = create_backbone(args.name, args.num_classes, pretrained_weights=args.weights)
    report = model.weight_report
    if report.skipped_head or report.missing:
        raise UserError(f"weights {args.weights} do not hold a trained {args.num_classes}-class "
                        f"{args.name} (head skipped: {report.skipped_head}, missing: "
                        f"{report.missing[:5]})")
    images = tiles_to_tensor(tile[None])
    model.eval()
    with torch.no_grad():
        probabilities = model(images).softmax(dim=1)[0].tolist()
    target = args.target_class if args.target_class is not None else int(np.argmax(probabilities))
    heatmap = grad_cam(model, images, target_class=target, method=args.method)[0]
    render_cam_overlay(tile, heatmap, alpha=args.alpha, path=args.out)
    result = {"tile": args.tile, "out": args.out, "class": target,
              "probabilities": [round(p, 6) for p in probabilities], "method": args.method}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.out}: {args.method} for class {target} "
              f"(p = {probabilities[target]:.3f})")
    return 0
