"""Patch-classifier backbones: ResNet-18/50, DenseNet-121 (timm) and CrossFormer-T/S/B/L.

Nothing is ever downloaded: timm models are built with ``pretrained=False`` and ImageNet
weights come only from a local file the user points to (``torch.load(weights_only=True)`` or
safetensors). When the file's classifier head has another number of classes than the model,
everything but the head is loaded and the head keeps its fresh initialisation.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pathomics_desktop.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

log = logging.getLogger(__name__)

#: name -> (family, description). Families: "cnn" (timm) or "crossformer" (this project).
BACKBONES: dict[str, tuple[str, str]] = {
    "resnet18": ("cnn", "ResNet-18 (He et al. 2016), timm"),
    "resnet50": ("cnn", "ResNet-50 (He et al. 2016), timm"),
    "densenet121": ("cnn", "DenseNet-121 (Huang et al. 2017), timm"),
    "crossformer_t": ("crossformer", "CrossFormer-T (Wang et al. ICLR 2022), 27.8M params"),
    "crossformer_s": ("crossformer", "CrossFormer-S (Wang et al. ICLR 2022), 30.7M params"),
    "crossformer_b": ("crossformer", "CrossFormer-B (Wang et al. ICLR 2022), 52.0M params"),
    "crossformer_l": ("crossformer", "CrossFormer-L (Wang et al. ICLR 2022), 92.0M params"),
}

#: Keys under which training scripts commonly nest the state dict in a checkpoint.
_NESTING_KEYS = ("model", "state_dict", "model_state", "model_state_dict", "module")


@dataclass
class WeightLoadReport:
    """What happened when a local weight file was loaded into a model."""

    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.path}: loaded {self.loaded} tensors; head skipped {self.skipped_head}; "
                f"missing {self.missing}; unexpected {self.unexpected}")


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`."""
    return list(BACKBONES)


def backbone_family(name: str) -> str:
    """Family of a backbone, "cnn" or "crossformer"; UserError for an unknown name."""
    try:
        return BACKBONES[name][0]
    except KeyError:
        raise UserError(f"unknown model {name!r}; choose one of {', '.join(BACKBONES)}") from None


def create_backbone(name: str, num_classes: int, pretrained_weights: str | Path | None = None,
                    **kwargs: Any) -> "nn.Module":
    """Build backbone ``name`` with a ``num_classes``-way head, optionally from local weights.

    ``kwargs`` go to the model constructor (e.g. ``drop_path_rate``, or CrossFormer config
    fields such as ``embed_dim``/``depths`` for small test models). The load report of
    ``pretrained_weights`` is attached as ``model.weight_report`` (None when not given).
    """
    family = backbone_family(name)
    if int(num_classes) < 1:
        raise UserError(f"num_classes must be at least 1 (got {num_classes})")
    if family == "cnn":
        import timm

        model = timm.create_model(name, pretrained=False, num_classes=int(num_classes), **kwargs)
    else:
        from pathomics_desktop.learning.crossformer import build_crossformer

        model = build_crossformer(name, num_classes=int(num_classes), **kwargs)
    model.backbone_name = name
    model.weight_report = None
    if pretrained_weights is not None:
        model.weight_report = load_pretrained_weights(model, pretrained_weights)
    return model


def classifier_prefixes(model: "nn.Module") -> list[str]:
    """State-dict prefixes of the model's classification head (e.g. ``["fc."]``)."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if head is None:
        return []
    return [f"{name}." for name, module in model.named_modules() if module is head and name]


def read_state_dict(path: str | Path) -> dict[str, "torch.Tensor"]:
    """Tensors of a local checkpoint (.safetensors, or a torch file read with weights_only).

    Unwraps ``{"model": ...}``/``{"state_dict": ...}`` nesting and DistributedDataParallel's
    ``module.`` prefix.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = _torch_load_weights_only(path)
    except Exception as exc:  # corrupt or non-weight file: the user's file is at fault
        reason = str(exc)
        if "WeightsUnpickler error:" in reason:
            reason = reason.split("WeightsUnpickler error:", 1)[1]
        reason = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
        raise UserError(f"cannot read weight file {path}: {reason}") from exc
    for _ in range(2):
        if isinstance(state, dict):
            nested = next((state[k] for k in _NESTING_KEYS
                           if isinstance(state.get(k), dict)), None)
            if nested is not None:
                state = nested
    if not isinstance(state, dict) or not state:
        raise UserError(f"weight file {path} holds no state dict of tensors")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"weight file {path} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _torch_load_weights_only(path: Path, max_stubs: int = 32):
    """``torch.load(weights_only=True)`` that tolerates non-tensor objects in a checkpoint.

    Training checkpoints (e.g. the official CrossFormer ones) may pickle a config object
    (``yacs.config.CfgNode``) beside the weights. The weights-only unpickler refuses such
    classes; we map each refused name to a stub that returns an empty OrderedDict, so
    nothing from the file is imported or executed and the tensors load as usual.
    """
    import collections
    import pickle

    import torch

    class _Placeholder:
        def __new__(cls, *args, **kwargs):
            return collections.OrderedDict()

    stubbed: list[str] = []
    while True:
        try:
            with torch.serialization.safe_globals([(_Placeholder, name) for name in stubbed]):
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            match = _UNSUPPORTED_GLOBAL.search(str(exc))
            if match is None or match.group(1) in stubbed or len(stubbed) >= max_stubs:
                raise
            name = match.group(1)
            stubbed += [name] if "." in name else [name, f"builtins.{name}"]
            continue
        if stubbed:
            log.info("%s: ignored non-weight objects %s", path, stubbed)
        return state


def load_pretrained_weights(model: "nn.Module", path: str | Path,
                            strict: bool = False) -> WeightLoadReport:
    """Load local weights into ``model``, skipping a classifier head of another shape.

    Shape mismatches outside the head mean the file is for another architecture: UserError.
    ``strict=True`` also rejects missing backbone keys and unexpected keys.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    head = classifier_prefixes(model)
    report = WeightLoadReport(path=str(path))
    usable: dict[str, Any] = {}
    wrong_shape: list[str] = []
    for key, tensor in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) == tuple(tensor.shape):
            usable[key] = tensor
        elif any(key.startswith(p) for p in head):
            report.skipped_head.append(key)
        else:
            wrong_shape.append(f"{key} {tuple(tensor.shape)} vs {tuple(own[key].shape)}")
    if wrong_shape:
        raise UserError(f"weight file {path} does not fit model "
                        f"{getattr(model, 'backbone_name', type(model).__name__)}: "
                        f"{len(wrong_shape)} tensors differ in shape, e.g. {wrong_shape[:3]}")
    if not usable:
        raise UserError(f"weight file {path} shares no tensor names with model "
                        f"{getattr(model, 'backbone_name', type(model).__name__)}")
    result = model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    report.missing = [k for k in result.missing_keys
                      if not (k in report.skipped_head)]
    report.unexpected += list(result.unexpected_keys)
    backbone_missing = [k for k in report.missing if not any(k.startswith(p) for p in head)]
    if strict and (backbone_missing or report.unexpected):
        raise UserError(f"weight file {path} does not match the model exactly: missing "
                        f"{backbone_missing[:5]}, unexpected {report.unexpected[:5]}")
    if report.missing or report.unexpected or report.skipped_head:
        log.warning("partial weight load: %s", report.summary())
    else:
        log.info("loaded all %d tensors from %s", report.loaded, path)
    return report
