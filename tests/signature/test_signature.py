"""The pathomics signature job on a synthetic demo project with fake patch predictions.

The demo cohort's survival is driven by a latent aggressiveness z; the fake predictions of
each patient's (made-up) slides shift towards P(poor) = 1 with z, so a working signature must
recover prognostic signal from the 206 aggregated features.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import CancelToken, Cancelled, JobContext
from pathomics_desktop.signature import features as feat
from pathomics_desktop.signature.evaluation import SetEvaluation, SignatureSummary, evaluate_set
from pathomics_desktop.signature.fit import (
    SignatureSettings, apply_signature, correlation_filter, fit_signature, load_signature)
from pathomics_desktop.signature.jobs import signature_job
from pathomics_desktop.stats.concordance import harrell_c
from pathomics_desktop.stats.cox import fit_cox_arrays
from pathomics_desktop.stats.km import kaplan_meier, logrank_test
from tests.signature.synthetic import write_fake_predictions

RUN = "fake"
PARAMS = {"run": RUN, "endpoint": "os", "name": "sig_os", "folds": 10, "seed": 3, "rule": "min", "xtile_perm": 200}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A demo project, fake predictions and one signature fitted through the job runner."""
    from pathomics_desktop.demo.cohort import create_demo_project
    from pathomics_desktop.jobs.runner import run_job, submit
    from pathomics_desktop.project import open_project
    from pathomics_desktop.registry.service import open_project_registry

    root = tmp_path_factory.mktemp("sig") / "demo"
    create_demo_project(root)
    mapping = write_fake_predictions(root, RUN)
    project = open_project(str(root))
    registry = open_project_registry(project)
    try:
        job = run_job(project, registry, submit(registry, "signature", PARAMS | {"slide_patients": mapping}))
    finally:
        registry.dispose()
    assert job.status == "done", job.error
    return {"root": root, "project": project, "mapping": mapping, "result": job.result}


def _cohort(demo):
    from pathomics_desktop.analytics.snapshot import cohort_frame

    return cohort_frame(demo["root"])


# ----------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------


def test_features_are_the_studys_206_columns(demo):
    root, mapping = demo["root"], demo["mapping"]
    frame = pd.read_parquet(root / "features" / f"{RUN}_features.parquet")
    names = feat.feature_names()
    assert len(names) == 206 == feat.N_FEATURES
    assert list(frame.columns) == ["study_id", *names]
    assert names[:2] == ["histo_prob_000", "histo_prob_001"] and names[100] == "histo_prob_100"
    assert names[101:103] == ["histo_pred_0", "histo_pred_1"] and names[-2:] == ["bow_pred_0", "bow_pred_1"]
    histo = frame[[n for n in names if n.startswith("histo_prob")]].to_numpy()
    np.testing.assert_allclose(histo.sum(axis=1), 1.0)
    np.testing.assert_allclose(frame[["histo_pred_0", "histo_pred_1"]].sum(axis=1), 1.0)
    # a patient with two slides: the mean of the two slides' relative frequencies, computed here
    # independently of DuckDB (round half away from zero of prob * 100)
    by_patient: dict[str, list[str]] = {}
    for slide, patient in mapping.items():
        by_patient.setdefault(patient, []).append(slide)
    patient, slides = next((p, s) for p, s in by_patient.items() if len(s) == 2)
    rel = []
    for slide in slides:
        preds = pd.read_parquet(root / "predictions" / RUN / f"{slide}.parquet")
        bins = np.floor(preds["prob"].to_numpy(dtype=float) * 100 + 0.5).astype(int)
        rel.append(np.bincount(bins, minlength=101) / len(bins))
        assert set(preds["pred"]) <= {0, 1}
    row = frame.set_index("study_id").loc[patient]
    np.testing.assert_allclose(row[names[:101]].to_numpy(dtype=float), np.mean(rel, axis=0), atol=1e-12)
    meta = json.loads((root / "features" / f"{RUN}_features.json").read_text())
    assert meta["features"] == 206 and meta["max_slides_per_patient"] == 2 and meta["unmapped_slides"] == 0


def test_tfidf_matches_sklearn_and_is_fitted_on_training_slides_only(demo):
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(0)
    counts = rng.poisson(0.7, size=(12, 101)).astype(float)
    counts[:, 5] = 0  # a term absent from training
    idf = feat.fit_idf(counts)
    reference = TfidfTransformer().fit(counts)
    np.testing.assert_allclose(idf, reference.idf_)
    new = rng.poisson(1.0, size=(4, 101)).astype(float)
    np.testing.assert_allclose(feat.tfidf(new, idf), reference.transform(new).toarray(), atol=1e-12)

    root, mapping = demo["root"], demo["mapping"]
    cohort = _cohort(demo).set_index("study_id")
    train_counts, all_counts = [], []
    for slide, patient in mapping.items():
        preds = pd.read_parquet(root / "predictions" / RUN / f"{slide}.parquet")
        c = np.bincount(np.floor(preds["prob"].to_numpy(dtype=float) * 100 + 0.5).astype(int), minlength=101)
        all_counts.append(c)
        if cohort.loc[patient, "split"] == "training":
            train_counts.append(c)
    meta = json.loads((root / "features" / f"{RUN}_features.json").read_text())
    assert meta["idf"]["training_slides"] == len(train_counts)
    np.testing.assert_allclose(meta["idf"]["prob"], feat.fit_idf(np.array(train_counts, dtype=float)))
    assert not np.allclose(meta["idf"]["prob"], feat.fit_idf(np.array(all_counts, dtype=float)))


def test_bad_prediction_files_are_named(tmp_path):
    good = pd.DataFrame({"slide_id": 1, "x": [0, 1], "y": 0, "prob": np.array([0.2, 0.7], "float32"),
                         "pred": np.array([0, 1], "int8")})
    good.to_parquet(tmp_path / "1.parquet")
    good.assign(prob=np.array([0.2, 1.5], "float32")).to_parquet(tmp_path / "2.parquet")
    with pytest.raises(UserError, match=r"2\.parquet.*outside \[0, 1\]"):
        feat.count_terms({"1": tmp_path / "1.parquet", "2": tmp_path / "2.parquet"})
    good.assign(pred=np.array([0, 3], "int8")).to_parquet(tmp_path / "3.parquet")
    with pytest.raises(UserError, match=r"3\.parquet.*other than 0/1"):
        feat.count_terms({"3": tmp_path / "3.parquet"})
    good.drop(columns="prob").to_parquet(tmp_path / "4.parquet")
    with pytest.raises(UserError, match="no column 'prob'"):
        feat.count_terms({"4": tmp_path / "4.parquet"})
    counts = feat.count_terms({"1": tmp_path / "1.parquet"})
    assert counts.prob[0, 20] == 1 and counts.prob[0, 70] == 1 and counts.pred[0].tolist() == [1, 1]
    with pytest.raises(UserError, match="no predictions folder"):
        feat.prediction_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no prediction files in"):
        feat.prediction_files(tmp_path / "empty")


# ----------------------------------------------------------------------------------------------
# the signature
# ----------------------------------------------------------------------------------------------


def test_signature_finds_the_latent_signal_and_freezes_the_cut(demo):
    from pathomics_desktop.stats.cutpoint import xtile

    root, result = demo["root"], demo["result"]
    sig = load_signature(demo["project"], "sig_os")
    scores = pd.read_parquet(root / "signature" / "sig_os_scores.parquet")
    assert list(scores.columns) == ["study_id", "score", "risk_group"]
    assert sig["run"] == RUN and sig["endpoint"] == "os" and sig["seeds"]["cv_folds"] == 3
    sel = sig["selection"]
    assert sel["features_in"] == 206
    assert len(sig["coefficients"]) >= 1 and set(sig["coefficients"]) <= set(sel["univariate"]["kept"])
    assert all(r["p"] < 0.05 for r in sel["univariate"]["rows"])
    assert sel["correlation"]["kept"] + len(sel["correlation"]["dropped"]) + len(sel["constant_removed"]) == 206

    sets = sig["sets"]
    assert sets["training"]["c_index"]["c"] > 0.6
    assert sets["training"]["hr_high_vs_low"]["hr"] > 1
    assert sets["external"]["hr_high_vs_low"]["hr"] > 1 and sets["external"]["hr_high_vs_low"]["p"] < 0.05
    assert sets["external"]["c_index"]["c"] > 0.55
    assert result["sets"]["training"]["c_index"] == sets["training"]["c_index"]["c"]
    assert {s: sets[s]["n"] for s in ("training", "internal", "external")} == {
        "training": 255, "internal": 110, "external": 302}

    # per external center, the mixed-effects (center frailty) model and the training multivariable Cox
    assert set(sig["external_centers"]) == {"B", "C"}
    assert sum(r["n"] for r in sig["external_centers"].values()) == 302
    assert sig["mixed_effects"]["hr"] > 1 and sig["mixed_effects"]["centers"] == ["A", "B", "C"]
    assert [r["term"] for r in sig["training_multivariable"]["rows"]] == list(sig["coefficients"])

    # scores are reproducible from the frozen JSON and the features file
    features = pd.read_parquet(root / "features" / f"{RUN}_features.parquet")
    again = apply_signature(sig, features)
    merged = scores.merge(again, on="study_id", suffixes=("", "_again"))
    assert len(merged) == len(scores) == 667
    np.testing.assert_allclose(merged["score"], merged["score_again"], rtol=1e-12)
    assert (merged["risk_group"] == merged["risk_group_again"]).all()

    # the cut is X-tile's on the training score, frozen and applied unchanged to the other sets
    cohort = _cohort(demo)
    data = cohort.merge(scores, on="study_id")
    cut = sig["cut"]["value"]
    assert (data["risk_group"] == np.where(data["score"] > cut, "high", "low")).all()
    train = data[data["split"] == "training"]
    assert xtile(train["os_months"], train["os_event"], train["score"], n_perm=0).cutpoint == cut
    # the locked cut is the brute-force maximum of the log-rank chi-square over EVERY distinct
    # training score leaving >= min_group_size (ceil(10% of 255) = 26) patients per group
    min_n = sig["cut"]["min_group_size"]
    assert min_n == 26 and sig["cut"]["minprop"] == 0.1
    ts, te, tx = train["os_months"].to_numpy(), train["os_event"].to_numpy(), train["score"].to_numpy()
    chi2 = {c: logrank_test(ts, te, np.where(tx <= c, "low", "high")).chisq for c in np.unique(tx)
            if min_n <= (tx <= c).sum() <= len(tx) - min_n}
    assert sig["cut"]["candidate_cuts"] == len(chi2) > 100
    best = max(chi2.values())
    assert cut == min(c for c, v in chi2.items() if v >= best * (1 - 1e-9))
    assert sig["cut"]["chisq"] == pytest.approx(best, rel=1e-9)
    for name in ("internal", "external"):
        part = data[data["split"] == name]
        assert sets[name]["n_high"] == int((part["score"] > cut).sum())
        again = evaluate_set(part["os_months"].to_numpy(), part["os_event"].to_numpy(), part["score"].to_numpy(), cut)
        assert again.to_dict() == sets[name]
        assert SetEvaluation.from_dict(sets[name]) == again  # the stored JSON reads back
    # X-tile on the external set would pick another cut: the frozen one is really the training one
    ext = data[data["split"] == "external"]
    assert xtile(ext["os_months"], ext["os_event"], ext["score"], n_perm=0).cutpoint != cut
    # no temporary files left behind by the atomic writes
    leftovers = [p for d in ("features", "signature") for p in (root / d).iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_same_seed_gives_the_same_json(demo):
    root = demo["root"]
    before = json.loads((root / "signature" / "sig_os.json").read_text())
    scores_before = pd.read_parquet(root / "signature" / "sig_os_scores.parquet")
    result = signature_job(demo["project"], PARAMS | {"slide_patients": demo["mapping"], "replace": True},
                           JobContext())
    after = json.loads((root / "signature" / "sig_os.json").read_text())
    assert after["version"] == result["version"] == before["version"] + 1
    strip = ("version", "provenance")
    assert {k: v for k, v in after.items() if k not in strip} == {k: v for k, v in before.items() if k not in strip}
    pd.testing.assert_frame_equal(pd.read_parquet(root / "signature" / "sig_os_scores.parquet"), scores_before)


def test_a_failed_refit_names_its_step_and_leaves_the_outputs(demo):
    from pathomics_desktop.jobs.runner import run_job, submit
    from pathomics_desktop.registry.service import open_project_registry

    from pathomics_desktop.signature.versions import versions

    root = demo["root"]
    before = (root / "signature" / "sig_os.json").read_bytes()
    kept = versions(demo["project"], "sig_os")
    registry = open_project_registry(demo["project"])
    try:
        params = PARAMS | {"slide_patients": demo["mapping"], "p_threshold": 1e-300, "replace": True}
        job = run_job(demo["project"], registry, submit(registry, "signature", params))
    finally:
        registry.dispose()
    assert job.status == "failed"
    assert "signature step 2 (univariate Cox): none of the" in job.error
    assert (root / "signature" / "sig_os.json").read_bytes() == before
    assert versions(demo["project"], "sig_os") == kept  # a failed fit adds no version
    assert not [p for p in (root / "signature").iterdir() if p.name.startswith(".")]


def _survival_sample(seed: int, n: int, log_hr: float, event_rate: float):
    """A marker x, exponential times with hazard exp(log_hr x) and random censoring flags."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-log_hr * x))
    return x, t, (rng.random(n) < event_rate).astype(int)


def test_degenerate_cases_raise_user_errors_naming_the_step():
    n = 80
    x, t, e = _survival_sample(1, n, 0.25, 0.8)
    ids = [f"P{i:03d}" for i in range(n)]
    features = pd.DataFrame({"study_id": ids, "f1": x})
    cohort = pd.DataFrame({"study_id": ids, "split": "training", "os_months": t, "os_event": e})
    with pytest.raises(UserError, match=r"step 3 \(LASSO-Cox\): no feature has a non-zero coefficient at lambda.1se"):
        fit_signature(features, cohort, SignatureSettings(rule="1se", p_threshold=0.5, xtile_perm=0))
    with pytest.raises(UserError, match=r"step 2 \(univariate Cox\): none of the 1 features passes p < 1e-06"):
        fit_signature(features, cohort, SignatureSettings(p_threshold=1e-6, xtile_perm=0))
    with pytest.raises(UserError, match=r"step 2 \(univariate Cox\): the training set has 0 OS event"):
        fit_signature(features, cohort.assign(os_event=0), SignatureSettings(xtile_perm=0))
    with pytest.raises(UserError, match=r"step 1 \(correlation filter\): every feature is constant"):
        fit_signature(features.assign(f1=0.5), cohort, SignatureSettings(xtile_perm=0))
    with pytest.raises(UserError, match=r"step 3 \(LASSO-Cox\): --folds 100 is larger"):
        fit_signature(features, cohort, SignatureSettings(folds=100, p_threshold=0.5, xtile_perm=0))
    with pytest.raises(UserError, match="endpoint must be 'os' or 'rfs'"):
        fit_signature(features, cohort, SignatureSettings(endpoint="dfs"))
    # a validation set where the frozen cut leaves one group: reported, never NaN
    res = evaluate_set(t, e, x, cut=100.0)
    assert res.hr is None and res.n_high == 0 and res.notes == ["one risk group only: no hazard ratio or log-rank test"]
    assert res.c_index == pytest.approx(harrell_c(t, e, x).c, abs=1e-15)
    low = kaplan_meier(t, e).median()
    assert (res.median_low, res.median_low_lower, res.median_low_upper) == low and res.median_high is None
    stored = res.to_dict()
    assert stored["km_median"] == {"high": None, "low": dict(zip(("median", "lower", "upper"), low))}
    assert stored["hr_high_vs_low"] is None and stored["logrank"] is None
    json.dumps(stored, allow_nan=False)
    assert SetEvaluation.from_dict(stored) == res


def test_set_evaluation_values_and_the_sets_that_are_not_evaluated():
    n = 120
    score, t, e = _survival_sample(5, n, 0.8, 0.75)
    cut = 0.3
    res = evaluate_set(t, e, score, cut)
    high = score > cut
    fit = fit_cox_arrays(t, e, high.astype(float), names=["high_risk"]).table()[0]
    lr = logrank_test(t, e, np.where(high, "high", "low"))
    c = harrell_c(t, e, score)
    assert (res.n, res.events, res.n_high, res.n_low) == (n, int(e.sum()), int(high.sum()), int((~high).sum()))
    assert (res.events_high, res.events_low) == (int(e[high].sum()), int(e[~high].sum()))
    assert (res.hr, res.hr_lower, res.hr_upper, res.hr_p) == (fit["hr"], fit["hr_lower"], fit["hr_upper"], fit["p"])
    assert (res.logrank_chisq, res.logrank_df, res.logrank_p) == (lr.chisq, lr.df, lr.p)
    assert (res.c_index, res.c_se, res.c_lower, res.c_upper) == (c.c, c.se, c.ci_lower, c.ci_upper)
    assert res.median_high == kaplan_meier(t[high], e[high]).median()[0]
    stored = res.to_dict()
    assert stored["c_index"] == {"c": c.c, "se": c.se, "lower": c.ci_lower, "upper": c.ci_upper}
    assert stored["hr_high_vs_low"] == {"hr": fit["hr"], "lower": fit["hr_lower"], "upper": fit["hr_upper"],
                                        "p": fit["p"]}
    assert stored["logrank"] == {"chisq": lr.chisq, "df": 1, "p": lr.p}
    assert SetEvaluation.from_dict(stored) == res
    assert f"HR high/low {fit['hr']:.2f} ({fit['hr_lower']:.2f}-{fit['hr_upper']:.2f})" in res.summary()
    # sets the fit does not evaluate keep the stored JSON's short form
    empty = SetEvaluation.not_evaluated(0, "no patients")
    assert empty.to_dict() == {"n": 0, "notes": ["no patients"]} and SetEvaluation.from_dict(empty.to_dict()) == empty
    quiet = SetEvaluation.not_evaluated(7, "no events", events=0)
    assert quiet.to_dict() == {"n": 7, "events": 0, "notes": ["no events"]}
    assert quiet.summary_row()["c_index"] is None and quiet.summary() == "n 7: no events"


def test_correlation_filter_keeps_the_earlier_column():
    rng = np.random.default_rng(2)
    a = rng.normal(size=200)
    x = np.column_stack([a, a + 0.05 * rng.normal(size=200), rng.normal(size=200), np.exp(4 * a)])
    kept, dropped = correlation_filter(x, ["a", "a_twin", "c", "exp_a"], method="pearson")
    assert kept == [0, 2, 3] and dropped[0]["feature"] == "a_twin" and dropped[0]["correlated_with"] == "a"
    kept_s, dropped_s = correlation_filter(x, ["a", "a_twin", "c", "exp_a"], method="spearman")
    assert kept_s == [0, 2] and {d["feature"] for d in dropped_s} == {"a_twin", "exp_a"}


def test_cancellation_stops_the_job_before_any_output(demo, tmp_path):
    token = CancelToken()
    token.cancel()
    calls = []
    ctx = JobContext(on_progress=lambda f, m: calls.append(f), token=token)
    params = PARAMS | {"slide_patients": demo["mapping"], "name": "never_written"}
    with pytest.raises(Cancelled):
        signature_job(demo["project"], params, ctx)
    assert not (demo["root"] / "signature" / "never_written.json").exists()
    assert calls and calls[0] == 0.0


def test_cli_show_and_fit(demo, capsys):
    from pathomics_desktop.signature import cli

    parser = argparse.ArgumentParser()
    parser.add_argument("--project")
    cli.register(parser.add_subparsers(dest="command"))
    root = str(demo["root"])
    args = parser.parse_args(["signature", "show", "sig_os", "--json", "--project", root])
    assert args.func(args) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == load_signature(demo["project"], "sig_os")
    args = parser.parse_args(["signature", "show", "sig_os", "--project", root])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    summary = SignatureSummary.from_signature(shown)
    assert text == summary.summary() + "\n"
    ext = summary.sets["external"]
    assert f"{'external':<10} {ext.n:>4} {ext.events:>4} {ext.n_high:>5}  {ext.c_index:.3f} ({ext.c_lower:.3f}-" in text
    assert f"cut {shown['cut']['value']:.4g} (X-tile" in text
    assert [line.split()[0] for line in text.splitlines() if line.startswith("  histo_") or line.startswith("  bow_")] \
        == list(shown["coefficients"])
    from pathomics_desktop.signature.versions import load_version

    first = SignatureSummary.from_signature(load_version(demo["project"], "sig_os", 1))  # what the fixture's job fitted
    assert first.to_dict() == {k: v for k, v in demo["result"].items() if k not in ("json", "scores", "features")}
    args = parser.parse_args(["signature", "show", "nope", "--project", root])
    with pytest.raises(UserError, match="signature 'nope' not found"):
        args.func(args)
    # fit through the CLI maps slides through the registry; this project has no slides
    args = parser.parse_args(["signature", "fit", "--model", RUN, "--endpoint", "rfs", "--project", root])
    assert args.func(args) == 1
    assert "none of the" in capsys.readouterr().err
