"""Meta-analysis against metafor::rma (DL, REML, FE) and predict() on dat.bcg and dat.hackshaw1998."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.data import clean_json, format_text
from pathomics_desktop.stats.meta import meta_analysis

HERE = Path(__file__).parent
REF = json.loads((HERE / "reference" / "markers_reference.json").read_text())
CASES = [(c, m) for c in REF["meta"] for m in c["fits"]]


@pytest.mark.parametrize("case, method", CASES, ids=lambda v: v if isinstance(v, str) else v["dataset"])
def test_matches_metafor(case, method):
    d = pd.read_csv(HERE / "data" / case["file"])
    res = meta_analysis(d.yi, d.sei, method=method.lower())
    ref = case["fits"][method]
    # the R script runs metafor's REML with threshold 1e-12 (its default 1e-5 differs ~1e-5)
    tol = 1e-8
    for key in ("estimate", "ci_lower", "ci_upper", "tau2", "i2", "pi_lower", "pi_upper"):
        assert getattr(res, key) == pytest.approx(ref[key], rel=tol, abs=tol), key
    assert res.q == pytest.approx(ref["q"], rel=1e-12)
    assert res.q_p == pytest.approx(ref["q_p"], rel=1e-8)
    keys = ("estimate", "ci_lower", "ci_upper", "tau2", "i2", "q", "q_p", "pi_lower", "pi_upper")
    assert res.to_dict() == {key: getattr(res, key) for key in keys}
    assert str(res) == res.summary() == format_text(clean_json(res.to_dict()))


def test_homogeneous_studies_have_zero_tau2():
    res = meta_analysis([0.1, 0.1, 0.1], [0.2, 0.3, 0.25], method="reml")
    assert res.tau2 == 0 and res.i2 == 0 and res.q == pytest.approx(0)


@pytest.mark.parametrize(
    "est, se, message",
    [([0.1], [0.2], "at least two"), ([0.1, 0.2], [0.2, 0.0], "positive"), ([0.1, float("nan")], [0.2, 0.1], "not finite")],
)
def test_bad_input(est, se, message):
    with pytest.raises(UserError, match=message):
        meta_analysis(est, se)
