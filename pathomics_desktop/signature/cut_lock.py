"""Lock a risk cut chosen in the cutpoint explorer: ``pathomics signature lock-cut NAME --cut X``.

Locking stores the cut with the signature as a NEW version (:mod:`pathomics_desktop.signature.versions`;
the earlier versions are kept, none is changed): the frozen JSON's ``cut`` block becomes
``{"value": X, "method": "manual (cutpoint explorer)", "rule": "high risk: score > cut",
"locked_by", "locked_at", "reason", "previous": {"version", "value", "method"}}``, the per-set
results (``sets``, ``external_centers``, ``mixed_effects``) are evaluated again at the new cut
on the current cohort snapshot (:func:`~pathomics_desktop.signature.evaluation.evaluate_set`),
and the scores file's risk groups follow the new cut (high: score > cut).

In the registry, in ONE transaction: the risk groups of every patient whose
``pathomics_<endpoint>_score`` came from this signature are written again by the new cut
(:func:`~pathomics_desktop.signature.apply.write_scores`, audited per value), and one audit
row records the signature change itself (table ``signatures``, record the signature name,
field ``cut``, old and new ``{version, value, method}`` as JSON, the user and the reason).
The new version's files are written inside that transaction; if anything fails, the registry
rolls back and the signature's current files are put back as they were.

:func:`restore_cut` is the undo: a new version whose cut block is that of an earlier version.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pathomics_desktop.errors import UserError

MANUAL_METHOD = "manual (cutpoint explorer)"
AUDIT_TABLE = "signatures"
#: two scores are the same number when they differ by less than this (relative, abs floor 1e-12)
SCORE_TOLERANCE = 1e-9


@dataclass
class LockResult:
    """What a lock (or a restore) did."""

    name: str
    endpoint: str
    version: int
    previous_version: int
    cut: float
    previous_cut: float
    method: str
    regrouped: int  #: patients whose registry risk group was written again
    high: int
    low: int
    changed: int  #: registry values that changed
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        line = (f"signature {self.name} v{self.version}: cut {self.cut:.6g} ({self.method}), "
                f"was {self.previous_cut:.6g} in v{self.previous_version}; "
                f"{self.regrouped} registry patients regrouped ({self.high} high, {self.low} low risk), "
                f"{self.changed} values changed")
        return line + (f"\nnote: {self.note}" if self.note else "")


class _SharedTransaction:
    """A registry stand-in whose ``session()`` is always the one open session, so that the
    audited write services called with it commit (or roll back) together with our own rows."""

    def __init__(self, session):
        self._session = session

    @contextmanager
    def session(self, *, user: str = "", reason: str | None = None):
        yield self._session


def _current_version(project, name: str, signature: dict) -> int:
    from pathomics_desktop.signature.versions import versions

    kept = versions(project, name)
    return int(signature.get("version") or (kept[-1] if kept else 1))


def _signature_scores(project, name: str):
    """Every score this signature has given: its fit scores and each application's file
    (study_id -> score; a later application wins)."""
    import pandas as pd

    from pathomics_desktop.signature.fit import signature_paths
    from pathomics_desktop.signature.versions import version_folder

    scores_path = signature_paths(project, name)[1]
    if not scores_path.exists():
        raise UserError(f"signature {name!r} has no scores file ({scores_path}); fit it again")
    fit_scores = pd.read_parquet(scores_path)
    parts = [fit_scores[["study_id", "score"]]]
    applied = version_folder(project, name) / "applied"
    if applied.is_dir():
        parts += [pd.read_parquet(p, columns=["study_id", "score"]) for p in sorted(applied.glob("*.parquet"),
                                                                                  key=lambda p: p.stat().st_mtime)]
    known = pd.concat(parts).drop_duplicates("study_id", keep="last").set_index("study_id")["score"]
    return fit_scores, known.astype(float)


def _registry_scores(project, name: str, endpoint: str, known):
    """The patients whose registry score of ``endpoint`` came from this signature (study_id,
    score). A registry score this signature never gave means another signature was applied."""
    import pandas as pd

    from pathomics_desktop.analytics.snapshot import cohort_frame
    from pathomics_desktop.signature.apply import score_columns

    score_col, _ = score_columns(endpoint)
    cohort = cohort_frame(project.root)
    if score_col not in cohort.columns:
        return pd.DataFrame({"study_id": [], "score": []}), cohort
    held = cohort.loc[cohort[score_col].notna(), ["study_id", score_col]].rename(columns={score_col: "score"})
    held["study_id"] = held["study_id"].astype(str)
    mine = known.reindex(held["study_id"]).to_numpy(float)
    values = held["score"].to_numpy(float)
    same = np.isfinite(mine) & (np.abs(mine - values) <= SCORE_TOLERANCE * np.maximum(1.0, np.abs(values)))
    if not same.all():
        first = held["study_id"].to_numpy()[~same][0]
        raise UserError(f"the registry's {score_col} of {int((~same).sum())} patient(s) (first: {first}) were not "
                        f"written by signature {name!r}; apply it first (`pathomics signature apply {name} --all`) "
                        "so that its risk groups can follow the locked cut")
    return held.reset_index(drop=True), cohort


def _evaluated_at(signature: dict, scores, cohort, cut: float) -> dict[str, Any]:
    """``sets``, ``external_centers`` and ``mixed_effects`` of the fit's patients at ``cut``
    on the current snapshot (as the fit evaluates them)."""
    from pathomics_desktop.signature.fit import SETS, _evaluate_subset, _mixed_effects

    time_col, event_col = signature["time_column"], signature["event_column"]
    base = cohort[cohort["included"].fillna(False).astype(bool) & cohort["split"].isin(SETS)]
    base = base[["study_id", "split", "center", time_col, event_col]].assign(study_id=lambda f: f["study_id"].astype(str))
    frame = scores[["study_id", "score"]].assign(study_id=lambda f: f["study_id"].astype(str)).merge(base, on="study_id")
    frame = frame.dropna(subset=[time_col, event_col]).rename(columns={time_col: "time", event_col: "event"})
    frame = frame.reset_index(drop=True)
    score = frame["score"].to_numpy(float)
    split = frame["split"].to_numpy()
    out: dict[str, Any] = {"sets": {s: _evaluate_subset(frame, split == s, score, cut, empty_note="no patients").to_dict()
                                    for s in SETS}}
    centers = frame["center"].astype(str).to_numpy()
    external = split == "external"
    out["external_centers"] = {c: _evaluate_subset(frame, external & (centers == c), score, cut).to_dict()
                               for c in sorted(set(centers[external]))}
    out["mixed_effects"] = _mixed_effects(frame, score > cut)
    return out


def _store_cut(project, name: str, cut_block: dict[str, Any], *, user: str, reason: str, registry=None) -> LockResult:
    """Write ``cut_block`` as a new version of signature ``name`` and regroup the registry
    (see the module docstring)."""
    from sqlalchemy import insert

    from pathomics_desktop.registry.audit import current_user
    from pathomics_desktop.registry.models import AuditEvent, utcnow
    from pathomics_desktop.registry.service import open_project_registry
    from pathomics_desktop.signature.apply import write_scores
    from pathomics_desktop.signature.evaluation import risk_groups
    from pathomics_desktop.signature.fit import check_name, load_signature, signature_paths, write_signature
    from pathomics_desktop.signature.versions import next_version, version_paths
    from pathomics_desktop.stats.data import clean_json

    check_name(name)
    if not (reason or "").strip():
        raise UserError(f"locking the cut of signature {name!r} needs a reason (--reason TEXT)")
    cut = float(cut_block["value"])
    if not np.isfinite(cut):
        raise UserError(f"the cut must be a finite number, got {cut_block['value']!r}")
    user = user or current_user()
    signature = load_signature(project, name)
    endpoint = str(signature["endpoint"])
    old_version = _current_version(project, name, signature)
    old_block = dict(signature.get("cut") or {})
    fit_scores, known = _signature_scores(project, name)
    held, cohort = _registry_scores(project, name, endpoint, known)
    version = next_version(project, name, replace=True)

    new = copy.deepcopy(signature)
    new["version"] = version
    new["cut"] = cut_block
    new.update(_evaluated_at(signature, fit_scores, cohort, cut))
    new.setdefault("provenance", {})["replaces_version"] = old_version
    new_scores = fit_scores.assign(risk_group=risk_groups(fit_scores["score"].to_numpy(float), cut))
    regrouped = held.assign(risk_group=risk_groups(held["score"].to_numpy(float), cut))

    full_reason = f"signature {name} cut {cut:.6g} ({cut_block['method']}, v{version}): {reason.strip()}"
    audit_row = dict(at=utcnow(), user=user, action="update", table_name=AUDIT_TABLE, record_id=name,
                     patient_id=None, field="cut",
                     old_value=json.dumps({"version": old_version, "value": old_block.get("value"),
                                           "method": old_block.get("method")}, sort_keys=True),
                     new_value=json.dumps({"version": version, "value": cut, "method": cut_block["method"]},
                                          sort_keys=True),
                     reason=full_reason)
    current_json, current_scores = signature_paths(project, name)
    before = {p: p.read_bytes() for p in (current_json, current_scores) if p.exists()}
    own = registry is None
    registry = open_project_registry(project) if own else registry
    files_written = False
    counts = {"changed": 0}
    try:
        with registry.session(user=user, reason=full_reason) as session:
            if len(regrouped):
                counts = write_scores(_SharedTransaction(session), regrouped, set(regrouped["study_id"]), endpoint,
                                      reason=full_reason, user=user)
            session.execute(insert(AuditEvent.__table__), [audit_row])
            session.flush()
            files_written = True
            write_signature(project, name, clean_json(new), new_scores)
    except BaseException:
        if files_written:  # the registry rolled back: put the signature's files back as they were
            for path, data in before.items():
                path.write_bytes(data)
            for path in version_paths(project, name, version):
                path.unlink(missing_ok=True)
        raise
    finally:
        if own:
            registry.dispose()
    high = int((regrouped["risk_group"] == "high").sum())
    note = "" if len(regrouped) else (f"no registry patient holds scores of {name!r} yet: apply it "
                                      f"(`pathomics signature apply {name} --all`) to write its risk groups")
    return LockResult(name, endpoint, version, old_version, cut, float(old_block.get("value", float("nan"))),
                      str(cut_block["method"]), len(regrouped), high, len(regrouped) - high,
                      int(counts.get("changed", 0)), note)


def lock_cut(project, name: str, cut: float, *, user: str = "", reason: str, registry=None) -> LockResult:
    """Store ``cut`` (score units; high risk: score > cut) as signature ``name``'s cut in a new
    version, audited, and regroup the registry's risk groups (see the module docstring).
    ``registry``: an open registry to write through (default: the project's, opened here)."""
    from pathomics_desktop.signature.fit import load_signature
    from pathomics_desktop.registry.audit import current_user

    try:
        value = float(cut)
    except (TypeError, ValueError):
        raise UserError(f"--cut must be a number, got {cut!r}") from None
    signature = load_signature(project, name)
    old = dict(signature.get("cut") or {})
    block = {"value": value, "method": MANUAL_METHOD, "rule": "high risk: score > cut",
             "locked_by": user or current_user(),
             "locked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "reason": (reason or "").strip(),
             "previous": {"version": _current_version(project, name, signature), "value": old.get("value"),
                          "method": old.get("method")}}
    return _store_cut(project, name, block, user=user, reason=reason, registry=registry)


def restore_cut(project, name: str, version: int, *, user: str = "", reason: str, registry=None) -> LockResult:
    """Undo of a lock: a new version whose cut block is version ``version``'s (unchanged)."""
    from pathomics_desktop.signature.versions import load_version

    block = dict(load_version(project, name, int(version)).get("cut") or {})
    if "value" not in block:
        raise UserError(f"signature {name!r} v{version} has no cut to restore")
    block.setdefault("method", "restored")
    return _store_cut(project, name, block, user=user, reason=reason, registry=registry)


def cut_history(registry, name: str) -> list[dict[str, Any]]:
    """The audit rows of a signature's cut, oldest first (``at, user, old, new, reason``)."""
    from pathomics_desktop.registry.service import audit_history

    return [{"at": r.at, "user": r.user, "old": json.loads(r.old_value or "null"),
             "new": json.loads(r.new_value or "null"), "reason": r.reason}
            for r in audit_history(registry, table=AUDIT_TABLE, record_id=name) if r.field == "cut"]
