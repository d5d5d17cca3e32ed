"""`make run`'s launcher: it opens the GUI only where Qt can really start a window."""

from __future__ import annotations

from pathomics_desktop import launch


def test_no_display_means_headless(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert launch.has_display() is False
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert launch.has_display() is False


def test_gui_probe_reports_an_unusable_display(monkeypatch):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("DISPLAY", ":987")  # no X server there
    ok, reason = launch.gui_available(timeout=60)
    assert ok is False and reason


def test_gui_probe_accepts_a_working_platform(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    ok, platform = launch.gui_available(timeout=60)
    assert ok is True and platform == "offscreen"
