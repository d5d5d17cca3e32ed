"""Test job types for the worker tests, importable by worker subprocesses
(``python -c "import tests.jobs.worker_jobs; ..."`` registers them).

``test-effect``: notes each start in an append-only journal file (``start <job id> <pid>``),
sleeps ``seconds``, and keeps its effect (a row of ``job_effects``) in the registry through
``on_done``, i.e. in the same transaction that marks the job done, so the effect exists
exactly once per job however many times the job started.
"""

from __future__ import annotations

import os
import time

from sqlalchemy import text

from pathomics_desktop.jobs.core import register_job_type

EFFECTS_TABLE = "CREATE TABLE job_effects (job_id INTEGER PRIMARY KEY, pid INTEGER NOT NULL)"

#: the script a worker subprocess runs: the ``pathomics`` CLI with the test job types registered
WORKER_SCRIPT = ("import sys, tests.jobs.worker_jobs; from pathomics_desktop.cli import main; "
                 "sys.exit(main(sys.argv[1:]))")


def effect_job(project, params, ctx):
    fd = os.open(params["journal"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"start {ctx.job_id} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    deadline = time.monotonic() + float(params.get("seconds", 0.1))
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.02)
    return {"job": ctx.job_id, "pid": os.getpid()}


def _record_effect(session, result) -> None:
    session.execute(text("INSERT INTO job_effects (job_id, pid) VALUES (:job, :pid)"),
                    {"job": result["job"], "pid": result["pid"]})


effect_job.on_done = _record_effect


def journal_starts(path) -> dict[int, list[int]]:
    """job id -> pids of the processes that started it, in order."""
    starts: dict[int, list[int]] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                _word, job, pid = line.split()
                starts.setdefault(int(job), []).append(int(pid))
    return starts


register_job_type("test-effect", effect_job)
