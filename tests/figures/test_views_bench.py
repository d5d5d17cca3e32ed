"""`pathomics bench views` runs every registered view builder on a resampled SYNTHETIC cohort
(a tiny one here) and prints one line per view."""

from __future__ import annotations

from pathomics_desktop.figures import bench
from pathomics_desktop.ui.views import VIEWS


def test_every_analysis_view_is_benchmarked():
    analysis = {v for v, _title, target in VIEWS if ".analysis." in target}
    # the signature panel needs a fitted signature file: it is measured by `signature report`
    assert set(bench.VIEW_BUILDERS) == analysis - {"signature"}


def test_bench_prints_a_line_per_view(capsys):
    assert bench.main(["--patients", "400", "--repeat", "1", "--views", "km", "cox"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("bench views: 400 SYNTHETIC patients, 10 filter changes x 1")
    assert [line.split()[0] for line in out[1:]] == ["km", "cox"]
    # the cox model needs both risk groups: the "high only" filter is answered with a message
    assert "(1 filter(s) answered with a message)" in out[2]
