"""Jobs recorded in the registry: submit, run (foreground or headless workers), cancel, resume.

Status flow: ``queued -> running -> done | failed | cancelled``; ``resume`` puts a failed or
cancelled job back to ``queued`` (job functions skip work already done). Progress is written
at most every ``PROGRESS_INTERVAL`` seconds; a cancel requested from anywhere (GUI, CLI in
another process) sets ``cancel_requested`` in the registry, which the running job's token
polls every half second, so it takes effect within 2 seconds. A crash records the traceback.

Several workers (processes, machines) share one queue:

* **claiming**: on PostgreSQL a worker takes the oldest queued job with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` and marks it ``running`` with its id
  (``host:pid:uuid``) and a first heartbeat in the same transaction, so two workers never
  claim the same job and never wait on each other; on SQLite (one writer at a time) a
  conditional ``UPDATE ... WHERE status = 'queued'`` does the same.
* **heartbeats**: while a job runs, a background thread stamps ``heartbeat_at`` every
  ``heartbeat`` seconds (its own short transactions; database server time on PostgreSQL, so
  the clocks of the workers' machines do not matter).
* **requeue**: any worker moves a ``running`` job whose heartbeat is older than the
  ``lease`` (default 3 heartbeats) back to ``queued`` (``attempts + 1``, a log line
  ``requeued: worker X stopped sending heartbeats at T``); after ``max_attempts`` requeues
  the job fails with a clear error instead (it probably kills its worker).
* **fencing**: every write of a running job (progress, log, the final status) is
  conditional on ``worker`` still being this worker, so a worker that was only frozen past
  its lease (not dead) cannot overwrite the run that replaced it; it notices at its next
  heartbeat and stops. A job function may define ``fn.on_done(session, result)``: it runs in
  the very transaction that marks the job done, so an effect kept in the registry happens
  exactly once even when a job ran twice. Effects on files are made idempotent by the job
  functions themselves (atomic outputs keyed by slide/job, finished work skipped).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Any

from sqlalchemy import func, select, update

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import Cancelled, CancelToken, JobContext, resolve_job_function
from pathomics_desktop.registry.models import Job, utcnow

PROGRESS_INTERVAL = 0.5
FINAL = ("done", "failed", "cancelled")
#: seconds between two heartbeats of a running job
DEFAULT_HEARTBEAT = 10.0
#: a running job whose last heartbeat is older than this many heartbeats is requeued
LEASE_HEARTBEATS = 3
#: a job requeued more often than this fails (it probably kills its worker)
DEFAULT_MAX_ATTEMPTS = 3


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
        job.worker, job.heartbeat_at, job.attempts = None, None, 0
        job.log = (job.log or "") + f"[{utcnow().isoformat()}Z] resumed\n"


def worker_id() -> str:
    """A worker's identity: ``host:pid:uuid`` (unique even when a pid is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _server_now(session) -> dt.datetime:
    """Naive UTC now on the database server (PostgreSQL), else on this machine (SQLite,
    where every writer shares this machine's clock)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.timezone("UTC", func.clock_timestamp())))
    return utcnow()


def _running_as(job_id: int, worker: str):
    """The condition fencing a running job's writes to the worker that holds it."""
    return (Job.id == job_id, Job.status == "running", Job.worker == worker)


def _claim(registry, job_id: int, worker: str | None = None) -> bool:
    """Atomically move one queued job to running under ``worker`` (two workers never run
    the same job)."""
    with registry.session() as session:
        now = _server_now(session)
        result = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=now, heartbeat_at=now, progress=0.0, worker=worker or worker_id()))
        return result.rowcount == 1


def claim_next(registry, worker: str) -> int | None:
    """Claim the oldest queued job for ``worker``; its id, or None when the queue is empty.

    PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` and the update in one transaction
    (rows locked by another worker's claim are skipped, not waited for). SQLite: the
    conditional update of :func:`_claim`, retried when another process got there first."""
    if registry.dialect == "postgresql":
        with registry.session() as session:
            job_id = session.scalar(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1)
                                    .with_for_update(skip_locked=True))
            if job_id is None:
                return None
            now = _server_now(session)
            session.execute(update(Job).where(Job.id == job_id).values(
                status="running", started_at=now, heartbeat_at=now, progress=0.0, worker=worker))
            return job_id
    while True:
        with registry.session() as session:
            job_id = session.scalar(select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1))
        if job_id is None:
            return None
        if _claim(registry, job_id, worker):
            return job_id


def requeue_stale(registry, *, lease: float, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> list[int]:
    """Requeue running jobs whose last heartbeat is older than ``lease`` seconds; returns
    their ids. A job already requeued ``max_attempts`` times fails instead; one whose cancel
    was requested is cancelled. Safe to run from every worker at once: each change is
    conditional on the heartbeat it saw; on PostgreSQL the rows are also locked with SKIP
    LOCKED in the same transaction. On SQLite each change is its own write transaction (a
    read transaction that later writes can meet a busy snapshot that no timeout resolves)."""
    changed = []
    postgres = registry.dialect == "postgresql"
    with registry.session() as session:
        now = _server_now(session)
        last_beat = func.coalesce(Job.heartbeat_at, Job.started_at)
        query = (select(Job.id, Job.type, Job.worker, Job.heartbeat_at, Job.started_at, Job.attempts,
                        Job.cancel_requested)
                 .where(Job.status == "running", last_beat < now - dt.timedelta(seconds=float(lease)))
                 .order_by(Job.id))
        if postgres:
            query = query.with_for_update(skip_locked=True)
        stale = session.execute(query).all()
        for row in stale if postgres else ():
            if session.execute(_requeue_statement(row, now, max_attempts)).rowcount == 1:
                changed.append(row.id)
    for row in () if postgres else stale:
        with registry.session() as session:
            if session.execute(_requeue_statement(row, now, max_attempts)).rowcount == 1:
                changed.append(row.id)
    return changed


def _requeue_statement(row, now: dt.datetime, max_attempts: int):
    """The conditional UPDATE that requeues (or fails, or cancels) one stale running job."""
    seen = Job.heartbeat_at == row.heartbeat_at if row.heartbeat_at is not None else Job.heartbeat_at.is_(None)
    worker, attempts = row.worker or "(unknown)", row.attempts or 0
    last = row.heartbeat_at or row.started_at
    stamp = f"{last.isoformat()}Z" if last else "an unknown time"
    if row.cancel_requested:
        values = dict(status="cancelled", finished_at=now)
        line = f"cancelled: worker {worker} stopped sending heartbeats at {stamp} after the cancel was requested"
    elif attempts >= max_attempts:
        values = dict(status="failed", finished_at=now, error=(
            f"job {row.id} ({row.type}) was requeued {attempts} times because its worker stopped sending "
            f"heartbeats (last: worker {worker} at {stamp}); it probably crashes its worker (out of memory?). "
            f"Read its log, fix the cause, then `pathomics jobs resume {row.id}`"))
        line = (f"failed: worker {worker} stopped sending heartbeats at {stamp}, requeued {attempts} times "
                f"already (limit {max_attempts})")
    else:
        values = dict(status="queued", attempts=attempts + 1, worker=None, heartbeat_at=None)
        line = f"requeued: worker {worker} stopped sending heartbeats at {stamp}"
    return (update(Job).where(Job.id == row.id, Job.status == "running", seen)
            .values(log=func.coalesce(Job.log, "") + f"[{now.isoformat()}Z] {line}\n", **values))


class _Recorder:
    """Throttled progress and log writes for one job (each write its own short transaction,
    fenced to the worker that holds the job)."""

    def __init__(self, registry, job_id: int, echo=None, worker: str | None = None):
        self.registry, self.job_id, self.echo, self.worker = registry, job_id, echo, worker
        self._last = 0.0
        self._pending_log: list[str] = []

    def _where(self):
        return _running_as(self.job_id, self.worker) if self.worker else (Job.id == self.job_id,)

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
            session.execute(update(Job).where(*self._where()).values(log=func.coalesce(Job.log, "") + lines))

    def _write(self, **values) -> bool:
        with self.registry.session() as session:
            return session.execute(update(Job).where(*self._where()).values(**values)).rowcount == 1

    def cancel_requested(self) -> bool:
        with self.registry.session() as session:
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))


class _Heartbeat(threading.Thread):
    """Stamps ``heartbeat_at`` of a running job every ``interval`` seconds. When the job is
    no longer this worker's (requeued after a freeze longer than the lease), it cancels the
    job's token and sets ``lost``."""

    def __init__(self, registry, job_id: int, worker: str, interval: float, token: CancelToken):
        super().__init__(name=f"heartbeat-job-{job_id}", daemon=True)
        self.registry, self.job_id, self.worker, self.interval, self.token = registry, job_id, worker, interval, token
        self.lost = False
        self._stop_event = threading.Event()

    def beat(self) -> bool:
        with self.registry.session() as session:
            now = _server_now(session)
            return session.execute(update(Job).where(*_running_as(self.job_id, self.worker))
                                   .values(heartbeat_at=now)).rowcount == 1

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                if not self.beat():
                    self.lost = True
                    self.token.cancel()
                    return
            except Exception as exc:  # the database is briefly unreachable: try again next time
                print(f"job {self.job_id}: heartbeat failed ({exc})", file=sys.stderr)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=max(self.interval, 1.0) + 5.0)


def _execute(project, registry, job_id: int, worker: str, *, echo=None, token: CancelToken | None = None,
             heartbeat: float = DEFAULT_HEARTBEAT) -> Job:
    """Run a job already claimed by ``worker``, with heartbeats; record its outcome unless
    the job was taken from this worker meanwhile."""
    job = get_job(registry, job_id)
    recorder = _Recorder(registry, job_id, echo, worker)
    token = token or CancelToken()
    token._poll = recorder.cancel_requested
    ctx = JobContext(on_progress=recorder.progress, on_log=recorder.log, token=token, job_id=job_id)
    beats = _Heartbeat(registry, job_id, worker, heartbeat, token)
    beats.start()
    fn = None
    try:
        try:
            fn = resolve_job_function(job.type)
            result = fn(project, dict(job.params or {}), ctx)
            status, error = "done", None
        except Cancelled:
            result, status, error = None, "cancelled", None
        except Exception as exc:  # recorded, not re-raised: a job failure is data
            result, status, error = None, "failed", f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
    finally:
        beats.stop()
    if beats.lost:
        if echo:
            echo(None, f"job {job_id} was requeued while this worker ({worker}) was not sending heartbeats; "
                       "its outcome here is discarded")
        return get_job(registry, job_id)
    recorder._flush_log()
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
    if status == "done":
        values.update(progress=1.0, result=_jsonable(result or {}), message="done")
    try:
        with registry.session() as session:
            finished = session.execute(update(Job).where(*_running_as(job_id, worker)).values(**values)).rowcount == 1
            if finished and status == "done" and callable(getattr(fn, "on_done", None)):
                fn.on_done(session, result)  # committed with the status, or not at all
    except Exception as exc:  # the effect failed: nothing of it was committed, the job failed
        values = {"status": "failed", "finished_at": utcnow(),
                  "error": f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"}
        with registry.session() as session:
            finished = session.execute(update(Job).where(*_running_as(job_id, worker)).values(**values)).rowcount == 1
    if not finished and echo:
        echo(None, f"job {job_id} is no longer this worker's ({worker}); its outcome here is discarded")
    return get_job(registry, job_id)


def run_job(project, registry, job_id: int, *, echo=None, token: CancelToken | None = None,
            worker: str | None = None, heartbeat: float = DEFAULT_HEARTBEAT) -> Job:
    """Run a queued job in this thread (sending heartbeats); returns the finished job row."""
    worker = worker or worker_id()
    if not _claim(registry, job_id, worker):
        job = get_job(registry, job_id)
        raise UserError(f"job {job_id} is {job.status}, not queued")
    return _execute(project, registry, job_id, worker, echo=echo, token=token, heartbeat=heartbeat)


def run_worker(project, registry, *, once: bool = False, poll_seconds: float = 2.0,
               stop: CancelToken | None = None, echo=None, worker: str | None = None,
               heartbeat: float | None = None, lease: float | None = None,
               max_attempts: int | None = None) -> int:
    """Headless worker: requeue the jobs of dead workers, then claim and run queued jobs
    oldest first; with ``once``, stop when the queue is empty. ``lease`` (default
    ``LEASE_HEARTBEATS * heartbeat`` seconds) is how old a heartbeat may get before its job
    is requeued; ``None`` takes the defaults. Returns the number of jobs run."""
    heartbeat = DEFAULT_HEARTBEAT if heartbeat is None else float(heartbeat)
    max_attempts = DEFAULT_MAX_ATTEMPTS if max_attempts is None else int(max_attempts)
    if heartbeat <= 0:
        raise UserError(f"--heartbeat {heartbeat}: give a positive number of seconds")
    lease = float(lease) if lease is not None else LEASE_HEARTBEATS * heartbeat
    if lease <= heartbeat:
        raise UserError(f"--lease {lease:g}: must be longer than --heartbeat {heartbeat:g} "
                        f"(e.g. {LEASE_HEARTBEATS * heartbeat:g} s), or live jobs get requeued")
    worker = worker or worker_id()
    count = 0
    while True:
        if stop is not None and stop.cancelled:
            return count
        for job_id in requeue_stale(registry, lease=lease, max_attempts=max_attempts):
            if echo:
                status = get_job(registry, job_id).status
                echo(None, f"job {job_id}: its worker stopped sending heartbeats; "
                           + {"queued": "requeued"}.get(status, status))
        job_id = claim_next(registry, worker)
        if job_id is None:
            if once:
                return count
            time.sleep(poll_seconds)
            continue
        _execute(project, registry, job_id, worker, echo=echo, heartbeat=heartbeat)
        count += 1


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
