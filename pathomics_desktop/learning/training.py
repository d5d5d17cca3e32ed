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

Several processes (``torchrun --nproc_per_node=N``, one per GPU): :mod:`.distributed`
splits every global batch of ``batch_size`` over the processes and keeps the gradients,
losses and checkpoints those of one process with the same global batch.
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
from typing import TYPE_CHECKING, Any, Callable, Literal

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


from pathomics_desktop.jobs.core import Cancelled, CancelToken  # noqa: E402,F401  (one token for every job)


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


@dataclass
class _Progress:
    """Where a run stands; saved in every checkpoint (``history`` as JSON text)."""

    epoch: int = 0
    step: int = 0
    best_val_loss: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


@dataclass
class _Run:
    """Everything one call of :func:`train` works with, built by its named steps."""

    model: "nn.Module"
    train_data: "Dataset"
    val_data: "Dataset | None"
    config: TrainConfig
    device: "torch.device"
    labels: np.ndarray
    counts: np.ndarray
    checkpoint_path: Path
    best_path: Path
    cancel: CancelToken | None
    report: _Throttle
    criterion: Any = None
    class_weights: "torch.Tensor | None" = None
    sample_weights: "torch.Tensor | None" = None
    loader_options: dict[str, Any] = field(default_factory=dict)
    total_steps: int = 0
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    amp_dtype: "torch.dtype | None" = None
    progress: _Progress = field(default_factory=_Progress)
    dist: Any = None  # distributed.DataParallel when launched as several processes
    ddp_model: "nn.Module | None" = None  # the DistributedDataParallel wrapper of ``model``

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def is_main(self) -> bool:
        """True in the process that writes checkpoints and reports (rank 0, or alone)."""
        return self.dist is None or self.dist.is_main


def train(model: "nn.Module", train_data: "Dataset", val_data: "Dataset | None",
          config: TrainConfig, checkpoint_dir: str | Path, num_classes: int | None = None,
          progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
          resume: bool = True) -> TrainResult:
    """Fine-tune ``model`` (all layers) on (image tensor, label) pairs; see module docstring.

    ``checkpoint_dir`` receives ``last.pt`` (every epoch) and ``best.pt`` (best weights).
    With ``resume`` and an existing ``last.pt`` from the same settings, training continues
    after its last completed epoch. Raises :class:`Cancelled` when ``cancel.cancelled``.
    Launched by torchrun as several processes, trains data-parallel (:mod:`.distributed`).
    """
    from pathomics_desktop.learning.distributed import data_parallel_session

    config.validate()
    with data_parallel_session(config) as dist:  # None in a single process
        return _train(model, train_data, val_data, config, Path(checkpoint_dir), num_classes,
                      progress, cancel, resume, dist)


def _train(model, train_data, val_data, config: TrainConfig, checkpoint_dir: Path,
           num_classes: int | None, progress: ProgressCallback | None,
           cancel: CancelToken | None, resume: bool, dist) -> TrainResult:
    device = dist.device if dist is not None else resolve_device(config.device)
    num_classes = _num_classes(model, num_classes)
    labels, counts = _check_datasets(train_data, val_data, num_classes, config)
    run = _Run(model=model, train_data=train_data, val_data=val_data, config=config,
               device=device, labels=labels, counts=counts,
               checkpoint_path=checkpoint_dir / CHECKPOINT_NAME,
               best_path=checkpoint_dir / BEST_WEIGHTS_NAME, cancel=cancel,
               report=_Throttle(progress if dist is None or dist.is_main else None,
                                config.progress_interval_s), dist=dist)
    _prepare_device(run)
    _build_loss(run)
    _build_loaders(run)
    _build_optimiser(run)
    resumed_from = _resume_from_checkpoint(run) if resume and run.checkpoint_path.exists() else 0
    model.train()
    while run.progress.epoch < config.epochs and not run.progress.stopped_early:
        _train_one_epoch(run)
    return _finish(run, resumed_from)


def _num_classes(model: "nn.Module", num_classes: int | None) -> int:
    """``num_classes``, else the output width of the model's Linear classifier."""
    if num_classes is not None:
        return num_classes
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    found = getattr(head, "out_features", None)
    if found is None:
        raise ValueError("num_classes not given and the model has no Linear classifier")
    return found


def _check_datasets(train_data: "Dataset", val_data: "Dataset | None", num_classes: int,
                    config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training labels and class counts; UserError for an empty set or a label out of range."""
    labels = dataset_labels(train_data)
    counts = class_counts(labels, num_classes)
    if val_data is not None and len(val_data) == 0:
        raise UserError("the validation set is empty")
    if val_data is None and config.early_stopping_patience is not None:
        log.warning("early stopping needs a validation set; training all %d epochs",
                    config.epochs)
    return labels, counts


def _prepare_device(run: _Run) -> None:
    """Seed every RNG, then move the model to the device (channels_last on CUDA)."""
    import torch

    seed_everything(run.config.seed)
    run.model.to(run.device)
    if run.on_cuda and run.config.channels_last:
        run.model.to(memory_format=torch.channels_last)
    if run.dist is not None:
        run.ddp_model = run.dist.wrap(run.model)
        run.dist.seed_rank(run.config.seed)


def _build_loss(run: _Run) -> None:
    """Cross-entropy, weighted by N / (K n_c) for ``class_weights``; per-sample weights
    1 / n_{y_i} for ``weighted_sampler``."""
    import torch

    if run.config.imbalance == "class_weights":
        run.class_weights = torch.tensor(balanced_class_weights(run.counts), dtype=torch.float32,
                                         device=run.device)
    run.criterion = torch.nn.CrossEntropyLoss(weight=run.class_weights)
    if run.config.imbalance == "weighted_sampler":
        balanced_class_weights(run.counts)  # rejects empty classes
        run.sample_weights = torch.as_tensor(1.0 / run.counts[run.labels], dtype=torch.double)
    if run.dist is not None:
        run.criterion = run.dist.sharded_loss(run.class_weights)


def _build_loaders(run: _Run) -> None:
    """DataLoader options and the number of iterations (T = epochs x ceil(N / batch))."""
    run.loader_options = data_loader_options(run.config, run.on_cuda)
    steps_per_epoch = math.ceil(len(run.labels) / run.config.batch_size)
    run.total_steps = steps_per_epoch * run.config.epochs


def _epoch_loader(run: _Run, epoch: int):
    """The training batches of ``epoch``: shuffled (or weighted-sampled) by the generator
    seeded with (seed, epoch), so a resumed run draws the same order. Under several
    processes, this process's share of each batch of that same order."""
    if run.dist is not None:
        order = _ordered_loader(run, epoch, list(range(len(run.labels))),
                                {"batch_size": run.config.batch_size})
        return run.dist.shard_loader(run, epoch, [batch.tolist() for batch in order])
    return _ordered_loader(run, epoch, run.train_data, run.loader_options)


def _ordered_loader(run: _Run, epoch: int, dataset, options: dict[str, Any]):
    from torch.utils.data import DataLoader, WeightedRandomSampler

    generator = _epoch_generator(run.config.seed, epoch)
    if run.sample_weights is not None:
        sampler = WeightedRandomSampler(run.sample_weights, num_samples=len(run.labels),
                                        replacement=True, generator=generator)
        return DataLoader(dataset, sampler=sampler, generator=generator, **options)
    return DataLoader(dataset, shuffle=True, generator=generator, **options)


def _build_optimiser(run: _Run) -> None:
    """SGD (momentum, weight decay) or AdamW; per-iteration cosine decay
    eta_t = eta_max * (1 + cos(pi t / T)) / 2 (eta_min = 0); AMP dtype and GradScaler."""
    import torch

    config = run.config
    params = [p for p in run.model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        run.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
    else:
        run.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    run.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(run.optimizer,
                                                               T_max=run.total_steps, eta_min=0.0)
    if run.on_cuda and config.amp:
        run.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    run.scaler = torch.amp.GradScaler("cuda", enabled=run.amp_dtype == torch.float16)


def _resume_from_checkpoint(run: _Run) -> int:
    """Load model, optimiser, scheduler, scaler, RNG states and progress from ``last.pt``;
    returns the epoch it resumes after. UserError when made with other settings or data."""
    path = run.checkpoint_path
    checkpoint = _load_checkpoint(path)
    if checkpoint["config"] != run.config.fingerprint():
        raise UserError(f"checkpoint {path} was made with other settings; "
                        "delete it or use another folder to start afresh")
    if checkpoint["class_counts"] != run.counts.tolist():
        raise UserError(f"checkpoint {path} was made on another training set "
                        f"(class counts {checkpoint['class_counts']}, now "
                        f"{run.counts.tolist()}); use another folder to start afresh")
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    if run.dist is not None:
        run.dist.restore_rng(checkpoint, run.config.seed)
    else:
        restore_rng_state(checkpoint["rng"])
    run.progress = _Progress(epoch=checkpoint["epoch"], step=checkpoint["step"],
                             best_val_loss=checkpoint["best_val_loss"],
                             best_step=checkpoint["best_step"],
                             stopped_early=checkpoint["stopped_early"],
                             history=json.loads(checkpoint["history"]))
    return run.progress.epoch


def _check_cancel(run: _Run, everywhere: bool = False) -> None:
    """Raise :class:`Cancelled` when asked; with ``everywhere`` (every training iteration)
    under several processes, when any process was asked, so that all stop together."""
    cancelled = run.cancel is not None and run.cancel.cancelled
    if everywhere and run.dist is not None:
        cancelled = run.dist.any(cancelled)
    if cancelled:
        raise Cancelled(f"training cancelled at epoch {run.progress.epoch + 1}, "
                        f"step {run.progress.step}")


def _forward(run: _Run, images: "torch.Tensor", targets, model: "nn.Module | None" = None,
             criterion: Any = None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(loss, targets on the device) of one batch (autocast on CUDA, the loss in float32);
    ``model`` and ``criterion`` default to the run's."""
    import torch

    targets = torch.as_tensor(targets, dtype=torch.long, device=run.device)
    images = images.to(run.device, non_blocking=run.on_cuda)
    if run.on_cuda and run.config.channels_last and images.ndim == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        logits = (model if model is not None else run.model)(images)
    criterion = criterion if criterion is not None else run.criterion
    return criterion(logits.float(), targets), targets


def _train_one_epoch(run: _Run) -> None:
    """One pass over the training batches, validating every ``val_interval`` iterations and
    at the end; then the epoch's history row, a checkpoint and a progress report."""
    state, config = run.progress, run.config
    epoch = state.epoch
    loss_sum, n_batches, last_val = 0.0, 0, None
    for images, targets in _epoch_loader(run, epoch):
        _check_cancel(run, everywhere=True)
        loss = _optimisation_step(run, images, targets)
        loss_sum += loss
        n_batches += 1
        if run.val_data is not None and state.step % config.val_interval == 0:
            last_val = _validate(run)
            _record_validation(run, last_val)
            if state.stopped_early:
                break
        run.report(state.step / run.total_steps,
                   f"epoch {epoch + 1}/{config.epochs} step {state.step}/{run.total_steps} "
                   f"loss {loss:.4f}")
    if run.val_data is not None and not state.stopped_early and (
            last_val is None or state.step % config.val_interval != 0):
        last_val = _validate(run)
        _record_validation(run, last_val)
    train_loss = loss_sum / max(n_batches, 1)
    state.history.append({
        "epoch": epoch + 1, "step": state.step, "train_loss": train_loss, "val_loss": last_val,
        "lr": run.optimizer.param_groups[0]["lr"],
    })
    state.epoch = epoch + 1
    _save_checkpoint(run)
    _report_epoch(run, epoch, train_loss, last_val)


def _optimisation_step(run: _Run, images, targets) -> float:
    """Forward, backward (scaled under fp16), optimiser and scheduler step; returns the loss.
    UserError when the loss is not finite."""
    import torch

    loss, _ = _forward(run, images, targets, model=run.ddp_model)
    value = loss if run.dist is None else run.criterion.global_loss  # of the whole batch
    if not torch.isfinite(value):
        raise UserError(f"training diverged: loss is {value.item()} at epoch {run.progress.epoch + 1}, "
                        f"step {run.progress.step + 1}; lower the learning rate")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.progress.step += 1
    return value.item()


def _validate(run: _Run) -> float:
    """Validation loss in eval mode: sum(w_i l_i) / sum(w_i) over all validation samples
    (w_i = the class weight of y_i, or 1)."""
    import torch
    from torch.utils.data import DataLoader

    if run.dist is not None:
        return run.dist.validate(run)
    run.model.eval()
    total, weight = 0.0, 0.0
    generator = torch.Generator().manual_seed(run.config.seed)
    loader = DataLoader(run.val_data, shuffle=False, generator=generator, **run.loader_options)
    with torch.no_grad():
        for images, targets in loader:
            _check_cancel(run)
            loss, targets = _forward(run, images, targets)
            batch_weight = (run.class_weights[targets].sum().item()
                            if run.class_weights is not None else float(len(targets)))
            total += loss.item() * batch_weight
            weight += batch_weight
    run.model.train()
    return total / weight


def _record_validation(run: _Run, val_loss: float) -> None:
    """Keep the best weights in ``best.pt``; stop early after ``patience`` iterations
    without improvement."""
    state = run.progress
    if state.best_val_loss is None or val_loss < state.best_val_loss:
        state.best_val_loss, state.best_step = val_loss, state.step
        if run.is_main:
            atomic_torch_save(run.model.state_dict(), run.best_path)
    patience = run.config.early_stopping_patience
    if patience is not None and state.step - state.best_step >= patience:
        state.stopped_early = True


def _save_checkpoint(run: _Run) -> None:
    """Everything a resumed run needs, written atomically to ``last.pt`` (by rank 0 only,
    with every rank's RNG state, under several processes)."""
    state = run.progress
    extra = {} if run.dist is None else {"rng_ranks": run.dist.gather(capture_rng_state())}
    if not run.is_main:
        return
    atomic_torch_save({
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
        "rng": capture_rng_state(), "config": run.config.fingerprint(),
        "class_counts": run.counts.tolist(),
        "epoch": state.epoch, "step": state.step,
        "best_val_loss": state.best_val_loss, "best_step": state.best_step,
        "stopped_early": state.stopped_early, "history": json.dumps(state.history),
        "format": "pathomics-train-checkpoint/1", **extra,
    }, run.checkpoint_path)


def _report_epoch(run: _Run, epoch: int, train_loss: float, val_loss: float | None) -> None:
    state = run.progress
    message = f"epoch {epoch + 1}/{run.config.epochs} done, train loss {train_loss:.4f}"
    if val_loss is not None:
        message += f", val loss {val_loss:.4f}"
    if state.stopped_early:
        message += f" (early stop: no improvement since step {state.best_step})"
    run.report(1.0 if state.stopped_early else state.step / run.total_steps, message, force=True)


def _finish(run: _Run, resumed_from: int) -> TrainResult:
    """Restore the best validation weights (when validated) and summarise the run."""
    import torch

    if run.dist is not None:
        run.dist.barrier()  # rank 0 has written best.pt
    if run.val_data is not None and run.best_path.exists():
        run.model.load_state_dict(torch.load(run.best_path, map_location=run.device,
                                             weights_only=True))
    state = run.progress
    return TrainResult(
        epochs_completed=state.epoch, steps=state.step,
        best_val_loss=state.best_val_loss, best_step=state.best_step,
        stopped_early=state.stopped_early, resumed_from_epoch=resumed_from,
        seed=run.config.seed, device=str(run.device), checkpoint_path=str(run.checkpoint_path),
        best_weights_path=str(run.best_path) if run.best_path.exists() else None,
        history=state.history,
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
