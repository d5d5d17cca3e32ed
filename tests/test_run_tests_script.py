"""``tests/run_tests.sh`` without root: it says what to install instead of failing inside apt."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("run_tests.sh")
ADVICE = "    sudo apt-get install postgresql\n"


def _bin_dir(tmp_path: Path, *, fake_uid: int | None = None) -> Path:
    """A PATH folder with only what the script's check needs (no initdb, no apt-get)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("dirname", "cat", "id"):
        if tool == "id" and fake_uid is not None:
            (folder / "id").write_text(f"#!/bin/sh\necho {fake_uid}\n")
            (folder / "id").chmod(0o755)
            continue
        os.symlink(shutil.which(tool), folder / tool)
    return folder


def _run(tmp_path: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {"PATH": str(bin_dir), "PATHOMICS_POSTGRES_LIB": str(tmp_path / "no-postgresql"), **env}
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env=environment, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("case", ["override", "uid 1000", "root without apt-get"])
def test_missing_postgres_without_root_prints_the_install_command(tmp_path, case):
    if case == "override":
        done = _run(tmp_path, _bin_dir(tmp_path), PATHOMICS_ASSUME_NONROOT="1")
    elif case == "uid 1000":
        done = _run(tmp_path, _bin_dir(tmp_path, fake_uid=1000))
    else:
        done = _run(tmp_path, _bin_dir(tmp_path, fake_uid=0))
    assert done.returncode == 3
    assert done.stdout == ""  # neither apt-get nor pytest ran
    assert done.stderr.startswith("The PostgreSQL server binaries (initdb, postgres) are missing.")
    assert ADVICE in done.stderr


def test_a_missing_command_module_fails_loudly(monkeypatch):
    """A capability module that cannot be imported is an installation error: the CLI raises
    instead of dropping its sub-commands without a word."""
    import pathomics_desktop.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "pathomics_desktop.not_installed_cli"))
    with pytest.raises(ModuleNotFoundError, match="pathomics_desktop.not_installed_cli"):
        cli.build_parser()
