"""``pathomics jobs list|show|cancel|resume|worker`` and ``pathomics worker``."""

from __future__ import annotations

import json
import sys

from pathomics_desktop.registry.cli import add_project_option, opened_registry


def register(sub) -> None:
    p = sub.add_parser("jobs", help="background jobs: list, show, cancel, resume, run a headless worker")
    jsub = p.add_subparsers(dest="action", required=True)
    j = jsub.add_parser("list")
    j.add_argument("--status", choices=["queued", "running", "done", "failed", "cancelled"])
    j.add_argument("--json", action="store_true")
    add_project_option(j)
    j.set_defaults(func=cmd_list)
    for action in ("show", "cancel", "resume"):
        j = jsub.add_parser(action)
        j.add_argument("job_id", type=int)
        if action == "resume":
            j.add_argument("--run", action="store_true", help="run it now in the foreground")
        j.add_argument("--json", action="store_true")
        add_project_option(j)
        j.set_defaults(func={"show": cmd_show, "cancel": cmd_cancel, "resume": cmd_resume}[action])
    _add_worker_options(jsub.add_parser("worker", help="same as `pathomics worker`"))
    _add_worker_options(sub.add_parser(
        "worker", help="run queued jobs headless, alongside workers on other machines",
        description="Claim queued jobs (SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL), run them with "
                    "heartbeats, and requeue the jobs of workers that stopped sending heartbeats."))


def _add_worker_options(j) -> None:
    j.add_argument("--database-url", default="",
                   help="the registry (default: the project's, or $PATHOMICS_DATABASE_URL)")
    j.add_argument("--once", action="store_true", help="stop when the queue is empty")
    # defaults (None here) live in pathomics_desktop.jobs.runner
    j.add_argument("--heartbeat", type=float, default=None, metavar="S",
                   help="seconds between heartbeats of a running job (default 10)")
    j.add_argument("--lease", type=float, default=None, metavar="S",
                   help="requeue a running job whose heartbeat is older than this (default 3 x --heartbeat)")
    j.add_argument("--max-attempts", type=int, default=None, metavar="K",
                   help="a job requeued more than K times fails (default 3)")
    j.add_argument("--poll", type=float, default=2.0, metavar="S", help="seconds between looks at an empty queue")
    j.add_argument("--site", default="", metavar="NAME",
                   help="read slides through the project's [sites.NAME] path_map")
    add_project_option(j)
    j.set_defaults(func=cmd_worker)


def _row(job) -> dict:
    return {"id": job.id, "type": job.type, "status": job.status, "progress": round(job.progress or 0.0, 4),
            "message": job.message, "params": job.params, "result": job.result, "error": job.error,
            "created_at": job.created_at.isoformat() + "Z" if job.created_at else None,
            "started_at": job.started_at.isoformat() + "Z" if job.started_at else None,
            "finished_at": job.finished_at.isoformat() + "Z" if job.finished_at else None,
            "worker": job.worker, "attempts": job.attempts or 0,
            "heartbeat_at": job.heartbeat_at.isoformat() + "Z" if job.heartbeat_at else None}


def _echo(fraction, message) -> None:
    if fraction is None:
        print(f"  {message}", file=sys.stderr)
    else:
        print(f"[{fraction:6.1%}] {message}", file=sys.stderr)


def cmd_list(args) -> int:
    from pathomics_desktop.jobs.runner import list_jobs

    with opened_registry(args) as (_project, registry):
        jobs = list_jobs(registry, status=args.status)
    if args.json:
        print(json.dumps([_row(j) for j in jobs], indent=2, default=str))
    else:
        for j in jobs:
            print(f"{j.id:>5}  {j.type:<14} {j.status:<10} {j.progress:6.1%}  {j.message or ''}")
    return 0


def cmd_show(args) -> int:
    from pathomics_desktop.jobs.runner import get_job

    with opened_registry(args) as (_project, registry):
        job = get_job(registry, args.job_id)
    if args.json:
        print(json.dumps(_row(job) | {"log": job.log}, indent=2, default=str))
    else:
        row = _row(job)
        for key in ("id", "type", "status", "progress", "message", "params", "result", "created_at",
                    "started_at", "finished_at", "worker", "attempts", "heartbeat_at"):
            print(f"{key:>12}: {row[key]}")
        if job.log:
            print("log:\n" + job.log.rstrip())
        if job.error:
            print("error:\n" + job.error.rstrip())
    return 0


def cmd_cancel(args) -> int:
    from pathomics_desktop.jobs.runner import request_cancel

    with opened_registry(args) as (_project, registry):
        status = request_cancel(registry, args.job_id)
    print(f"job {args.job_id}: {'cancel requested' if status == 'running' else status}")
    return 0


def cmd_resume(args) -> int:
    from pathomics_desktop.jobs.runner import resume, run_job

    with opened_registry(args) as (project, registry):
        resume(registry, args.job_id)
        if args.run:
            job = run_job(project, registry, args.job_id, echo=_echo)
            print(f"job {job.id}: {job.status}")
            return 0 if job.status == "done" else 1
    print(f"job {args.job_id}: queued again")
    return 0


def cmd_worker(args) -> int:
    """``pathomics worker``: the project folder gives the settings (site path maps) and the
    place of outputs on this machine; ``--database-url`` the shared registry."""
    import os

    from pathomics_desktop.jobs import sites
    from pathomics_desktop.jobs.runner import run_worker, worker_id
    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry.database import open_registry

    if args.database_url:  # job functions open the registry through the project: same URL for them
        os.environ["PATHOMICS_DATABASE_URL"] = args.database_url
    project = open_project(args.project)
    sites.activate(sites.site_path_map(project, args.site))
    registry = open_registry(project.database_url)
    me = worker_id()
    print(f"worker {me} on {project.root}" + (f" (site {args.site})" if args.site else ""), file=sys.stderr,
          flush=True)
    try:
        count = run_worker(project, registry, once=args.once, echo=_echo, worker=me, heartbeat=args.heartbeat,
                           lease=args.lease, max_attempts=args.max_attempts, poll_seconds=args.poll)
    finally:
        registry.dispose()
    print(f"worker ran {count} jobs")
    return 0


def run_in_foreground(project, registry, job_type: str, params: dict) -> int:
    """Submit and run a job now (what `pathomics tile`, `train`, `infer` ... do)."""
    from pathomics_desktop.jobs.runner import run_job, submit

    job_id = submit(registry, job_type, params)
    job = run_job(project, registry, job_id, echo=_echo)
    if job.status == "failed":
        print(f"job {job.id} failed: {(job.error or '').splitlines()[0]}", file=sys.stderr)
        return 1
    if job.status == "cancelled":
        print(f"job {job.id} cancelled; `pathomics jobs resume {job.id} --run` continues it", file=sys.stderr)
        return 130
    return 0
