"""Model comparison as in the study's Figure 3A-C and Table S1.

For each model run and each data set (training, internal, external): ROC AUC with the DeLong
95% CI at patch level (every tile carries its patient's label) and at slide level (the mean
patch probability of the slide), sensitivity, specificity, PPV and NPV at the Youden cut, and
the ROC curve points for plotting; DeLong tests between runs on the same slides/tiles.
Only labelled patients (poor / good prognosis) enter.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from pathomics_desktop.errors import UserError

SETS = ("training", "internal", "external")


def _labelled_predictions(project, run: str):
    import pandas as pd

    from pathomics_desktop.learning.project_data import project_slides

    folder = project.root / "predictions" / run
    if not folder.exists():
        raise UserError(f"no predictions for model run {run!r}: run `pathomics infer --model {run}`")
    slides = {s.slide_id: s for s in project_slides(project) if s.label is not None}
    frames = []
    for path in sorted(folder.glob("*.parquet")):
        sid = int(path.stem)
        if sid in slides:
            f = pd.read_parquet(path, columns=["slide_id", "x", "y", "prob"])
            f["label"], f["split"] = slides[sid].label, slides[sid].split
            frames.append(f)
    if not frames:
        raise UserError(f"model run {run!r} has no predictions for labelled patients")
    return pd.concat(frames, ignore_index=True)


def _roc_block(label: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import roc_curve

    from pathomics_desktop.stats.roc import roc_analysis

    if len(np.unique(label)) < 2:
        return {"auc": None, "note": "only one class in this set", "n": int(label.size)}
    res = roc_analysis(label, score)
    fpr, tpr, _ = roc_curve(label, score)
    out = res.to_dict()
    out.pop("delong_p")
    out.update(n=int(label.size), positives=int(label.sum()), fpr=fpr.round(5).tolist(), tpr=tpr.round(5).tolist())
    return out


def compare_runs(project, runs: list[str]) -> dict[str, Any]:
    from pathomics_desktop.stats.roc import delong_test

    preds = {run: _labelled_predictions(project, run) for run in runs}
    result: dict[str, Any] = {"runs": runs, "sets": {}}
    for split in SETS:
        block: dict[str, Any] = {"patch": {}, "slide": {}, "delong": []}
        slide_scores, patch_scores = {}, {}
        for run, frame in preds.items():
            part = frame[frame["split"] == split]
            if part.empty:
                continue
            patch_scores[run] = part.set_index(["slide_id", "x", "y"])
            slide = part.groupby("slide_id").agg(prob=("prob", "mean"), label=("label", "first"))
            slide_scores[run] = slide
            block["patch"][run] = _roc_block(part["label"].to_numpy(), part["prob"].to_numpy())
            block["slide"][run] = _roc_block(slide["label"].to_numpy(), slide["prob"].to_numpy())
        for a, b in combinations(list(slide_scores), 2):
            for level, scores in (("slide", slide_scores), ("patch", patch_scores)):
                joined = scores[a].join(scores[b], lsuffix="_a", rsuffix="_b", how="inner")
                if joined.empty or joined["label_a"].nunique() < 2:
                    continue
                test = delong_test(joined["label_a"].to_numpy(), joined["prob_a"].to_numpy(), joined["prob_b"].to_numpy())
                block["delong"].append({"level": level, "a": a, "b": b, **test})
        if block["patch"]:
            result["sets"][split] = block
    return result


def comparison_table(result: dict[str, Any]) -> str:
    """Table S1 layout as text: set, run, level, AUC (95% CI), sensitivity, specificity, PPV, NPV."""
    width = max([len("model")] + [len(r) for r in result["runs"]]) + 2
    lines = [f"{'set':<10}{'model':<{width}}{'level':<7}{'AUC (95% CI)':<24}{'sens':>7}{'spec':>7}{'PPV':>7}{'NPV':>7}{'n':>8}"]

    def f(v):
        return "   -  " if v is None else f"{v:6.3f}"

    for split, block in result["sets"].items():
        for level in ("patch", "slide"):
            for run, r in block[level].items():
                if r.get("auc") is None:
                    lines.append(f"{split:<10}{run:<{width}}{level:<7}{'(one class only)':<24}")
                    continue
                auc = f"{r['auc']:.3f} ({r['ci_lower']:.3f}-{r['ci_upper']:.3f})"
                lines.append(f"{split:<10}{run:<{width}}{level:<7}{auc:<24}{f(r['sensitivity']):>7}{f(r['specificity']):>7}"
                             f"{f(r['ppv']):>7}{f(r['npv']):>7}{r['n']:>8}")
        for t in block["delong"]:
            lines.append(f"{split:<10}DeLong {t['level']}: {t['a']} vs {t['b']}: difference {t['difference']:+.3f}, p = {t['p']:.3g}")
    return "\n".join(lines)
