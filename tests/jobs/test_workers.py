"""Workers on several machines: claiming (SKIP LOCKED on PostgreSQL, a conditional update on
SQLite), heartbeats, requeue of a dead worker's job (then failure after K requeues), fencing of
a worker frozen past its lease, exactly-once processing by 4 worker processes of which one is
SIGKILLed half-way, and the per-site path map."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text, update

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs import sites
from pathomics_desktop.jobs.core import register_job_type
from pathomics_desktop.jobs.runner import (
    _claim, claim_next, get_job, list_jobs, requeue_stale, resume, run_job, run_worker, submit)
from pathomics_desktop.registry.models import Job
from tests.jobs.worker_jobs import EFFECTS_TABLE, WORKER_SCRIPT, journal_starts

REPO = Path(__file__).resolve().parents[2]


def _age_heartbeat(registry, job_id: int, seconds: float) -> dt.datetime:
    """Set the job's last heartbeat ``seconds`` into the past (database server time); returns it."""
    with registry.session() as session:
        now = session.scalar(text("SELECT timezone('UTC', clock_timestamp())")) if registry.dialect == "postgresql" \
            else dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        stamp = now - dt.timedelta(seconds=seconds)
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=stamp))
    return stamp


def test_concurrent_claims_take_every_job_exactly_once(project, registry, tmp_path):
    ids = [submit(registry, "test-effect", {"journal": str(tmp_path / "j")}) for _ in range(30)]
    claimed: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        got = claimed.setdefault(name, [])
        while (job_id := claim_next(registry, name)) is not None:
            got.append(job_id)

    threads = [threading.Thread(target=claimer, args=(f"host:{i}:t",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [j for got in claimed.values() for j in got]
    assert sorted(every) == ids  # each job claimed once, none lost
    owner = {j: name for name, got in claimed.items() for j in got}
    for job in list_jobs(registry, limit=100):
        assert job.status == "running" and job.worker == owner[job.id] and job.heartbeat_at is not None


def test_stale_job_is_requeued_with_a_log_line_and_fails_after_k_requeues(project, registry, tmp_path):
    job_id = submit(registry, "test-effect", {"journal": str(tmp_path / "j")})
    fresh = submit(registry, "test-effect", {"journal": str(tmp_path / "j")})
    assert _claim(registry, fresh, "alive:2:b")
    for attempt in range(1, 3):
        assert _claim(registry, job_id, f"gone:1:{attempt}")
        stamp = _age_heartbeat(registry, job_id, 60)
        assert requeue_stale(registry, lease=30, max_attempts=2) == [job_id]  # the fresh one stays
        job = get_job(registry, job_id)
        assert (job.status, job.attempts, job.worker, job.heartbeat_at) == ("queued", attempt, None, None)
        assert f"requeued: worker gone:1:{attempt} stopped sending heartbeats at {stamp.isoformat()}Z" in job.log
    assert get_job(registry, fresh).status == "running"
    assert _claim(registry, job_id, "gone:1:3")
    _age_heartbeat(registry, job_id, 60)
    assert requeue_stale(registry, lease=30, max_attempts=2) == [job_id]
    job = get_job(registry, job_id)
    assert job.status == "failed" and job.attempts == 2
    assert f"job {job_id} (test-effect) was requeued 2 times" in job.error
    assert f"pathomics jobs resume {job_id}" in job.error
    resume(registry, job_id)  # the way back: a fresh start of the count
    job = get_job(registry, job_id)
    assert (job.status, job.attempts, job.worker) == ("queued", 0, None)


def test_requeued_job_whose_cancel_was_requested_is_cancelled(project, registry, tmp_path):
    job_id = submit(registry, "test-effect", {"journal": str(tmp_path / "j")})
    assert _claim(registry, job_id, "gone:1:x")
    with registry.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    _age_heartbeat(registry, job_id, 60)
    assert requeue_stale(registry, lease=30) == [job_id]
    assert get_job(registry, job_id).status == "cancelled"


def test_running_job_sends_heartbeats(project, registry, tmp_path):
    """Between two looks during a 1.5 s job beating every 0.1 s the heartbeat moved on."""
    seen = []

    def watched(project_, params, ctx):
        for _ in range(3):
            time.sleep(0.5)
            seen.append(get_job(registry, ctx.job_id).heartbeat_at)
        return {}

    register_job_type("test-watched", watched)
    job = run_job(project, registry, submit(registry, "test-watched"), heartbeat=0.1)
    assert job.status == "done"
    assert seen[0] < seen[1] < seen[2]


def test_worker_frozen_past_its_lease_cannot_overwrite_the_run_that_replaced_it(project, registry, tmp_path):
    """While job A runs, its heartbeat goes stale, another worker requeues and claims it: the
    first worker's heartbeat thread notices, cancels its run, and its outcome (status and
    the ``on_done`` effect) is discarded; the job stays the new worker's."""
    effects = []

    def frozen(project_, params, ctx):
        _age_heartbeat(registry, ctx.job_id, 120)
        assert requeue_stale(registry, lease=60) == [ctx.job_id]
        assert claim_next(registry, "rescuer:9:z") == ctx.job_id
        time.sleep(1.0)  # the first worker's next heartbeats find the job taken
        return {"done by": "the frozen worker"}

    frozen.on_done = lambda session, result: effects.append(result)
    register_job_type("test-frozen", frozen)
    job = run_job(project, registry, submit(registry, "test-frozen"), heartbeat=0.1, worker="frozen:1:a")
    assert (job.status, job.worker, job.attempts, job.result) == ("running", "rescuer:9:z", 1, None)
    assert effects == []


def test_worker_options_are_checked(project, registry):
    with pytest.raises(UserError, match="--lease 1: must be longer than --heartbeat 2"):
        run_worker(project, registry, once=True, heartbeat=2, lease=1)


def _effects(registry) -> list[tuple[int, int]]:
    with registry.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT job_id, pid FROM job_effects ORDER BY job_id"))]


def test_four_workers_process_100_jobs_exactly_once_when_one_is_killed(postgres_server, tmp_path):
    """4 ``pathomics worker`` processes on a real PostgreSQL server, 100 jobs of 0.15 s;
    worker 0 is SIGKILLed half-way, in the middle of a job (frozen with SIGSTOP to
    see that it holds a started job, then killed). Its job is requeued by the others
    after the lease (attempts 1, the log line naming the dead worker) and every job is done
    exactly once: one effect row per job, written by the process that marked it done; each
    job started 1 + attempts times (the killed job twice)."""
    from pathomics_desktop.registry.service import init_project, open_project_registry

    url = postgres_server.create_database()
    project = init_project(tmp_path / "study", database_url=url)
    registry = open_project_registry(project)
    procs: list[subprocess.Popen] = []
    try:
        with registry.engine.begin() as conn:
            conn.execute(text(EFFECTS_TABLE))
        journal = tmp_path / "journal.txt"
        ids = [submit(registry, "test-effect", {"journal": str(journal), "seconds": 0.15}) for _ in range(100)]
        env = dict(os.environ, PYTHONPATH=str(REPO), PATHOMICS_DATABASE_URL="")
        logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(4)]
        for i in range(4):
            procs.append(subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT, "worker", "--database-url", url,
                 "--project", str(project.root), "--heartbeat", "0.5", "--lease", "4", "--poll", "0.2"],
                cwd=REPO, env=env, stdout=logs[i], stderr=subprocess.STDOUT))
        victim = procs[0]

        def status_counts() -> Counter:
            return Counter(j.status for j in list_jobs(registry, limit=200))

        deadline = time.monotonic() + 120
        killed_job = None
        while killed_job is None:  # half-way, with the victim inside a job it has started
            assert time.monotonic() < deadline, "workers made no progress"
            if status_counts()["done"] >= 50:
                victim.send_signal(signal.SIGSTOP)  # frozen: what it holds stays as it is while we look
                time.sleep(0.1)
                running = [j for j in list_jobs(registry, status="running", limit=10)
                           if j.worker and j.worker.split(":")[1] == str(victim.pid)]
                if running and victim.pid in journal_starts(journal).get(running[0].id, []):
                    victim.send_signal(signal.SIGKILL)
                    killed_job = running[0]
                else:  # between two jobs: let it go on and look again
                    victim.send_signal(signal.SIGCONT)
            time.sleep(0.02)
        victim.wait()
        while status_counts()["done"] < 100:
            assert time.monotonic() < deadline, f"not all jobs done: {status_counts()}"
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    try:
        jobs = {j.id: j for j in list_jobs(registry, limit=200)}
        effects = _effects(registry)
    finally:
        registry.dispose()
        postgres_server.drop_database(url)
    assert sorted(jobs) == ids and all(j.status == "done" for j in jobs.values())
    assert [job_id for job_id, _pid in effects] == ids  # one effect per job (and the key is unique)
    for job_id, pid in effects:  # written by the worker that marked the job done
        assert jobs[job_id].worker.split(":")[1] == str(pid) == str(jobs[job_id].result["pid"])
    rescued = jobs[killed_job.id]
    assert rescued.attempts >= 1 and rescued.worker != killed_job.worker
    assert f"requeued: worker {killed_job.worker} stopped sending heartbeats at" in rescued.log
    starts = journal_starts(tmp_path / "journal.txt")
    assert starts[killed_job.id][0] == victim.pid
    for job_id, job in jobs.items():
        assert len(starts[job_id]) == 1 + job.attempts, (job_id, starts[job_id], job.log)
    finishers = Counter(j.worker.split(":")[1] for j in jobs.values())
    assert str(victim.pid) in finishers and len(finishers) == 4  # every worker took part


def test_path_map_takes_the_longest_whole_component_prefix():
    path_map = {"/mnt/slides": "/data/slides", "/mnt/slides/center-b": "/b", "//nas/path": "/srv/nas"}
    assert sites.map_path("/mnt/slides/A/P1.svs", path_map) == "/data/slides/A/P1.svs"
    assert sites.map_path("/mnt/slides/center-b/P2.svs", path_map) == "/b/P2.svs"
    assert sites.map_path("/mnt/slides2/P3.svs", path_map) == "/mnt/slides2/P3.svs"  # not a component match
    assert sites.map_path("\\\\nas\\path\\x\\P4.svs", path_map) == "/srv/nas/x/P4.svs"
    assert sites.map_path("/mnt/slides", path_map) == "/data/slides"
    assert sites.map_path("/elsewhere/P5.svs", path_map) == "/elsewhere/P5.svs"


def test_site_path_map_is_read_from_the_project_and_checked(tmp_path):
    from pathomics_desktop.project import Project

    project = Project.create(tmp_path / "p")
    project.settings["sites"] = {"lyon": {"path_map": {"/mnt/slides": "/data/slides"}}, "bad": {"path_map": ["x"]}}
    assert sites.site_path_map(project, "lyon") == {"/mnt/slides": "/data/slides"}
    assert sites.site_path_map(project, "") == {}
    with pytest.raises(UserError, match=r"\[sites.paris\]: no such site \(sites configured: bad, lyon\)"):
        sites.site_path_map(project, "paris")
    with pytest.raises(UserError, match=r"\[sites.bad\] path_map: expected a table"):
        sites.site_path_map(project, "bad")


def test_worker_with_a_site_reads_slides_through_its_path_map(demo_slides_template, tmp_path):
    """Slides registered under a prefix that does not exist on this machine are read through
    ``[sites.lab] path_map`` by ``pathomics worker --site lab``; the tile index is the one
    tiling the slide at its real path gives."""
    import pandas as pd

    from pathomics_desktop.cli import main
    from pathomics_desktop.registry.service import open_project_registry
    from tests.jobs.conftest import copy_project

    reference = copy_project(demo_slides_template, tmp_path / "reference")
    registry = open_project_registry(reference)
    try:
        assert run_job(reference, registry, submit(registry, "tiling", {"slide_ids": [1]})).status == "done"
    finally:
        registry.dispose()
    project = copy_project(demo_slides_template, tmp_path / "site")
    registry = open_project_registry(project)
    try:
        with registry.engine.begin() as conn:
            real = Path(conn.execute(text("SELECT path FROM slides WHERE id = 1")).scalar_one()).parent
            conn.execute(text("UPDATE slides SET path = :prefix || substr(path, :n)"),  # registered elsewhere
                         {"prefix": "/mnt/registered/slides", "n": len(str(real)) + 1})
            registered = conn.execute(text("SELECT path FROM slides WHERE id = 1")).scalar_one()
        assert registered.startswith("/mnt/registered/slides/") and not Path(registered).exists()
        project.settings["sites"] = {"lab": {"path_map": {"/mnt/registered/slides": str(real)}}}
        project.save()
        job_id = submit(registry, "tiling", {"slide_ids": [1]})
        try:
            assert main(["worker", "--once", "--site", "lab", "--heartbeat", "0.5",
                         "--project", str(project.root)]) == 0
        finally:
            sites.activate({})
        job = get_job(registry, job_id)
    finally:
        registry.dispose()
    assert job.status == "done" and job.result["counts"]["ok"] == 1, job.error or job.log
    pd.testing.assert_frame_equal(pd.read_parquet(project.root / "tiles" / "1.parquet"),
                                  pd.read_parquet(reference.root / "tiles" / "1.parquet"))


def test_jobs_worker_alias_runs_the_queue_once(project, registry, tmp_path):
    from pathomics_desktop.cli import main

    with registry.engine.begin() as conn:
        conn.execute(text(EFFECTS_TABLE))
    ids = [submit(registry, "test-effect", {"journal": str(tmp_path / "j"), "seconds": 0}) for _ in range(3)]
    assert main(["jobs", "worker", "--once", "--project", str(project.root)]) == 0
    assert [j.status for j in list_jobs(registry)] == ["done"] * 3
    assert [job_id for job_id, _pid in _effects(registry)] == ids
    assert journal_starts(tmp_path / "j") == {i: [os.getpid()] for i in ids}
