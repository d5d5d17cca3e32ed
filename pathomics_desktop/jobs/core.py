"""Long work as plain, Qt-free job functions with progress and cancellation.

A job function has the signature ``fn(project, params: dict, ctx: JobContext) -> dict``:
it reports progress with ``ctx.progress(fraction, message)``, writes log lines with
``ctx.log(message)``, and calls ``ctx.check_cancelled()`` (or reads ``ctx.cancelled``) often
— at least every second of work — so that a cancel takes effect within 2 seconds. It returns
plain data (ids, paths, counts). It must be resumable (skip work already done) and write
every output atomically (:func:`atomic_path`), so that a crash never leaves a half-written
file behind.

The same function runs in the CLI (foreground), in a headless worker (queued jobs) and in the
GUI (a QThread worker in ``ui/``), always recorded in the registry's ``jobs`` table.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator


class Cancelled(Exception):
    """Raised inside a job function when its cancellation was requested."""


class CancelToken:
    """A cancellation flag; ``poll`` (optional) is asked at most every ``interval`` seconds,
    e.g. to see a cancel requested from another process through the registry."""

    def __init__(self, poll: Callable[[], bool] | None = None, interval: float = 0.5):
        self._event = threading.Event()
        self._poll = poll
        self._interval = interval
        self._last = float("-inf")  # the first check always polls

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if self._event.is_set():
            return True
        if self._poll is not None:
            now = time.monotonic()
            if now - self._last >= self._interval:
                self._last = now
                try:
                    if self._poll():
                        self._event.set()
                except Exception:  # a failed poll must not kill the job
                    pass
        return self._event.is_set()


@dataclass
class JobContext:
    """What a job function gets besides its parameters."""

    on_progress: Callable[[float, str], None] = lambda fraction, message: None
    on_log: Callable[[str], None] = lambda message: None
    token: CancelToken = field(default_factory=CancelToken)
    job_id: int | None = None

    def progress(self, fraction: float, message: str = "") -> None:
        self.on_progress(min(max(float(fraction), 0.0), 1.0), message)

    def log(self, message: str) -> None:
        self.on_log(message)

    @property
    def cancelled(self) -> bool:
        return self.token.cancelled

    def check_cancelled(self) -> None:
        if self.token.cancelled:
            raise Cancelled("cancelled by the user")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    Readers never see a half-written file; a crash leaves at most a hidden ``.tmp`` file,
    which is removed here on error.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the hidden ``.NAME.PID[.TID].tmp`` files that a process killed while writing
    (SIGKILL, power loss: :func:`atomic_path`'s clean-up never ran) left in ``folder``;
    files of a process still alive on this machine are kept. A resumed job calls this
    before writing, so a crash leaves no partial file behind for good. Returns those removed."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp") if Path(folder).is_dir() else []:
        parts = tmp.name.split(".")  # ['', name..., pid, (tid,) 'tmp']
        pids = [int(p) for p in parts[-3:-1] if p.isdigit()]
        if not pids or pids[0] == os.getpid() or _process_alive(pids[0]):
            continue  # not ours to judge, or a write still in progress
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


JobFunction = Callable[[Any, dict, JobContext], dict]
_JOB_TYPES: dict[str, str | JobFunction] = {
    # type -> "module:function" (imported when the job runs) or a callable
    "slides-add": "pathomics_desktop.registry.slides:add_slides_job",
    "tiling": "pathomics_desktop.slides.jobs:tiling_job",
    "training": "pathomics_desktop.learning.jobs:training_job",
    "inference": "pathomics_desktop.learning.jobs:inference_job",
    "gradcam": "pathomics_desktop.learning.jobs:gradcam_job",
    "signature": "pathomics_desktop.signature.jobs:signature_job",
    "signature-apply": "pathomics_desktop.signature.apply:signature_apply_job",
    "demo-pipeline": "pathomics_desktop.demo.pipeline:demo_pipeline_job",
}


def register_job_type(name: str, fn: str | JobFunction) -> None:
    _JOB_TYPES[name] = fn


def job_types() -> list[str]:
    return sorted(_JOB_TYPES)


def resolve_job_function(name: str) -> JobFunction:
    import importlib

    from pathomics_desktop.errors import UserError

    target = _JOB_TYPES.get(name)
    if target is None:
        raise UserError(f"unknown job type {name!r} (known: {', '.join(job_types())})")
    if callable(target):
        return target
    module_name, func = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UserError(f"job type {name!r} is not available in this installation ({exc})") from exc
    return getattr(module, func)
