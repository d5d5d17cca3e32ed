"""A SYNTHETIC demo project with a real frozen signature, fitted and applied, for the tests of
the views and services that read signatures (cutpoint, signature panel, lock-cut).

The signature is fitted by the real job (features from fake patch predictions, three-tier
selection, LASSO-Cox, X-tile cut) and applied to every center (scores and risk groups in the
registry). It is built once per test process and copied for every caller, so no test sees
another's edits.
"""

from __future__ import annotations

import shutil
from pathlib import Path

NAME = "sig_os"
RUN = "fake"
FIT_PARAMS = {"run": RUN, "endpoint": "os", "name": NAME, "folds": 5, "seed": 3, "xtile_perm": 20}

_TEMPLATE: dict[str, Path] = {}


def run_to_done(project, job_type: str, params: dict):
    """Submit and run one job in this process; it must end done (its error otherwise)."""
    from pathomics_desktop.jobs.runner import run_job, submit
    from pathomics_desktop.registry.service import open_project_registry

    registry = open_project_registry(project)
    try:
        job = run_job(project, registry, submit(registry, job_type, params))
    finally:
        registry.dispose()
    assert job.status == "done", job.error
    return job


def _build(root: Path) -> None:
    from pathomics_desktop.demo.cohort import create_demo_project
    from pathomics_desktop.project import open_project
    from tests.signature.synthetic import write_fake_predictions

    create_demo_project(root)
    mapping = write_fake_predictions(root, RUN, patches=60)
    project = open_project(str(root))
    run_to_done(project, "signature", FIT_PARAMS | {"slide_patients": mapping})
    run_to_done(project, "signature-apply", {"name": NAME, "all": True, "slide_patients": mapping})


def fitted_project(tmp_path_factory, dest: Path):
    """A private copy (at ``dest``) of the demo project with signature ``sig_os`` fitted and
    applied to every center; returns the opened :class:`~pathomics_desktop.project.Project`."""
    from pathomics_desktop.project import Project

    if "root" not in _TEMPLATE:
        root = tmp_path_factory.mktemp("fitted-signature") / "demo"
        _build(root)
        _TEMPLATE["root"] = root
    shutil.copytree(_TEMPLATE["root"], dest)
    return Project.load(dest)
