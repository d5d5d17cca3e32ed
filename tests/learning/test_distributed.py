"""Data-parallel training: 2 real processes (torchrun, gloo on CPU, loopback only) train a
tiny model on a SYNTHETIC tensor set to the same weights and loss curve as 1 process with
the same global batch; only rank 0 writes checkpoints; a cancel on rank 0 stops both ranks
and resuming under 2 processes repeats the uninterrupted run; splitting helpers.

The model has no BatchNorm (torch has no CPU SyncBatchNorm; on CPU each rank would
normalise with its own half-batch) and no dropout (per-rank RNG streams), so equality is
exact up to float rounding. The class-weighted scenario is built so that the two halves of
some batch carry different class weights: a per-rank weighted mean would differ there.

Run as a module (``-m tests.learning.test_distributed OUT PORT``) it is the worker each
torchrun process executes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.distributed.run import get_args_parser
from torch.utils.data import DataLoader, TensorDataset

from pathomics_desktop.cli import build_parser
from pathomics_desktop.errors import UserError
from pathomics_desktop.learning import distributed
from pathomics_desktop.learning.distributed import per_rank_batch_size, shard, torchrun_command
from pathomics_desktop.learning.project_cli import train_arguments
from pathomics_desktop.learning.training import (
    BEST_WEIGHTS_NAME,
    CHECKPOINT_NAME,
    CancelToken,
    Cancelled,
    TrainConfig,
    _epoch_generator,
    balanced_class_weights,
    train,
)

REPO = Path(__file__).resolve().parents[2]
N_TRAIN, N_VAL, BATCH = 25, 9, 8  # 4 steps per epoch, the last one of a single sample

#: scenario name -> TrainConfig keywords; "weighted" draws with the weighted sampler, AdamW
SCENARIOS = {
    "weighted_loss": dict(epochs=3, lr=0.05, batch_size=BATCH, imbalance="class_weights",
                          val_interval=4, seed=11),
    "weighted_sampler": dict(epochs=2, lr=0.01, batch_size=BATCH, imbalance="weighted_sampler",
                             optimizer="adamw", seed=5),
}
CUT_AT_CALL = 6  # rank 0's 6th progress report: step 5, the first of epoch 2


def synthetic_set(n: int, seed: int) -> TensorDataset:
    """SYNTHETIC (3, 6, 6) images, ~30% class 1 with a brighter first channel."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 6, 6, generator=gen)
    labels = (torch.rand(n, generator=gen) < 0.3).long()
    images[labels == 1, 0] += 0.8
    data = TensorDataset(images, labels)
    data.labels = labels.numpy()
    return data


class PlainNet(torch.nn.Module):
    """Conv + ReLU + global mean + linear: no BatchNorm, no dropout."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def fresh_model() -> PlainNet:
    torch.manual_seed(0)
    return PlainNet()


def datasets(name: str):
    val = synthetic_set(N_VAL, seed=2) if name == "weighted_loss" else None
    return synthetic_set(N_TRAIN, seed=1), val


def config_of(name: str) -> TrainConfig:
    return TrainConfig(progress_interval_s=0.0, device="cpu", **SCENARIOS[name])


def outcome(model, result) -> dict:
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "history": result.history, "steps": result.steps, "best_val_loss": result.best_val_loss,
            "resumed_from_epoch": result.resumed_from_epoch}


# --------------------------------------------------------------------------- the worker


def worker(out: Path, second_port: int) -> None:
    """What each torchrun process does: the scenarios, a cancelled run and its resumption, a
    batch that does not split; results in ``out/rank<r>.pt``; os.replace calls into
    ``out/runs`` recorded by an audit hook (the atomic writes of this process)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    runs = out / "runs"
    replaced: list[str] = []

    def audit(event, args):
        if event == "os.rename" and str(args[1]).startswith(str(runs)):
            replaced.append(os.path.relpath(args[1], runs))

    sys.addaudithook(audit)
    results: dict = {"replaced": replaced}
    # the first run joins and leaves the process group itself (as `pathomics train` does) ...
    model = fresh_model()
    results["weighted_loss"] = outcome(model, train(model, *datasets("weighted_loss"),
                                                    config_of("weighted_loss"), runs / "weighted_loss"))
    # ... the next ones share a group joined here (a fresh store: torchrun's keys are used)
    store = dist.TCPStore("127.0.0.1", second_port, 2, rank == 0)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=2)
    model = fresh_model()
    results["weighted_sampler"] = outcome(model, train(model, *datasets("weighted_sampler"),
                                                       config_of("weighted_sampler"), runs / "weighted_sampler"))
    token, calls = CancelToken(), []

    def progress(fraction, message):  # called on rank 0 only
        calls.append(fraction)
        if len(calls) == CUT_AT_CALL:
            token.cancel()

    try:
        train(fresh_model(), *datasets("weighted_loss"), config_of("weighted_loss"), runs / "cut",
              progress=progress, cancel=token if rank == 0 else None)
        results["cancelled"] = None
    except Cancelled as exc:
        results["cancelled"] = str(exc)
    results["progress_calls"] = len(calls)
    model = fresh_model()
    results["resumed"] = outcome(model, train(model, *datasets("weighted_loss"),
                                              config_of("weighted_loss"), runs / "cut"))
    odd = config_of("weighted_sampler")
    odd.batch_size = 7
    try:
        train(fresh_model(), *datasets("weighted_sampler"), odd, runs / "odd")
        results["odd_batch_error"] = None
    except UserError as exc:
        results["odd_batch_error"] = str(exc)
    dist.destroy_process_group()
    torch.save(results, out / f"rank{rank}.pt")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on the loopback interface."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    """Both ranks' results of the worker, launched by torchrun with 2 CPU processes."""
    out = tmp_path_factory.mktemp("ddp")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    master_port, second_port = free_ports(2)
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={master_port}",
               "-m", "tests.learning.test_distributed", str(out), str(second_port)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    print(f"2-process torchrun run: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


@pytest.fixture(scope="module")
def one_process_results(tmp_path_factory):
    """The same scenarios in this (single) process, same global batch and seeds."""
    torch.set_num_threads(1)
    results = {}
    for name in SCENARIOS:
        model = fresh_model()
        results[name] = outcome(model, train(model, *datasets(name), config_of(name),
                                             tmp_path_factory.mktemp(name)))
    return results


def assert_same_run(got: dict, expected: dict, atol: float) -> None:
    assert got["steps"] == expected["steps"]
    for key, value in expected["state"].items():
        assert torch.allclose(got["state"][key], value, rtol=0, atol=atol), key
    assert len(got["history"]) == len(expected["history"])
    for row, want in zip(got["history"], expected["history"]):
        assert row["epoch"] == want["epoch"] and row["step"] == want["step"]
        assert row["train_loss"] == pytest.approx(want["train_loss"], rel=0, abs=atol)
        assert row["lr"] == pytest.approx(want["lr"], rel=1e-12)
        if want["val_loss"] is None:
            assert row["val_loss"] is None
        else:
            assert row["val_loss"] == pytest.approx(want["val_loss"], rel=0, abs=atol)
    if expected["best_val_loss"] is None:
        assert got["best_val_loss"] is None
    else:
        assert got["best_val_loss"] == pytest.approx(expected["best_val_loss"], rel=0, abs=atol)


# --------------------------------------------------------------------------- the tests


def test_halves_of_a_batch_carry_different_class_weights():
    """The scenario exposes a per-rank weighted mean: some step's two halves have different
    sums of class weights (a per-rank mean would then weigh the halves wrongly)."""
    data, _ = datasets("weighted_loss")
    weights = balanced_class_weights(torch.bincount(torch.as_tensor(data.labels)).numpy())
    order = DataLoader(list(range(N_TRAIN)), shuffle=True, batch_size=BATCH,
                       generator=_epoch_generator(SCENARIOS["weighted_loss"]["seed"], 0))
    sums = [[weights[data.labels[shard(b.tolist(), r, 2)[0]]].sum() for r in (0, 1)]
            for b in order if len(b) >= 2]
    assert any(abs(a - b) > 0.1 for a, b in sums)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_two_processes_train_like_one_with_the_same_global_batch(
        name, two_process_results, one_process_results):
    _, ranks = two_process_results
    assert_same_run(ranks[0][name], one_process_results[name], atol=1e-6)
    for key, value in ranks[0][name]["state"].items():  # DDP keeps the ranks identical
        assert torch.equal(ranks[1][name]["state"][key], value), key
    assert ranks[1][name]["history"] == ranks[0][name]["history"]


def test_only_rank_zero_writes_checkpoints_atomically(two_process_results, one_process_results):
    out, ranks = two_process_results
    assert ranks[1]["replaced"] == []
    history = one_process_results["weighted_loss"]["history"]
    improvements = sum(1 for i, row in enumerate(history)
                       if all(row["val_loss"] < h["val_loss"] for h in history[:i]))
    replaced = ranks[0]["replaced"]
    for name, epochs in (("weighted_loss", 3), ("weighted_sampler", 2)):
        assert replaced.count(os.path.join(name, CHECKPOINT_NAME)) == epochs
    assert replaced.count(os.path.join("weighted_loss", BEST_WEIGHTS_NAME)) == improvements
    assert replaced.count(os.path.join("weighted_sampler", BEST_WEIGHTS_NAME)) == 0
    assert sorted(p.name for p in (out / "runs" / "weighted_loss").iterdir()) == ["best.pt", "last.pt"]
    assert sorted(p.name for p in (out / "runs" / "weighted_sampler").iterdir()) == ["last.pt"]
    checkpoint = torch.load(out / "runs" / "weighted_loss" / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["epoch"] == 3 and len(checkpoint["rng_ranks"]) == 2
    assert not (out / "runs" / "odd").exists()  # refused before anything was written


def test_cancel_on_rank_zero_stops_both_and_resume_repeats_the_run(two_process_results):
    out, ranks = two_process_results
    for rank in ranks:  # rank 1 had no cancel token: it stopped with rank 0, same iteration
        assert rank["cancelled"] == "training cancelled at epoch 2, step 5"
        assert rank["resumed"]["resumed_from_epoch"] == 1
    assert ranks[0]["progress_calls"] == CUT_AT_CALL and ranks[1]["progress_calls"] == 0
    assert_same_run(ranks[0]["resumed"], ranks[0]["weighted_loss"], atol=0.0)


def test_a_global_batch_not_divisible_by_the_processes_is_refused(two_process_results):
    _, ranks = two_process_results
    for rank in ranks:
        assert rank["odd_batch_error"] == (
            "batch size 7 cannot be split evenly over 2 training processes; use a multiple of 2 "
            "(the batch size is the global batch of all processes together)")
    assert per_rank_batch_size(32, 4) == 8
    with pytest.raises(UserError, match="batch size 30 cannot be split evenly over 4"):
        per_rank_batch_size(30, 4)


def test_shards_are_the_contiguous_parts_of_tensor_split():
    for n in range(1, 10):
        for world in range(1, 5):
            batch = list(range(100, 100 + n))
            parts = [shard(batch, r, world) for r in range(world)]
            expected = [t.tolist() for t in torch.tensor_split(torch.tensor(batch), world)]
            for (part, padding), want in zip(parts, expected):
                assert padding == (not want)
                assert part == (want or [100])


def test_gpus_option_relaunches_the_same_command_through_torchrun(tmp_path):
    args = build_parser().parse_args(
        ["train", "--backbone", "resnet18", "--run", "r1", "--tiny", "--epochs", "2", "--lr", "0.0123456789",
         "--batch-size", "64", "--device", "cuda", "--gpus", "all", "--project", str(tmp_path)])
    argv = train_arguments(args)
    assert "--gpus" not in argv
    again = build_parser().parse_args(argv)
    assert {**vars(again), "gpus": "all"} == vars(args)
    command = torchrun_command(4, argv, python="py")
    assert command == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4",
                       "-m", "pathomics_desktop.cli", *argv]
    launch = get_args_parser().parse_args(command[3:])  # torchrun's own reading of it
    assert (launch.nproc_per_node, launch.module, launch.training_script) == ("4", True, "pathomics_desktop.cli")
    assert launch.training_script_args == argv
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert distributed.requested_processes("1") == 1
    assert distributed.requested_processes("all") == max(visible, 1)
    too_many = max(visible + 1, 2)  # "1" always means this one process
    with pytest.raises(UserError, match=f"--gpus {too_many}: only {visible} GPU"):
        distributed.requested_processes(str(too_many))
    with pytest.raises(UserError, match="give a number of GPUs or 'all'"):
        distributed.requested_processes("two")


if __name__ == "__main__":
    worker(Path(sys.argv[1]), int(sys.argv[2]))
