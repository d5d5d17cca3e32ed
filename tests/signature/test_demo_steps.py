"""The headless demo's steps fail loudly: a failed job raises a message naming the step, the
job and its error, and is never printed as a result."""

from __future__ import annotations

import pytest

from pathomics_desktop.demo.pipeline import DemoStepFailed, run_demo_job, signature_text
from pathomics_desktop.errors import UserError


@pytest.fixture
def empty_project(tmp_path):
    from pathomics_desktop.registry.service import init_project

    return init_project(tmp_path / "p", synthetic=True)


def test_a_failed_job_raises_a_message_naming_the_step_and_the_job(empty_project):
    from pathomics_desktop.jobs.runner import get_job
    from pathomics_desktop.registry.service import open_project_registry

    registry = open_project_registry(empty_project)
    try:
        with pytest.raises(DemoStepFailed) as info:
            run_demo_job(empty_project, registry, "signature", {"run": "nosuchrun"}, step="signature fit (OS)")
        message = str(info.value)
        job_id = int(message.split("job ")[1].split(" ")[0])
        job = get_job(registry, job_id)
    finally:
        registry.dispose()
    assert isinstance(info.value, UserError)  # launch.py and the CLI print it and exit with status 2
    assert job.status == "failed" and job.type == "signature"
    first_line = job.error.splitlines()[0]
    assert message == (f"demo step 'signature fit (OS)' failed: job {job_id} (signature) failed: {first_line} "
                       f"(details: `pathomics jobs show {job_id} --project {empty_project.root}`)")
    assert "no predictions folder" in first_line


def test_the_signature_step_raises_instead_of_printing_a_failed_fit(empty_project):
    with pytest.raises(DemoStepFailed, match=r"demo step 'signature fit \(RFS\)' failed: .*no predictions folder"):
        signature_text(empty_project, "rfs")
    assert not (empty_project.root / "signature" / "demo_rfs.json").exists()

