"""Jobs in the registry: progress, cancellation within 2 s, failures with tracebacks, resume,
a headless worker, atomic outputs."""

from __future__ import annotations

import json
import threading
import time

import pytest

from pathomics_desktop.jobs.core import JobContext, atomic_path, register_job_type
from pathomics_desktop.jobs.runner import get_job, list_jobs, request_cancel, resume, run_job, run_worker, submit


def counting_job(project, params, ctx: JobContext):
    """Writes one file per step (skipping steps already done), so it can resume."""
    out = project.folder("jobs") / f"count-{params['name']}"
    out.mkdir(exist_ok=True)
    done = 0
    for step in range(params["steps"]):
        target = out / f"{step}.txt"
        if target.exists():
            continue
        ctx.check_cancelled()
        if params.get("crash_at") == step:
            raise RuntimeError(f"boom at step {step}")
        time.sleep(params.get("sleep", 0.0))
        with atomic_path(target) as tmp:
            tmp.write_text(str(step))
        done += 1
        ctx.progress((step + 1) / params["steps"], f"step {step + 1}")
    ctx.log(f"wrote {done} files")
    return {"written": done, "folder": str(out)}


register_job_type("test-count", counting_job)


def test_job_runs_records_progress_log_and_result(project, registry):
    job_id = submit(registry, "test-count", {"name": "a", "steps": 5})
    assert get_job(registry, job_id).status == "queued"
    job = run_job(project, registry, job_id)
    assert job.status == "done" and job.progress == 1.0
    assert job.result["written"] == 5 and "wrote 5 files" in job.log
    assert job.started_at and job.finished_at and job.error is None


def test_cancel_takes_effect_within_two_seconds(project, registry):
    job_id = submit(registry, "test-count", {"name": "b", "steps": 400, "sleep": 0.02})
    finished = {}

    def runner():
        finished["job"] = run_job(project, registry, job_id)

    thread = threading.Thread(target=runner)
    thread.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert request_cancel(registry, job_id) == "running"
    thread.join(timeout=10)
    elapsed = time.monotonic() - t0
    assert not thread.is_alive()
    assert finished["job"].status == "cancelled" and elapsed < 2.0
    # resume continues where it stopped and finishes the rest
    resume(registry, job_id)
    job = run_job(project, registry, job_id)
    assert job.status == "done" and 0 < job.result["written"] < 400
    assert len(list((project.root / "jobs" / "count-b").glob("*.txt"))) == 400


def test_crash_leaves_failed_job_with_traceback_and_no_partial_file(project, registry):
    job_id = submit(registry, "test-count", {"name": "c", "steps": 5, "crash_at": 3})
    job = run_job(project, registry, job_id)
    assert job.status == "failed" and "boom at step 3" in job.error and "Traceback" in job.error
    folder = project.root / "jobs" / "count-c"
    assert sorted(p.name for p in folder.iterdir()) == ["0.txt", "1.txt", "2.txt"]  # no .tmp left
    with pytest.raises(Exception, match="not queued"):
        run_job(project, registry, job_id)


def test_headless_worker_runs_the_queue_and_cli(project, registry, capsys):
    from pathomics_desktop.cli import main

    ids = [submit(registry, "test-count", {"name": f"w{i}", "steps": 2}) for i in range(3)]
    cancelled = submit(registry, "test-count", {"name": "never", "steps": 2})
    assert request_cancel(registry, cancelled) == "cancelled"
    assert run_worker(project, registry, once=True) == 3
    assert {get_job(registry, i).status for i in ids} == {"done"}
    assert main(["jobs", "list", "--json", "--project", str(project.root)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["status"] for r in rows} == {"done", "cancelled"}
    assert main(["jobs", "resume", str(cancelled), "--run", "--project", str(project.root)]) == 0
    assert get_job(registry, cancelled).status == "done"
    assert len(list_jobs(registry, status="done")) == 4


def test_unknown_job_type_is_refused(registry):
    from pathomics_desktop.errors import UserError

    with pytest.raises(UserError, match="unknown job type"):
        submit(registry, "no-such-job", {})
