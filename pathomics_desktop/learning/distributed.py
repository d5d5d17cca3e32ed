"""Data-parallel training over several processes: torch.distributed, DDP, launched by torchrun.

Launch ``torchrun --nproc_per_node=N -m pathomics_desktop.cli train ...`` (one process per
GPU), or ``pathomics train --gpus N|all``, which re-launches itself so through
``torch.distributed.run``. torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT; :func:`data_parallel_session` then joins the process group (NCCL on CUDA, the
process pinned to ``cuda:LOCAL_RANK``; gloo on CPU) and
:func:`pathomics_desktop.learning.training.train` runs as rank r of W. Without those
variables (or with W = 1) nothing changes. ``batch_size`` stays the *global* batch B; each
rank takes B / W of it (a UserError unless W divides B).

Equal to one process with the same global batch (up to float rounding, ~1e-7 relative):

* order: the batches of epoch e are the single process's (same sampler, same generator
  seeded with (seed, e)); rank r takes the r-th contiguous part of each batch (the first
  len % W parts one sample longer), so one step of the W ranks sees exactly that batch;
* gradient: rank r minimises L_r = W * sum_{i in part r} w_i l_i / S, with
  S = sum_{i in batch} w_i all-reduced (w_i = class weight of y_i, or 1); DDP averages,
  (1/W) sum_r grad L_r = grad(sum_i w_i l_i / S): the gradient of the single process's
  weighted-mean cross-entropy. (A weighted mean per rank would divide by each part's own
  weight sum, which differs whenever the parts' class mixes differ.)
* a batch with fewer than W samples (the last one) leaves ranks without samples: each
  forwards one sample of the batch with the ignored target -100 (zero loss and gradient),
  so that every rank joins every all-reduce;
* logged losses are the whole batch's (all-reduced); validation splits the validation set
  into W contiguous parts and all-reduces sum w_i l_i and sum w_i;
* checkpoints hold every rank's RNG state: resuming under W processes repeats the
  uninterrupted run.

Not equal: randomness drawn inside the model or the augmentation (dropout, random crops)
comes from per-rank RNG streams (rank 0 keeps ``seed``, rank r > 0 uses ``seed + r *
1000003``): the same distribution, other draws. BatchNorm: on CUDA, BatchNorm layers are
converted to SyncBatchNorm (statistics over the global batch, as in one process; the
weights keep their names, so checkpoints load into the plain model); torch has no CPU
SyncBatchNorm, so on CPU (gloo) each rank normalises with its own part's statistics.

Only rank 0 writes checkpoints and best weights (atomically), reports progress and
records registry rows. A cancel on any rank stops every rank at the same iteration (a flag
all-reduced every iteration); under W > 1 a running validation is not interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from pathomics_desktop.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

log = logging.getLogger(__name__)

IGNORED_TARGET = -100  # torch.nn.CrossEntropyLoss's default ignore_index
RANK_SEED_STRIDE = 1_000_003


def launch_environment() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's RANK, LOCAL_RANK, WORLD_SIZE;
    (0, 0, 1) when they are not set."""
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
    try:
        rank, local, world = (int(os.environ.get(name, default))
                              for name, default in zip(names, ("0", "0", "1")))
    except ValueError as exc:
        raise UserError(f"torchrun variables {', '.join(names)} must be integers ({exc})") from exc
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UserError(f"torchrun variables out of range: RANK={rank}, LOCAL_RANK={local}, "
                        f"WORLD_SIZE={world}")
    return rank, local, world


def launched_by_torchrun() -> bool:
    """True in one of several processes started by torchrun (WORLD_SIZE > 1)."""
    return launch_environment()[2] > 1


def is_main_process() -> bool:
    """True alone or as rank 0: the process that writes outputs and registry rows."""
    return launch_environment()[0] == 0


def per_rank_batch_size(global_batch: int, world_size: int) -> int:
    """B / W; UserError unless W divides the global batch B."""
    if global_batch % world_size:
        raise UserError(f"batch size {global_batch} cannot be split evenly over {world_size} "
                        f"training processes; use a multiple of {world_size} (the batch size "
                        "is the global batch of all processes together)")
    return global_batch // world_size


def shard(batch: Sequence[int], rank: int, world_size: int) -> tuple[list[int], bool]:
    """Rank ``rank``'s contiguous part of a global batch (the first len % W parts one sample
    longer, like ``torch.tensor_split``) and whether it is padding: the batch's first sample
    alone, to be given the ignored target, when the batch has fewer than W samples."""
    size, extra = divmod(len(batch), world_size)
    start = rank * size + min(rank, extra)
    part = [int(i) for i in batch[start:start + size + (rank < extra)]]
    return (part, False) if part else ([int(batch[0])], True)


def rank_seed(seed: int, rank: int) -> int:
    return seed + rank * RANK_SEED_STRIDE


class ShardedCrossEntropy:
    """Rank r's loss L_r = W * sum_{i in part r} w_i l_i / S, S = the global batch's sum of
    w_i (all-reduced); ``global_loss`` is sum_{i in batch} w_i l_i / S, the single process's
    loss of that batch (a float64 0-d tensor, the same on every rank)."""

    def __init__(self, parallel: "DataParallel", class_weights: "torch.Tensor | None"):
        self.parallel, self.class_weights = parallel, class_weights
        self.global_loss: "torch.Tensor | None" = None

    def __call__(self, logits: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        import torch.nn.functional as F

        local_sum = F.cross_entropy(logits, targets, weight=self.class_weights, reduction="sum",
                                    ignore_index=IGNORED_TARGET)
        totals = self.parallel.sum([local_sum.detach(), target_weight_sum(targets, self.class_weights)])
        self.global_loss = totals[0] / totals[1]
        return local_sum * (self.parallel.world_size / totals[1]).to(local_sum.dtype)


def target_weight_sum(targets: "torch.Tensor", class_weights: "torch.Tensor | None") -> "torch.Tensor":
    """sum_i w_{y_i} over the targets that are not ignored (w = 1 without class weights)."""
    import torch

    kept = targets[targets != IGNORED_TARGET]
    if class_weights is None:
        return torch.tensor(float(kept.numel()), dtype=torch.float64, device=targets.device)
    return class_weights[kept].sum()


@dataclass
class DataParallel:
    """This process's place in a data-parallel run and the collective operations it uses."""

    rank: int
    local_rank: int
    world_size: int
    device: "torch.device"
    owns_group: bool  # initialised the process group here, so destroys it at the end

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def per_rank_batch_size(self, global_batch: int) -> int:
        return per_rank_batch_size(global_batch, self.world_size)

    # ------------------------------------------------------------------ model and RNG

    def wrap(self, model: "nn.Module") -> "nn.Module":
        """DistributedDataParallel around ``model`` (BatchNorm -> SyncBatchNorm on CUDA; the
        layers are replaced inside ``model`` itself). DDP copies rank 0's weights to all."""
        import torch
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type != "cuda":
            return DistributedDataParallel(model)
        if torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) is not model:
            raise ValueError("the model itself is a BatchNorm layer; wrap it in a module")
        return DistributedDataParallel(model, device_ids=[self.device.index],
                                       output_device=self.device.index)

    def seed_rank(self, seed: int) -> None:
        """Per-rank RNG streams for dropout and augmentation (rank 0 keeps ``seed``)."""
        from pathomics_desktop.learning.training import seed_everything

        if self.rank > 0:
            seed_everything(rank_seed(seed, self.rank))

    def restore_rng(self, checkpoint: dict, seed: int) -> None:
        """This rank's RNG state from a checkpoint; one made with another number of processes
        gives rank 0 its state and the other ranks fresh per-rank streams."""
        from pathomics_desktop.learning.training import restore_rng_state, seed_everything

        states = checkpoint.get("rng_ranks")
        if states is not None and len(states) == self.world_size:
            restore_rng_state(states[self.rank])
            return
        restore_rng_state(checkpoint["rng"])
        if self.rank > 0:
            seed_everything(rank_seed(seed, self.rank) + int(checkpoint["epoch"]))

    # ------------------------------------------------------------------ collectives

    def sum(self, values: Sequence["torch.Tensor | float"]) -> "torch.Tensor":
        """Element-wise sum over the ranks (float64, on this rank's device)."""
        import torch
        import torch.distributed as dist

        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device).reshape(())
                               for v in values])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        return bool(self.sum([float(flag)])[0].item() > 0)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    # ------------------------------------------------------------------ data

    def shard_loader(self, run, epoch: int, global_batches: list[list[int]]) -> Iterator[tuple]:
        """This rank's (images, targets) of each global batch, in the batches' order;
        padding parts carry the ignored target."""
        import torch
        from torch.utils.data import DataLoader

        parts = [shard(batch, self.rank, self.world_size) for batch in global_batches]
        options = _batch_sampler_options(run)
        # an own generator: the loader's base seed must not consume the global RNG
        generator = torch.Generator().manual_seed(rank_seed(run.config.seed * 7919 + epoch, self.rank))
        loader = DataLoader(run.train_data, batch_sampler=[part for part, _ in parts],
                            generator=generator, **options)
        for (images, targets), (_, padding) in zip(loader, parts):
            if padding:
                targets = torch.full((len(images),), IGNORED_TARGET, dtype=torch.long)
            yield images, targets

    def validate(self, run) -> float:
        """Validation loss sum(w_i l_i) / sum(w_i) over the whole validation set, each rank
        evaluating its contiguous part (eval mode, the unwrapped model)."""
        import torch
        import torch.nn.functional as F
        from torch.utils.data import DataLoader

        from pathomics_desktop.learning.training import _forward

        part, padding = shard(range(len(run.val_data)), self.rank, self.world_size)
        step = self.per_rank_batch_size(run.config.batch_size)
        batches = [] if padding else [part[i:i + step] for i in range(0, len(part), step)]

        def summed(logits, targets):
            return F.cross_entropy(logits, targets, weight=run.class_weights, reduction="sum")

        total = torch.zeros((), dtype=torch.float64, device=self.device)
        weight = torch.zeros((), dtype=torch.float64, device=self.device)
        run.model.eval()
        if batches:
            loader = DataLoader(run.val_data, batch_sampler=batches, **_batch_sampler_options(run))
            with torch.no_grad():
                for images, targets in loader:
                    loss, targets = _forward(run, images, targets, criterion=summed)
                    total += loss.double()
                    weight += target_weight_sum(targets, run.class_weights).double()
        run.model.train()
        totals = self.sum([total, weight])
        return float((totals[0] / totals[1]).item())

    def sharded_loss(self, class_weights: "torch.Tensor | None") -> ShardedCrossEntropy:
        return ShardedCrossEntropy(self, class_weights)


def _batch_sampler_options(run) -> dict[str, Any]:
    """The run's DataLoader options less ``batch_size`` (the batches are given as lists)."""
    return {k: v for k, v in run.loader_options.items() if k != "batch_size"}


def rank_device(name: str, local_rank: int) -> "torch.device":
    """The device of local rank ``local_rank``: ``cpu`` for "cpu" (and for "auto" without
    CUDA), else ``cuda:LOCAL_RANK`` (an index in ``name`` is ignored: one GPU per process)."""
    import torch

    from pathomics_desktop.learning.training import resolve_device

    device = resolve_device(name)  # UserError when CUDA is asked for but missing
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UserError(f"device {name!r}: several training processes need CUDA GPUs or the CPU")
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise UserError(f"training process LOCAL_RANK={local_rank} has no GPU: only {visible} "
                        f"visible; launch at most {visible} processes per machine")
    if device.index is not None and device.index != local_rank:
        log.info("device %s ignored: process %d uses cuda:%d", name, local_rank, local_rank)
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def data_parallel_session(config) -> Iterator[DataParallel | None]:
    """``None`` in a single process; under torchrun (WORLD_SIZE > 1) the process group
    joined (NCCL on CUDA, gloo on CPU; reused when the caller already joined one) and
    torn down at the end, and this process's :class:`DataParallel`."""
    rank, local_rank, world = launch_environment()
    if world <= 1:
        yield None
        return
    import torch
    import torch.distributed as dist

    per_rank_batch_size(config.batch_size, world)  # UserError before joining the group
    device = rank_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                rank=rank, world_size=world)
    elif (dist.get_rank(), dist.get_world_size()) != (rank, world):
        raise UserError(f"process group (rank {dist.get_rank()} of {dist.get_world_size()}) does "
                        f"not match RANK={rank}, WORLD_SIZE={world}")
    try:
        yield DataParallel(rank=rank, local_rank=local_rank, world_size=world, device=device,
                           owns_group=owns)
    finally:
        if owns:
            dist.destroy_process_group()


# --------------------------------------------------------------------------- launching


def visible_gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def requested_processes(gpus: str | int | None) -> int:
    """Training processes for ``--gpus``: "all" = every visible GPU (1 without any), else a
    positive number, at most the visible GPUs when more than one."""
    if gpus is None or str(gpus) == "1":
        return 1
    if str(gpus) == "all":
        return max(visible_gpu_count(), 1)
    try:
        count = int(gpus)
    except ValueError:
        raise UserError(f"--gpus {gpus!r}: give a number of GPUs or 'all'") from None
    if count < 1:
        raise UserError(f"--gpus {count}: give at least 1")
    visible = visible_gpu_count()
    if count > visible:
        raise UserError(f"--gpus {count}: only {visible} GPU(s) visible on this machine")
    return count


def torchrun_command(processes: int, cli_args: Sequence[str],
                     python: str | None = None) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N -m
    pathomics_desktop.cli ARGS``: N processes on this machine (rendezvous on a free local
    port), each running the CLI with ``cli_args``."""
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m", "pathomics_desktop.cli", *cli_args]


def relaunch_with_torchrun(processes: int, cli_args: Sequence[str]) -> int:
    """Run the CLI as ``processes`` data-parallel processes; their exit code (0 = all did)."""
    command = torchrun_command(processes, cli_args)
    log.info("launching %d training processes: %s", processes, " ".join(command))
    return subprocess.call(command)
