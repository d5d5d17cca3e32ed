"""`pathomics bench tiling --quick`: output format only (timings are not asserted)."""

from __future__ import annotations

import json

from pathomics_desktop.slides import bench


def test_bench_tiling_quick(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--cache", str(tmp_path / "cache"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ratio tiler / naive" in text and "decode bound" in text
    data = json.loads(out.read_text())
    for key in ("tiler_tiles_per_s", "naive_tiles_per_s", "decode_bound_tiles_per_s", "ratio_vs_naive",
                "ratio_vs_decode_bound", "tiler_peak_rss_mb", "tissue_tiles"):
        assert key in data
    assert data["tissue_tiles"] > 0 and data["tiler_peak_rss_mb"] > 0
