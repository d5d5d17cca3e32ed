"""GUI fixtures: a SYNTHETIC demo project built once per test session, copied per test so
that no test sees another's edits."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(autouse=True)
def private_settings(monkeypatch, tmp_path):
    """Every GUI test keeps its QSettings (geometry, columns, palette, recent projects) in its
    own folder, never in the user's."""
    monkeypatch.setenv("PATHOMICS_SETTINGS_DIR", str(tmp_path / "settings"))


@pytest.fixture(scope="session")
def demo_project_template(tmp_path_factory):
    """The demo cohort (873 synthetic patients) with slides for the first 4 patients."""
    from pathomics_desktop.demo.cohort import create_demo_project
    from pathomics_desktop.demo.cohort_slides import add_demo_slides
    from pathomics_desktop.project import Project

    root = tmp_path_factory.mktemp("ui-demo") / "demo"
    create_demo_project(root)
    add_demo_slides(Project.load(root), size=1024, limit=4)
    return root


@pytest.fixture
def demo_project(demo_project_template, tmp_path):
    """A private copy of the demo project (its registry may be edited freely)."""
    from pathomics_desktop.project import Project

    root = tmp_path / "demo"
    shutil.copytree(demo_project_template, root)
    return Project.load(root)


@pytest.fixture
def demo_context(qtbot, demo_project):
    """A :class:`ProjectContext` on the copied demo project, closed after the test."""
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.ui.context import ProjectContext

    ctx = ProjectContext(demo_project, open_project_registry(demo_project), user="tester")
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def scored_project_template(demo_project_template, tmp_path_factory):
    """The demo project with SYNTHETIC OS and RFS scores and risk groups written to the
    registry through the audited path, as `signature apply` writes them."""
    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.figures.bench import synthetic_scores
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.signature.apply import write_scores

    root = tmp_path_factory.mktemp("ui-scored") / "demo"
    shutil.copytree(demo_project_template, root)
    project = Project.load(root)
    scores, _cut = synthetic_scores(cohort_frame(root))
    registry = open_project_registry(project)
    try:
        for endpoint in ("os", "rfs"):
            write_scores(registry, scores, set(scores["study_id"]), endpoint,
                         reason="SYNTHETIC test scores", user="tester")
    finally:
        registry.dispose()
    return root


@pytest.fixture
def scored_context(qtbot, scored_project_template, tmp_path):
    """A :class:`ProjectContext` on a private copy of the scored demo project."""
    from pathomics_desktop.project import Project
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.ui.context import ProjectContext

    root = tmp_path / "scored"
    shutil.copytree(scored_project_template, root)
    project = Project.load(root)
    ctx = ProjectContext(project, open_project_registry(project), user="tester")
    yield ctx
    ctx.close()


@pytest.fixture
def fitted_context(qtbot, tmp_path_factory, tmp_path):
    """A :class:`ProjectContext` on a SYNTHETIC project with a fitted and applied signature
    (:func:`tests.signature.fitted.fitted_project`)."""
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.ui.context import ProjectContext
    from tests.signature.fitted import fitted_project

    project = fitted_project(tmp_path_factory, tmp_path / "fitted")
    ctx = ProjectContext(project, open_project_registry(project), user="tester")
    yield ctx
    ctx.close()
