"""Shared fixtures: a registry URL on both backends (a real SQLite file and a real
PostgreSQL 15 server started for the test session)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PATHOMICS_USER", "tester")

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server():
    from tests.postgres_server import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def project(db_url, tmp_path):
    """An initialised project on the parametrised backend."""
    from pathomics_desktop.registry.service import init_project

    database_url = "" if db_url.startswith("sqlite") else db_url
    return init_project(tmp_path / "study", database_url=database_url, development_center="A")


@pytest.fixture
def registry(project):
    from pathomics_desktop.registry.service import open_project_registry

    reg = open_project_registry(project)
    yield reg
    reg.dispose()
