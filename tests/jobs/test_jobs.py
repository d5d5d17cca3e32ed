"""Jobs in the registry: progress, cancellation honoured at the next step (from the registry,
as another process requests it, or through the job's token, as the GUI does), failures with
tracebacks, resume, a headless worker, atomic outputs."""

from __future__ import annotations

import json

import pytest

from pathomics_desktop.jobs.core import CancelToken, JobContext, atomic_path, register_job_type
from pathomics_desktop.jobs.runner import get_job, list_jobs, request_cancel, resume, run_job, run_worker, submit

#: job name -> the steps each run of the job started, in order (one list per run)
STARTED: dict[str, list[list[int]]] = {}


def counting_job(project, params, ctx: JobContext):
    """Writes one file per step (skipping steps already done), so it can resume; records the
    steps it starts in ``STARTED``."""
    out = project.folder("jobs") / f"count-{params['name']}"
    out.mkdir(exist_ok=True)
    started = []
    STARTED.setdefault(params["name"], []).append(started)
    done = 0
    for step in range(params["steps"]):
        target = out / f"{step}.txt"
        if target.exists():
            continue
        ctx.check_cancelled()
        started.append(step)
        if params.get("crash_at") == step:
            raise RuntimeError(f"boom at step {step}")
        with atomic_path(target) as tmp:
            tmp.write_text(str(step))
        done += 1
        ctx.progress((step + 1) / params["steps"], f"step {step + 1}")
    ctx.log(f"wrote {done} files")
    return {"written": done, "folder": str(out)}


register_job_type("test-count", counting_job)


@pytest.fixture(autouse=True)
def _fresh_step_record():
    STARTED.clear()
    yield
    STARTED.clear()


def test_job_runs_records_progress_log_and_result(project, registry):
    job_id = submit(registry, "test-count", {"name": "a", "steps": 5})
    assert get_job(registry, job_id).status == "queued"
    job = run_job(project, registry, job_id)
    assert job.status == "done" and job.progress == 1.0
    assert job.result["written"] == 5 and "wrote 5 files" in job.log
    assert job.started_at and job.finished_at and job.error is None


def _cancel_when(message: str, cancel):
    """A progress echo that calls ``cancel()`` once it sees ``message`` (the user pressing
    Cancel while the job reports that step)."""
    def echo(fraction, text):
        if text == message:
            cancel()
    return echo


def _written(project, name: str) -> dict[str, str]:
    folder = project.root / "jobs" / f"count-{name}"
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_cancel_from_the_registry_is_honoured_before_the_next_step(project, registry):
    """A cancel requested in the registry (as `pathomics jobs cancel` in another process does)
    while step 7 reports its progress: step 8 never starts, no file is half-written, and
    resume does exactly the remaining steps."""
    job_id = submit(registry, "test-count", {"name": "b", "steps": 20})
    token = CancelToken(interval=0.0)  # poll the registry at every check
    job = run_job(project, registry, job_id, token=token,
                  echo=_cancel_when("step 7", lambda: request_cancel(registry, job_id)))
    assert job.status == "cancelled" and job.result is None and job.error is None
    assert STARTED["b"] == [list(range(7))]  # steps 0..6 (reported as "step 1".."step 7")
    assert _written(project, "b") == {f"{i}.txt": str(i) for i in range(7)}  # no .tmp file

    resume(registry, job_id)
    job = run_job(project, registry, job_id)
    assert job.status == "done" and job.result["written"] == 13
    assert STARTED["b"][1] == list(range(7, 20))  # nothing done twice
    assert _written(project, "b") == {f"{i}.txt": str(i) for i in range(20)}


def test_cancel_through_the_token_stops_at_the_next_check(project, registry):
    """The GUI's path: the worker's token is cancelled while step 3 reports; the job stops
    before step 4 starts, and the registry records it as cancelled."""
    job_id = submit(registry, "test-count", {"name": "t", "steps": 50})
    token = CancelToken()
    job = run_job(project, registry, job_id, token=token, echo=_cancel_when("step 3", token.cancel))
    assert job.status == "cancelled" and job.finished_at is not None
    assert STARTED["t"] == [[0, 1, 2]]
    assert sorted(_written(project, "t")) == ["0.txt", "1.txt", "2.txt"]
    assert get_job(registry, job_id).status == "cancelled"


def test_cancel_token_polls_at_most_once_per_interval():
    """``poll`` (the registry lookup) is asked at the first check, then only after
    ``interval`` seconds; with interval 0 at every check; once it says yes, the token stays
    cancelled without asking again."""
    calls = []

    def poll():
        calls.append(1)
        return len(calls) >= 3

    rare = CancelToken(poll=poll, interval=3600.0)
    assert [rare.cancelled for _ in range(5)] == [False] * 5 and len(calls) == 1
    calls.clear()
    every = CancelToken(poll=poll, interval=0.0)
    assert [every.cancelled for _ in range(5)] == [False, False, True, True, True]
    assert len(calls) == 3


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
