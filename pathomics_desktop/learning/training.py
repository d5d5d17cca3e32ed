"""Training engine for patch classifiers: full fine-tuning, resumable, cancellable.

The study (reference text, Methods): softmax cross-entropy; cosine learning-rate decay
eta_t = eta_min + (eta_max - eta_min) * (1 + cos(pi * t / T)) / 2 with eta_min = 0, applied per
iteration here (T = epochs x iterations per epoch); CNNs (ResNet-18/50, DenseNet-121) at
lr 0.01 for 8 epochs; CrossFormer at lr 0.001 for 16 epochs with early stopping when the
validation loss has not improved for 128 iterations; all layers trained (no freezing).
The paper does not name the optimiser: the presets use SGD with momentum 0.9 and weight decay
1e-4 (an assumption, stated in :func:`study_preset`); AdamW is selectable.

Class imbalance: ``"class_weights"`` weighs the loss of class c by N / (K * n_c) (the
"balanced" rule); ``"weighted_sampler"`` draws samples with probability proportional to
1 / n_{y_i} (with replacement, N per epoch); ``"none"`` does neither.

Reproducibility and resume: every epoch ends with an atomic checkpoint (temporary file, then
``os.replace``) holding model, optimiser, scheduler, AMP scaler, RNG states (python, numpy,
torch CPU and CUDA), epoch, step and early-stopping state. The shuffling order of epoch e is
drawn from its own generator seeded with (seed, e), so resuming from the last checkpoint
repeats exactly what an uninterrupted run does; an interrupted epoch is restarted from its
beginning. Validation runs every ``val_interval`` iterations and at each epoch end; the
weights with the lowest validation loss are kept in ``best.pt`` and restored at the end.

GUI safety: data are loaded in the calling thread (``num_workers=0``) unless asked
otherwise, and then with the "spawn" multiprocessing context (fork inside a Qt process can
deadlock). ``progress(fraction, message)`` is called at most every ``progress_interval_s``
seconds and at epoch ends; ``cancel.cancelled`` is checked at every iteration.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Protocol

import numpy as np

from pathomics_desktop.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn
    from torch.utils.data import Dataset

ProgressCallback = Callable[[float, str], None]
log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
BEST_WEIGHTS_NAME = "best.pt"


from pathomics_desktop.jobs.core import Cancelled  # noqa: E402  (one Cancelled for every job)


class CancelToken(Protocol):
    cancelled: bool


class CancellationToken:
    """A flag another thread sets to stop a running job at its next check."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class TrainConfig:
    """Settings of one training run (all plain data, stored in every checkpoint)."""

    epochs: int = 8
    lr: float = 0.01
    batch_size: int = 32
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    imbalance: Literal["none", "class_weights", "weighted_sampler"] = "class_weights"
    early_stopping_patience: int | None = None  # iterations without val-loss improvement
    val_interval: int = 32  # iterations between validations (also at each epoch end)
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"...
    amp: bool = True  # CUDA only: autocast (bf16 when supported, else fp16 + GradScaler)
    channels_last: bool = True  # CUDA only
    progress_interval_s: float = 0.25

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserError(f"epochs must be at least 1 (got {self.epochs})")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise UserError(f"learning rate must be a positive number (got {self.lr})")
        if self.batch_size < 1:
            raise UserError(f"batch size must be at least 1 (got {self.batch_size})")
        if self.optimizer not in ("sgd", "adamw"):
            raise UserError(f"optimizer must be 'sgd' or 'adamw' (got {self.optimizer!r})")
        if self.imbalance not in ("none", "class_weights", "weighted_sampler"):
            raise UserError("imbalance must be 'none', 'class_weights' or 'weighted_sampler' "
                            f"(got {self.imbalance!r})")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise UserError("early-stopping patience must be at least 1 iteration "
                            f"(got {self.early_stopping_patience})")
        if self.val_interval < 1:
            raise UserError(f"validation interval must be at least 1 (got {self.val_interval})")
        if self.num_workers < 0:
            raise UserError(f"num_workers must be >= 0 (got {self.num_workers})")

    def fingerprint(self) -> dict:
        """Settings that must not change between an interrupted run and its resumption."""
        values = asdict(self)
        for key in ("num_workers", "device", "progress_interval_s"):
            values.pop(key)
        return values


def study_preset(model_name: str) -> TrainConfig:
    """The reference study's settings for a backbone (SGD, momentum 0.9, wd 1e-4 assumed).

    CNNs: lr 0.01, 8 epochs, no early stopping. CrossFormer: lr 0.001, 16 epochs, early
    stopping after 128 iterations without validation-loss improvement.
    """
    from pathomics_desktop.learning.backbones import backbone_family

    if backbone_family(model_name) == "crossformer":
        return TrainConfig(epochs=16, lr=0.001, early_stopping_patience=128)
    return TrainConfig(epochs=8, lr=0.01, early_stopping_patience=None)


@dataclass
class TrainResult:
    """Outcome of :func:`train` (plain data)."""

    epochs_completed: int
    steps: int
    best_val_loss: float | None
    best_step: int | None
    stopped_early: bool
    resumed_from_epoch: int
    seed: int
    device: str
    checkpoint_path: str
    best_weights_path: str | None
    history: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def dataset_labels(dataset: "Dataset") -> np.ndarray:
    """Integer labels of a dataset: its ``labels``/``targets`` attribute (also through a
    ``torch.utils.data.Subset``), else read every item once."""
    for name in ("labels", "targets"):
        values = getattr(dataset, name, None)
        if values is not None:
            return np.asarray(values, dtype=np.int64).reshape(-1)
    parent, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if parent is not None and indices is not None:
        for name in ("labels", "targets"):
            values = getattr(parent, name, None)
            if values is not None:
                return np.asarray(values, dtype=np.int64).reshape(-1)[np.asarray(indices)]
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))], dtype=np.int64)


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if labels.size == 0:
        raise UserError("the training set is empty")
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise UserError(f"training label {bad} is outside 0..{num_classes - 1}")
    return np.bincount(labels, minlength=num_classes)


def balanced_class_weights(counts: np.ndarray) -> np.ndarray:
    """w_c = N / (K * n_c); UserError when a class has no samples."""
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        raise UserError(f"class {int(missing[0])} has no training samples; "
                        "cannot balance the classes")
    return counts.sum() / (len(counts) * counts.astype(np.float64))


def resolve_device(name: str) -> "torch.device":
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    return device


def capture_rng_state() -> dict:
    """RNG states as tensors / plain values (loadable with ``weights_only=True``)."""
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` via a temporary file and ``os.replace`` (never half-written)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def data_loader_options(config: TrainConfig, on_cuda: bool) -> dict[str, Any]:
    """DataLoader keywords: in-thread loading by default, "spawn" workers otherwise."""
    options: dict[str, Any] = {"batch_size": config.batch_size,
                               "num_workers": config.num_workers, "pin_memory": on_cuda}
    if config.num_workers > 0:
        options["multiprocessing_context"] = "spawn"
    return options


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_generator(seed: int, epoch: int) -> "torch.Generator":
    import torch

    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)


# --------------------------------------------------------------------------- engine


class _Throttle:
    def __init__(self, callback: ProgressCallback | None, interval: float):
        self.callback, self.interval, self.last = callback, interval, -math.inf

    def __call__(self, fraction: float, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.callback is not None and (force or now - self.last >= self.interval):
            self.last = now
            self.callback(min(max(fraction, 0.0), 1.0), message)


def train(model: "nn.Module", train_data: "Dataset", val_data: "Dataset | None",
          config: TrainConfig, checkpoint_dir: str | Path, num_classes: int | None = None,
          progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
          resume: bool = True) -> TrainResult:
    """Fine-tune ``model`` (all layers) on (image tensor, label) pairs; see module docstring.

    ``checkpoint_dir`` receives ``last.pt`` (every epoch) and ``best.pt`` (best weights).
    With ``resume`` and an existing ``last.pt`` from the same settings, training continues
    after its last completed epoch. Raises :class:`Cancelled` when ``cancel.cancelled``.
    """
    import torch
    from torch.utils.data import DataLoader, WeightedRandomSampler

    config.validate()
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
    best_path = checkpoint_dir / BEST_WEIGHTS_NAME
    device = resolve_device(config.device)
    on_cuda = device.type == "cuda"
    if num_classes is None:
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        num_classes = getattr(head, "out_features", None)
        if num_classes is None:
            raise ValueError("num_classes not given and the model has no Linear classifier")
    labels = dataset_labels(train_data)
    counts = class_counts(labels, num_classes)
    if val_data is not None and len(val_data) == 0:
        raise UserError("the validation set is empty")
    if val_data is None and config.early_stopping_patience is not None:
        log.warning("early stopping needs a validation set; training all %d epochs",
                    config.epochs)

    seed_everything(config.seed)
    model.to(device)
    if on_cuda and config.channels_last:
        model.to(memory_format=torch.channels_last)

    class_weights = None
    if config.imbalance == "class_weights":
        class_weights = torch.tensor(balanced_class_weights(counts), dtype=torch.float32,
                                     device=device)
    criterion = torch.nn.CrossEntropyLoss(weight=class_weights)
    sample_weights = None
    if config.imbalance == "weighted_sampler":
        balanced_class_weights(counts)  # rejects empty classes
        sample_weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)

    loader_options = data_loader_options(config, on_cuda)

    def epoch_loader(epoch: int) -> DataLoader:
        generator = _epoch_generator(config.seed, epoch)
        if sample_weights is not None:
            sampler = WeightedRandomSampler(sample_weights, num_samples=len(labels),
                                            replacement=True, generator=generator)
            return DataLoader(train_data, sampler=sampler, generator=generator, **loader_options)
        return DataLoader(train_data, shuffle=True, generator=generator, **loader_options)

    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs

    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    # eta_t = eta_max * (1 + cos(pi t / T)) / 2, stepped after every iteration (eta_min = 0).
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps,
                                                           eta_min=0.0)
    amp_dtype = None
    if on_cuda and config.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    state = {"epoch": 0, "step": 0, "best_val_loss": None, "best_step": None,
             "stopped_early": False, "history": []}
    resumed_from = 0
    if resume and checkpoint_path.exists():
        checkpoint = _load_checkpoint(checkpoint_path)
        if checkpoint["config"] != config.fingerprint():
            raise UserError(f"checkpoint {checkpoint_path} was made with other settings; "
                            "delete it or use another folder to start afresh")
        if checkpoint["class_counts"] != counts.tolist():
            raise UserError(f"checkpoint {checkpoint_path} was made on another training set "
                            f"(class counts {checkpoint['class_counts']}, now "
                            f"{counts.tolist()}); use another folder to start afresh")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_state(checkpoint["rng"])
        state = {k: checkpoint[k] for k in state}
        state["history"] = json.loads(checkpoint["history"])
        resumed_from = state["epoch"]

    report = _Throttle(progress, config.progress_interval_s)

    def check_cancel() -> None:
        if cancel is not None and cancel.cancelled:
            raise Cancelled(f"training cancelled at epoch {state['epoch'] + 1}, "
                            f"step {state['step']}")

    def to_device(images: "torch.Tensor") -> "torch.Tensor":
        images = images.to(device, non_blocking=on_cuda)
        if on_cuda and config.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def validate() -> float:
        model.eval()
        total, weight = 0.0, 0.0
        generator = torch.Generator().manual_seed(config.seed)
        loader = DataLoader(val_data, shuffle=False, generator=generator, **loader_options)
        with torch.no_grad():
            for images, targets in loader:
                check_cancel()
                targets = torch.as_tensor(targets, dtype=torch.long, device=device)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits = model(to_device(images))
                loss = criterion(logits.float(), targets)
                # mean of a weighted CE is sum(w_i l_i) / sum(w_i): accumulate both parts
                batch_weight = (class_weights[targets].sum().item() if class_weights is not None
                                else float(len(targets)))
                total += loss.item() * batch_weight
                weight += batch_weight
        model.train()
        return total / weight

    def after_validation(val_loss: float) -> None:
        if state["best_val_loss"] is None or val_loss < state["best_val_loss"]:
            state["best_val_loss"], state["best_step"] = val_loss, state["step"]
            atomic_torch_save(model.state_dict(), best_path)
        patience = config.early_stopping_patience
        if patience is not None and state["step"] - state["best_step"] >= patience:
            state["stopped_early"] = True

    def save_checkpoint() -> None:
        atomic_torch_save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "rng": capture_rng_state(), "config": config.fingerprint(),
            "class_counts": counts.tolist(),
            "epoch": state["epoch"], "step": state["step"],
            "best_val_loss": state["best_val_loss"], "best_step": state["best_step"],
            "stopped_early": state["stopped_early"], "history": json.dumps(state["history"]),
            "format": "pathomics-train-checkpoint/1",
        }, checkpoint_path)

    model.train()
    while state["epoch"] < config.epochs and not state["stopped_early"]:
        epoch = state["epoch"]
        loss_sum, n_batches, last_val = 0.0, 0, None
        for images, targets in epoch_loader(epoch):
            check_cancel()
            targets = torch.as_tensor(targets, dtype=torch.long, device=device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(to_device(images))
            loss = criterion(logits.float(), targets)
            if not torch.isfinite(loss):
                raise UserError(f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, "
                                f"step {state['step'] + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            state["step"] += 1
            loss_sum += loss.item()
            n_batches += 1
            if val_data is not None and state["step"] % config.val_interval == 0:
                last_val = validate()
                after_validation(last_val)
                if state["stopped_early"]:
                    break
            report(state["step"] / total_steps,
                   f"epoch {epoch + 1}/{config.epochs} step {state['step']}/{total_steps} "
                   f"loss {loss.item():.4f}")
        if val_data is not None and not state["stopped_early"] and (
                last_val is None or state["step"] % config.val_interval != 0):
            last_val = validate()
            after_validation(last_val)
        state["history"].append({
            "epoch": epoch + 1, "step": state["step"],
            "train_loss": loss_sum / max(n_batches, 1), "val_loss": last_val,
            "lr": optimizer.param_groups[0]["lr"],
        })
        state["epoch"] = epoch + 1
        save_checkpoint()
        message = f"epoch {epoch + 1}/{config.epochs} done, train loss {loss_sum / max(n_batches, 1):.4f}"
        if last_val is not None:
            message += f", val loss {last_val:.4f}"
        if state["stopped_early"]:
            message += f" (early stop: no improvement since step {state['best_step']})"
        report(1.0 if state["stopped_early"] else state["step"] / total_steps, message, force=True)

    if val_data is not None and best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
    return TrainResult(
        epochs_completed=state["epoch"], steps=state["step"],
        best_val_loss=state["best_val_loss"], best_step=state["best_step"],
        stopped_early=state["stopped_early"], resumed_from_epoch=resumed_from,
        seed=config.seed, device=str(device), checkpoint_path=str(checkpoint_path),
        best_weights_path=str(best_path) if best_path.exists() else None,
        history=state["history"],
    )


def _load_checkpoint(path: Path) -> dict:
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"cannot read training checkpoint {path}: {exc}") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "pathomics-train-checkpoint/1":
        raise UserError(f"{path} is not a Pathomics training checkpoint")
    return checkpoint


def train_backbone(model_name: str, num_classes: int, train_data: "Dataset",
                   val_data: "Dataset | None", checkpoint_dir: str | Path,
                   config: TrainConfig | None = None,
                   pretrained_weights: str | Path | None = None,
                   progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                   resume: bool = True) -> tuple["nn.Module", TrainResult]:
    """Job entry point: build ``model_name`` (study preset unless ``config``) and train it."""
    from pathomics_desktop.learning.backbones import create_backbone

    config = config or study_preset(model_name)
    seed_everything(config.seed)  # the head's initialisation depends on the seed too
    model = create_backbone(model_name, num_classes, pretrained_weights=pretrained_weights)
    result = train(model, train_data, val_data, config, checkpoint_dir, num_classes=num_classes,
                   progress=progress, cancel=cancel, resume=resume)
    return model, result
