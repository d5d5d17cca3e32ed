"""``pathomics-desktop --project DIR --screenshots OUT``: a picture and the shown numbers per
view; the study view's numbers are the cohort services' numbers."""

from __future__ import annotations

import json

import pytest
from PySide6.QtGui import QImage

from pathomics_desktop.ui import app
from pathomics_desktop.ui.views import VIEWS


@pytest.fixture(autouse=True)
def private_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("PATHOMICS_SETTINGS_DIR", str(tmp_path / "settings"))


def test_screenshots_write_a_png_and_json_per_view(qtbot, demo_project, tmp_path, capsys):
    from pathomics_desktop.cohort.flow import patient_flow
    from pathomics_desktop.registry.service import open_project_registry

    registry = open_project_registry(demo_project)
    try:
        with registry.session() as session:
            expected_flow = patient_flow(session).to_dict()  # before any view runs a job
    finally:
        registry.dispose()
    out = tmp_path / "shots"
    code = app.main(["--project", str(demo_project.root), "--screenshots", str(out), "--size", "1000x700"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    for view_id, _title, _target in VIEWS:
        image = QImage(str(out / f"{view_id}.png"))
        assert (image.width(), image.height()) == (1000, 700)
        snapshot = json.loads((out / f"{view_id}.json").read_text(encoding="utf-8"))
        assert snapshot["view"] == view_id
    study = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert study["flow"] == expected_flow
    assert {b["key"]: b["count"] for b in study["diagram"]}["set:training"] == expected_flow["total"]["training"]
    assert printed.out.splitlines() == [str(out / f"{v}.{ext}") for v, _t, _m in VIEWS for ext in ("png", "json")]


def test_screenshots_of_a_folder_that_is_no_project_fail_clearly(qtbot, tmp_path, capsys):
    code = app.main(["--project", str(tmp_path / "nothing"), "--screenshots", str(tmp_path / "shots")])
    err = capsys.readouterr().err
    assert code == 2
    assert (f"error: cannot open the project {tmp_path / 'nothing'}: {(tmp_path / 'nothing').resolve()} is not "
            "a Pathomics project") in err
    assert "Traceback" not in err


def test_screenshots_refuse_an_unknown_view(qtbot, demo_project, tmp_path, capsys):
    code = app.main(["--project", str(demo_project.root), "--screenshots", str(tmp_path / "shots"),
                     "--views", "study,histogram"])
    assert code == 2
    assert "error: unknown view(s) histogram" in capsys.readouterr().err
    assert not (tmp_path / "shots").exists()
