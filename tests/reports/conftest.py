"""Fixtures of the report tests: the SYNTHETIC demo project (created once per test session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A SYNTHETIC demo project (873 patients, no slides), shared read-only by the tests
    (exports only read the registry and refresh the cohort snapshot)."""
    from pathomics_desktop.demo.cohort import create_demo_project

    root = tmp_path_factory.mktemp("reports") / "demo"
    create_demo_project(root)
    return root


@pytest.fixture(scope="session")
def demo_snapshot(demo_root):
    """(project, cohort snapshot frame, project codebook) of the demo project."""
    import pandas as pd

    from pathomics_desktop.analytics.cohort_filter import AnalysisSource
    from pathomics_desktop.project import Project

    project = Project.load(demo_root)
    source = AnalysisSource.open(project)
    return project, pd.read_parquet(source.parquet), source.codebook
