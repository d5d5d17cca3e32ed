"""ROC analysis for a binary outcome: AUC with DeLong CI, DeLong test of two correlated AUCs,
and the classification table at a chosen or the Youden cut.

A higher score means "positive" (pROC ``direction = "<"``: controls < cases); the AUC is not
flipped when it is below 0.5.

DeLong variance via the fast midrank algorithm (Sun X, Xu W (2014) IEEE Signal Process Lett
21:1389-1393; DeLong ER, DeLong DM, Clarke-Pearson DL (1988) Biometrics 44:837-845). With m
positives X and n negatives Y, midranks ``T_z`` over all scores, ``T_x`` within X, ``T_y`` within Y::

    AUC  = (sum_i T_z(x_i) - m (m + 1) / 2) / (m n)
    V10_i = (T_z(x_i) - T_x(x_i)) / n          V01_j = 1 - (T_z(y_j) - T_y(y_j)) / m
    S = S10 / m + S01 / n,  S10 = cov(V10), S01 = cov(V01) (across markers, ddof = 1)

The CI is ``AUC +/- 1.96 sqrt(S)`` (clipped to [0, 1]); two AUCs are compared with
``z = (A1 - A2) / sqrt(S11 + S22 - 2 S12)`` as pROC ``roc.test(method = "delong")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps
from scipy.stats import rankdata

from pathomics_desktop.errors import UserError
from pathomics_desktop.stats.results import StatResult

__all__ = ["RocResult", "check_binary", "delong_auc", "delong_test", "classification_at", "youden_cut", "roc_analysis"]

_Z975 = float(_sps.norm.ppf(0.975))


def check_binary(label, *scores, names: tuple[str, ...] = ()) -> tuple[np.ndarray, ...]:
    """Validate a 0/1 label and score arrays; returns (bool label, float scores...)."""
    y_raw = np.asarray(label).ravel()
    if y_raw.dtype == bool:
        y = y_raw
    else:
        try:
            yn = np.asarray(y_raw, dtype=float)
        except (TypeError, ValueError) as exc:
            raise UserError("the label must be 0/1 (use --event-value to name the positive class)") from exc
        if not np.isfinite(yn).all():
            raise UserError(f"the label is missing at row {int(np.flatnonzero(~np.isfinite(yn))[0])}")
        bad = ~np.isin(yn, (0.0, 1.0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(f"the label must be 0/1 (row {row} has {y_raw[row]!r}); use --event-value to name the positive class")
        y = yn == 1.0
    if y.all() or not y.any():
        raise UserError("the label has a single class: ROC analysis needs positives and negatives")
    out = [y]
    for k, s in enumerate(scores):
        name = names[k] if k < len(names) else f"score {k + 1}"
        x = np.asarray(s, dtype=float).ravel()
        if x.size != y.size:
            raise UserError(f"{name} has {x.size} values but the label has {y.size}")
        if not np.isfinite(x).all():
            raise UserError(f"{name} is missing or not finite at row {int(np.flatnonzero(~np.isfinite(x))[0])}")
        out.append(x)
    return tuple(out)


def _delong_components(y: np.ndarray, scores: np.ndarray):
    """AUCs (k,) and DeLong covariance (k, k) for score rows ``scores`` (k, N)."""
    pos = scores[:, y]
    neg = scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    tz = rankdata(np.concatenate((pos, neg), axis=1), axis=1)
    tx = rankdata(pos, axis=1)
    ty = rankdata(neg, axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((scores.shape[0],) * 2)
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((scores.shape[0],) * 2)
    return aucs, s10 / m + s01 / n


def delong_auc(label, score, level: float = 0.95) -> tuple[float, float, float, float]:
    """``(auc, se, ci_lower, ci_upper)`` with the DeLong standard error."""
    y, x = check_binary(label, score, names=("score",))
    aucs, cov = _delong_components(y, x[None, :])
    auc = float(aucs[0])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    z = float(_sps.norm.ppf(0.5 + level / 2))
    return auc, se, max(0.0, auc - z * se), min(1.0, auc + z * se)


def delong_test(label, score1, score2) -> dict:
    """DeLong test of two correlated AUCs: ``{"auc1", "auc2", "difference", "se", "z", "p"}``."""
    y, x1, x2 = check_binary(label, score1, score2, names=("score", "second score"))
    aucs, cov = _delong_components(y, np.vstack((x1, x2)))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    d = float(aucs[0] - aucs[1])
    if var <= 0:
        z, p = (0.0, 1.0) if d == 0 else (np.inf, 0.0)
    else:
        z = d / np.sqrt(var)
        p = float(2 * _sps.norm.sf(abs(z)))
    return {"auc1": float(aucs[0]), "auc2": float(aucs[1]), "difference": d, "se": float(np.sqrt(max(var, 0))), "z": float(z), "p": p}


def classification_at(label, score, cut: float) -> dict:
    """Sensitivity, specificity, PPV and NPV of the rule "score >= cut" (None when undefined)."""
    y, x = check_binary(label, score, names=("score",))
    pred = x >= cut
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    tn = int(np.sum(~pred & ~y))
    fn = int(np.sum(~pred & y))

    def ratio(a, b):
        return a / b if b > 0 else None

    return {
        "cut": float(cut),
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
    }


def youden_cut(label, score) -> float:
    """The observed score c maximising Youden's J = sensitivity + specificity - 1 of "score >= c"
    (the smallest such c when several tie)."""
    y, x = check_binary(label, score, names=("score",))
    uniq, inv = np.unique(x, return_inverse=True)
    pos = np.bincount(inv[y], minlength=uniq.size)[::-1].cumsum()[::-1]  # positives with x >= c
    neg = np.bincount(inv[~y], minlength=uniq.size)[::-1].cumsum()[::-1]
    j = pos / y.sum() + (1 - neg / (~y).sum()) - 1
    return float(uniq[int(np.flatnonzero(j == j.max())[0])])


@dataclass
class RocResult(StatResult):
    auc: float
    ci_lower: float
    ci_upper: float
    se: float
    cut: float
    sensitivity: float | None
    specificity: float | None
    ppv: float | None
    npv: float | None
    delong_p: float | None = None
    auc2: float | None = None

    def to_dict(self) -> dict:
        keys = ("auc", "ci_lower", "ci_upper", "sensitivity", "specificity", "ppv", "npv", "cut", "delong_p")
        return {k: getattr(self, k) for k in keys}


def roc_analysis(label, score, *, cut: float | None = None, vs=None) -> RocResult:
    """AUC with DeLong CI, the classification table at ``cut`` (default: Youden cut), and,
    when ``vs`` (a second score) is given, the DeLong p-value of AUC(score) vs AUC(vs)."""
    auc, se, lo, hi = delong_auc(label, score)
    c = youden_cut(label, score) if cut is None else float(cut)
    tab = classification_at(label, score, c)
    res = RocResult(auc, lo, hi, se, c, tab["sensitivity"], tab["specificity"], tab["ppv"], tab["npv"])
    if vs is not None:
        test = delong_test(label, score, vs)
        res.delong_p = test["p"]
        res.auc2 = test["auc2"]
    return res
