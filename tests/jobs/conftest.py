"""Fixtures of the worker and fault-injection tests: a small SYNTHETIC demo project with
slides (8 slides of 1024 px, 128 px tiles), built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_slides_template(tmp_path_factory) -> Path:
    """An untiled SYNTHETIC demo project with 8 slides; copy it (:func:`copy_project`), never change it."""
    from pathomics_desktop.cli import main
    from pathomics_desktop.project import Project

    root = tmp_path_factory.mktemp("jobs-demo") / "demo"
    assert main(["demo", str(root), "--slides", "--slide-size", "1024", "--slide-limit", "8"]) == 0
    project = Project.load(root)
    project.settings["tiling"]["tile_size"] = 128
    project.save()
    return root


def copy_project(template: Path, target: Path):
    """A private copy of a project folder (registry file included), loaded."""
    from pathomics_desktop.project import Project

    shutil.copytree(template, target)
    return Project.load(target)
