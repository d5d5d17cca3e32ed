"""`pathomics init / import / export cohort / flow / db / variables` end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pathomics_desktop.cli import main
from tests.registry.helpers import patient, write_csv

REQUIRED_EXPORT = {"study_id", "center", "split", "included", "exclusion_reason", "os_months", "os_event",
                   "rfs_months", "rfs_event", "tnm_stage"}


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".parquet"])
def test_export_cohort_formats_and_identifiers(project, registry, tmp_path, suffix, capsys):
    from pathomics_desktop.registry.importer import import_file

    import_file(registry, write_csv(tmp_path / "p.csv", [patient("P1", name="Ann", mrn="77", birth_date="1950-02-03")]))
    out = tmp_path / f"cohort{suffix}"
    assert main(["export", "cohort", "--out", str(out), "--project", str(project.root)]) == 0
    read = {".csv": pd.read_csv, ".xlsx": pd.read_excel, ".parquet": pd.read_parquet}[suffix]
    frame = read(out)
    assert REQUIRED_EXPORT <= set(frame.columns)
    assert not {"name", "mrn", "birth_date"} & set(frame.columns)
    row = frame.iloc[0]
    assert row["tnm_stage"] == "IIB" and bool(row["included"]) and row["os_event"] == 1
    assert row["os_months"] == pytest.approx(781 / 30.4375, abs=1e-3)
    assert main(["export", "cohort", "--out", str(out), "--include-identifiers", "--project", str(project.root)]) == 0
    frame = read(out)
    assert frame.iloc[0]["name"] == "Ann"


def test_cli_end_to_end(tmp_path, capsys, monkeypatch):
    root = tmp_path / "study"
    assert main(["init", str(root), "--development-center", "A"]) == 0
    monkeypatch.setenv("PATHOMICS_PROJECT", str(root))
    good = write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2", center="B")])
    assert main(["import", str(good), "--dry-run"]) == 0
    assert "dry run" in capsys.readouterr().out
    bad = write_csv(tmp_path / "bad.csv", [patient("P3", age="old")])
    assert main(["import", str(bad)]) == 1
    assert "bad.csv, row 2, column age (value 'old')" in capsys.readouterr().out
    assert main(["import", str(good), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["created"] == 2 and report["errors"] == 0
    assert main(["split"]) == 0
    assert "internal 1, external 1" in capsys.readouterr().out
    assert main(["flow", "--json"]) == 0
    flow = json.loads(capsys.readouterr().out)
    assert flow["total"]["included"] == 2
    assert main(["db", "check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "current"
    assert main(["db", "downgrade", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "outdated" and out["backup"]
    assert main(["flow"]) == 2
    assert "pathomics db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["variables", "add", "albumin", "--type", "number", "--unit", "g/L", "--min", "0"]) == 0
    capsys.readouterr()
    assert main(["variables", "list", "--json"]) == 0
    assert any(v["name"] == "albumin" and v["custom"] for v in json.loads(capsys.readouterr().out))
    assert main(["variables", "add", "Bad Name", "--type", "number"]) == 2
    assert main(["edit", "P1", "albumin", "40"]) == 0
    assert main(["lock", "P1"]) == 0
    assert main(["edit", "P1", "albumin", "41"]) == 2
    assert "locked" in capsys.readouterr().err
    assert main(["--project", str(root), "audit", "P1"]) == 0
    assert "albumin" not in capsys.readouterr().err


def test_missing_project_is_a_clear_error(tmp_path, capsys):
    assert main(["flow", "--project", str(tmp_path / "nowhere")]) == 2
    assert "not a Pathomics project" in capsys.readouterr().err
