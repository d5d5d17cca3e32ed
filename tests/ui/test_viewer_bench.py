"""``pathomics bench viewer``: the stall attribution and a tiny real run (behaviour, not
speed: no timing is asserted)."""

from __future__ import annotations

import json

import pytest


def test_a_stall_is_attributed_to_what_overlapped_it():
    from pathomics_desktop.ui.viewer_bench import attribute_stall, describe_stall

    gap = (10.000, 10.100)
    paints = [(10.020, 10.050, 0.012, False, 0, 294, 200, 94, 12),  # inside: 30 ms
              (10.090, 10.130, 0.020, True, 0, 294, 294, 0, 0),  # half inside: 10 ms of 40
              (10.200, 10.210, 0.005, True, 1, 20, 20, 0, 0)]  # after: not counted
    batches = [(9.990, 10.010, 7), (10.060, 10.065, 3), (10.300, 10.301, 1)]  # 10 ms + 5 ms
    moves_log = [(9.500, 9.501, 4), (9.995, 10.002, 5), (10.500, 10.501, 6)]  # move 5: 2 ms inside
    moves = [("pan", 0.1, 0.2)] * 5 + [("zoom", 0.5, 0.5, 2.0), ("pan", 0.3, 0.1)]
    st = attribute_stall(gap, paints, batches, moves_log, moves)
    assert st["stall_ms"] == 100.0
    assert [p["ms"] for p in st["paints"]] == [30.0, 40.0]
    assert st["paint_ms"] == 40.0  # 30 + the 10 ms of the second paint inside the gap
    assert (st["batches"], st["batch_ms"]) == (2, 15.0)
    assert st["move"] == {"index": 5, "kind": "zoom", "factor": 2.0} and st["move_ms"] == 2.0
    assert st["other_ms"] == 100.0 - 40.0 - 15.0 - 2.0
    text = describe_stall(st)
    assert text.startswith("longest GUI stall 100.0 ms after move 6 (zoom x2)")
    assert "paint 30.0 ms (CPU 12.0 ms; level 0, 294 tiles, 200 drawn, 94 covered by 12 coarser, fast)" in text
    assert "43.0 ms outside the viewer's code" in text


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory):
    """A SYNTHETIC 2048 x 2048 px slide (two levels)."""
    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("viewer_bench")
    return write_synthetic_slide(folder / "b2048.svs", width=2048, height=2048, aggressiveness=0.5, center="A",
                                 seed=2, mpp=0.5, app_mag=20)


def test_a_tiny_run_reports_moves_paints_and_the_longest_stall(qtbot, small_slide, tmp_path, capsys):
    from pathomics_desktop.ui.viewer_bench import main

    out = tmp_path / "bench.json"
    assert main(["--slide", str(small_slide.path), "--moves", "6", "--settle-every", "3", "--no-baseline",
                 "--view", "640x480", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text(encoding="utf-8"))
    ours = result["ours"]
    assert ours["moves"] == 6 and ours["timeouts"] == 0
    assert ours["settled_moves"] == 2  # after moves 3 and 6 the bench waited for the smooth paint
    assert ours["paints"]["smooth"]["n"] >= 2 and ours["paints"]["fast"]["n"] >= 1
    worst = ours["longest_stalls"][0]
    assert worst["stall_ms"] == round(ours["stall_ms"], 1)
    parts = worst["paint_ms"] + worst["batch_ms"] + worst["move_ms"] + worst["other_ms"]
    assert parts == pytest.approx(worst["stall_ms"], abs=0.2) or worst["other_ms"] == 0.0
    assert "longest GUI stall" in printed and "smooth when still" in printed
