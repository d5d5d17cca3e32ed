"""``pathomics bench stats --quick``: output format and numerical agreement with the peers."""

from __future__ import annotations

import re

from pathomics_desktop.stats.bench import main

LINE = re.compile(
    r"^(?P<name>.+?)\s+ours\s+(?P<ours>[\d.]+) s \| (?P<peer_name>.+?)\s+(?P<peer>[\d.]+) s \| "
    r"ratio\s+(?P<ratio>[\d.]+|inf)x \| max\|diff\| (?P<diff>[\d.e+-]+)$"
)


def test_quick_benchmark_prints_one_line_per_item_and_results_agree(capsys):
    assert main(["--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("pathomics bench stats")
    items = [LINE.match(line) for line in lines[1:]]
    assert all(items), lines
    names = [m["name"] for m in items]
    assert [n.split(" (")[0] for n in names] == ["KM + log-rank", "Cox", "Harrell's C", "50 bootstrap C", "td-AUC at 3 times"]
    for m in items:
        assert float(m["ours"]) > 0 and float(m["peer"]) > 0
        tol = 1e-5 if m["name"].startswith("Cox") else 1e-8
        assert float(m["diff"]) <= tol, m.string
