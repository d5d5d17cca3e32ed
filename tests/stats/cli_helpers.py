"""Running ``pathomics analyze ... --json`` inside tests."""

from __future__ import annotations

import json

from pathomics_desktop.cli import main


def run_json(capsys, *argv) -> dict:
    """Run an analyze sub-command with ``--json``; exit 0, no NaN/Infinity, parsed output."""
    code = main(["analyze", *argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    text = out.strip()
    assert "NaN" not in text and "Infinity" not in text
    return json.loads(text)
