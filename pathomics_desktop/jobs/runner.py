"""Jobs recorded in the registry: submit, run (foreground or headless worker), cancel, resume.

Status flow: ``queued -> running -> done | failed | cancelled``; ``resume`` puts a failed or
cancelled job back to ``queued`` (job functions skip work already done). Progress is written
at most every ``PROGRESS_INTERVAL`` seconds; a cancel requested from anywhere (GUI, CLI in
another process) sets ``cancel_requested`` in the registry, which the running job's token
polls every half second, so it takes effect within 2 seconds. A crash records the traceback.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from sqlalchemy import select, update

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import Cancelled, CancelToken, JobContext, resolve_job_function
from pathomics_desktop.registry.models import Job, utcnow

PROGRESS_INTERVAL = 0.5
FINAL = ("done", "failed", "cancelled")


def submit(registry, job_type: str, params: dict[str, Any] | None = None, *, user: str = "") -> int:
    """Queue a job; returns its id."""
    resolve_job_function(job_type)  # fail early on an unknown type
    with registry.session(user=user) as session:
        job = Job(type=job_type, params=params or {}, status="queued", user=user or session.info["user"])
        session.add(job)
        session.flush()
        return job.id


def _job_in(session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise UserError(f"job {job_id} not found")
    return job


def get_job(registry, job_id: int) -> Job:
    with registry.session() as session:
        job = _job_in(session, job_id)
        session.expunge(job)
        return job


def list_jobs(registry, *, status: str | None = None, limit: int = 50) -> list[Job]:
    with registry.session() as session:
        query = select(Job).order_by(Job.id.desc()).limit(limit)
        if status:
            query = query.where(Job.status == status)
        jobs = list(session.scalars(query))
        for job in jobs:
            session.expunge(job)
        return jobs


def request_cancel(registry, job_id: int) -> str:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next check."""
    with registry.session() as session:
        job = _job_in(session, job_id)
        if job.status in FINAL:
            return job.status
        job.cancel_requested = True
        if job.status == "queued":
            job.status = "cancelled"
            job.finished_at = utcnow()
        return job.status


def resume(registry, job_id: int) -> None:
    """Put a failed or cancelled job back in the queue (it continues where it stopped)."""
    with registry.session() as session:
        job = _job_in(session, job_id)
        if job.status not in ("failed", "cancelled"):
            raise UserError(f"job {job_id} is {job.status}; only failed or cancelled jobs can be resumed")
        job.status, job.cancel_requested, job.error = "queued", False, None
        job.log = (job.log or "") + f"[{utcnow().isoformat()}Z] resumed\n"


def _claim(registry, job_id: int) -> bool:
    """Atomically move a queued job to running (two workers never run the same job)."""
    with registry.session() as session:
        result = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=utcnow(), progress=0.0))
        return result.rowcount == 1


class _Recorder:
    """Throttled progress and log writes for one job (each write its own short transaction)."""

    def __init__(self, registry, job_id: int, echo=None):
        self.registry, self.job_id, self.echo = registry, job_id, echo
        self._last = 0.0
        self._pending_log: list[str] = []

    def progress(self, fraction: float, message: str) -> None:
        if self.echo:
            self.echo(fraction, message)
        now = time.monotonic()
        if now - self._last < PROGRESS_INTERVAL and fraction < 1.0:
            return
        self._last = now
        self._write(progress=fraction, message=message)

    def log(self, message: str) -> None:
        self._pending_log.append(f"[{utcnow().isoformat()}Z] {message}")
        if self.echo:
            self.echo(None, message)
        self._flush_log()

    def _flush_log(self) -> None:
        if not self._pending_log:
            return
        lines = "\n".join(self._pending_log) + "\n"
        self._pending_log = []
        with self.registry.session() as session:
            job = session.get(Job, self.job_id)
            job.log = (job.log or "") + lines

    def _write(self, **values) -> None:
        with self.registry.session() as session:
            session.execute(update(Job).where(Job.id == self.job_id).values(**values))

    def cancel_requested(self) -> bool:
        with self.registry.session() as session:
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))


def run_job(project, registry, job_id: int, *, echo=None, token: CancelToken | None = None) -> Job:
    """Run a queued job in this thread; returns the finished job row."""
    if not _claim(registry, job_id):
        job = get_job(registry, job_id)
        raise UserError(f"job {job_id} is {job.status}, not queued")
    job = get_job(registry, job_id)
    recorder = _Recorder(registry, job_id, echo)
    token = token or CancelToken()
    token._poll = recorder.cancel_requested
    ctx = JobContext(on_progress=recorder.progress, on_log=recorder.log, token=token, job_id=job_id)
    try:
        fn = resolve_job_function(job.type)
        result = fn(project, dict(job.params or {}), ctx)
        status, error = "done", None
    except Cancelled:
        result, status, error = None, "cancelled", None
    except Exception as exc:  # recorded, not re-raised: a job failure is data
        result, status, error = None, "failed", f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
    recorder._flush_log()
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
    if status == "done":
        values.update(progress=1.0, result=_jsonable(result or {}), message="done")
    recorder._write(**values)
    return get_job(registry, job_id)


def run_worker(project, registry, *, once: bool = False, poll_seconds: float = 2.0,
               stop: CancelToken | None = None, echo=None) -> int:
    """Headless worker: run queued jobs oldest first; with ``once``, stop when the queue is
    empty. Returns the number of jobs run."""
    count = 0
    while True:
        if stop is not None and stop.cancelled:
            return count
        with registry.session() as session:
            next_id = session.scalar(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1))
        if next_id is None:
            if once:
                return count
            time.sleep(poll_seconds)
            continue
        try:
            run_job(project, registry, next_id, echo=echo)
            count += 1
        except UserError:
            continue  # claimed by another worker meanwhile


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
