"""The reproducibility ledger: one entry per exported table or figure, and ``pathomics reproduce``.

Every export, from the command line (``pathomics report ...``) or from a view's Export button,
appends one JSON line to ``<project>/reports/ledger.jsonl`` (opened for append, written in one
``write``, then ``fsync``; entries are never rewritten). An entry holds:

* ``id`` (``20261201T120501Z-3f9a1c``: UTC time and 6 random hex digits), ``time`` (UTC,
  ISO 8601), ``user`` (``$PATHOMICS_USER``, else the login), ``origin`` ("cli" or "gui");
* ``command`` (the ``pathomics report`` command or the view id, e.g. "km") with its
  ``cohort_filter`` (:meth:`~pathomics_desktop.analytics.cohort_filter.CohortFilter.to_dict`)
  and ``params`` (what the figure builder was given, the project folder left out);
* ``inputs``: the SHA-256 of the cohort snapshot the numbers came from, of the prediction
  files used (``predictions/<run>/*.parquet``, model comparison) and of the signature
  files involved (``signature/*.json``: a named signature, or all of them when a
  ``pathomics_*`` score or risk-group column is used);
* ``seeds`` (every ``seed`` parameter, and the project's split seed), ``software`` (Python and
  the installed versions of the packages the numbers depend on, read from the package
  metadata, so torch is never imported);
* ``output``: the file's path (relative to the project when inside it), format and SHA-256;
* ``numbers``: the description's ``to_dict()`` (plain JSON; NaN as null), i.e. every number
  the export shows.

:func:`reproduce` recomputes an entry from its command, filter and parameters on the current
data (the same builder, :data:`pathomics_desktop.reports.cli.BUILDERS`) and compares every
number with the recorded one, leaf by leaf: equal text, or floats within a relative 1e-9
(and absolute 1e-12). A different snapshot hash is reported as "the data changed since".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from pathomics_desktop.errors import UserError

FORMAT = "pathomics-ledger/1"
LEDGER_FILE = "ledger.jsonl"
#: distributions whose versions an entry records (missing ones are left out)
SOFTWARE = ("pathomics-desktop", "numpy", "pandas", "scipy", "statsmodels", "lifelines", "scikit-survival",
            "scikit-learn", "duckdb", "pyarrow", "python-docx", "openpyxl", "matplotlib", "torch", "timm")
REL_TOL = 1e-9
ABS_TOL = 1e-12


def ledger_path(project) -> Path:
    return project.folder("reports") / LEDGER_FILE


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    """Python and the installed versions of :data:`SOFTWARE` (package metadata, no import)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "pathomics-desktop":
                import pathomics_desktop

                out[name] = pathomics_desktop.__version__
    return out


def current_user() -> str:
    from pathomics_desktop.registry.audit import current_user as audit_user

    return audit_user()


def _relative(project, path: Path) -> str:
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(project.root).resolve()).as_posix()
    except ValueError:
        return str(path)


def _params_record(params: Mapping[str, Any]) -> dict[str, Any]:
    from pathomics_desktop.stats.data import clean_json

    return clean_json({k: v for k, v in dict(params or {}).items() if k != "project"})


def _mentions_scores(value: Any) -> bool:
    """Whether a parameter value names a ``pathomics_*`` score or risk-group column."""
    if isinstance(value, str):
        return value.startswith("pathomics_")
    if isinstance(value, Mapping):
        return any(_mentions_scores(k) or _mentions_scores(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_mentions_scores(v) for v in value)
    return False


def prediction_files(project, command: str, params: Mapping[str, Any]) -> dict[str, str]:
    """The prediction files a command reads (the model comparison: every Parquet file of its
    runs), as {relative path: SHA-256}."""
    if not (command == "models" or (command == "roc" and params.get("mode") == "models")):
        return {}
    from pathomics_desktop.figures.roc import prediction_runs

    runs = params.get("runs") or prediction_runs(project.root)
    out = {}
    for run in runs:
        for path in sorted((Path(project.root) / "predictions" / run).glob("*.parquet")):
            out[_relative(project, path)] = file_sha256(path)
    return out


def signature_files(project, command: str, params: Mapping[str, Any], numbers: Mapping[str, Any]) -> dict[str, str]:
    """The frozen signature files involved, as {relative path: SHA-256}: the named one of the
    signature panel; all of them when a ``pathomics_*`` column is used (the scores in the
    snapshot were written by ``signature apply`` of one of them)."""
    folder = Path(project.root) / "signature"
    if not folder.is_dir():
        return {}
    if command == "signature" and params.get("name"):
        paths = [folder / f"{params['name']}.json"]
    elif command in ("signature", "cindex") or _mentions_scores(dict(params)) or _mentions_scores(
            [numbers.get(k) for k in ("group", "exposure", "marker")]) or _mentions_scores(
            [m.get("marker") for m in numbers.get("markers", []) if isinstance(m, Mapping)]):
        paths = sorted(folder.glob("*.json"))
    else:
        return {}
    return {_relative(project, p): file_sha256(p) for p in paths if p.exists()}


def _seeds(project, params: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in dict(params or {}).items() if "seed" in k}
    study = project.settings.get("study", {})
    if "split_seed" in study:
        out["split_seed"] = study["split_seed"]
    return out


# --------------------------------------------------------------------------------------
# writing entries
# --------------------------------------------------------------------------------------


def prepare_entry(project, *, command: str, cohort_filter, params: Mapping[str, Any], snapshot_path,
                  snapshot_id: str | None = None, origin: str = "cli", user: str | None = None) -> dict[str, Any]:
    """The part of an entry known before the file is written: ids, parameters, the snapshot's
    hash. ``snapshot_id`` (the 12-digit prefix the numbers carry) must match the file: else the
    data changed after the numbers were computed, and a UserError says to recompute."""
    sha = file_sha256(snapshot_path)
    if snapshot_id and not sha.startswith(snapshot_id):
        raise UserError(f"the cohort snapshot changed after these numbers were computed (they come from "
                        f"{snapshot_id}, the data is now {sha[:12]}); wait for the view to update, then export again")
    now = datetime.now(timezone.utc)
    return {"format": FORMAT, "id": f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}",
            "time": now.isoformat(timespec="seconds"), "user": user or current_user(), "origin": origin,
            "command": command, "cohort_filter": cohort_filter.to_dict(), "params": _params_record(params),
            "inputs": {"snapshot": {"path": _relative(project, Path(snapshot_path)), "sha256": sha}},
            "seeds": _seeds(project, params), "software": software_versions(),
            "platform": f"{platform.system()} {platform.machine()}"}


def append_entry(project, entry: dict[str, Any], *, output, numbers: Mapping[str, Any],
                 params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Complete ``entry`` with the output file's hash, the inputs read and the numbers, and
    append it to the ledger (one line, fsync)."""
    from pathomics_desktop.stats.data import clean_json

    output = Path(output)
    numbers = clean_json(dict(numbers))
    used = dict(params if params is not None else entry["params"])
    entry = dict(entry)
    entry["inputs"] = dict(entry["inputs"])
    entry["inputs"]["predictions"] = prediction_files(project, entry["command"], used)
    entry["inputs"]["signature"] = signature_files(project, entry["command"], used, numbers)
    entry["output"] = {"path": _relative(project, output), "format": output.suffix.lower(),
                       "sha256": file_sha256(output)}
    entry["numbers"] = numbers
    line = json.dumps(entry, sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n"
    fd = os.open(ledger_path(project), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def record_export(project, *, command: str, cohort_filter, params: Mapping[str, Any], snapshot_path,
                  output, numbers: Mapping[str, Any], snapshot_id: str | None = None, origin: str = "cli",
                  user: str | None = None) -> dict[str, Any]:
    """:func:`prepare_entry` then :func:`append_entry` (the file is already written)."""
    entry = prepare_entry(project, command=command, cohort_filter=cohort_filter, params=params,
                          snapshot_path=snapshot_path, snapshot_id=snapshot_id, origin=origin, user=user)
    return append_entry(project, entry, output=output, numbers=numbers, params=params)


def description_numbers(description, fallback: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What an entry records as its numbers: the description's ``to_dict()``."""
    if hasattr(description, "to_dict"):
        return description.to_dict()
    if isinstance(description, Mapping):
        return dict(description)
    return dict(fallback or {})


# --------------------------------------------------------------------------------------
# reading entries
# --------------------------------------------------------------------------------------


def read_entries(project) -> list[dict[str, Any]]:
    """Every entry, oldest first; a damaged line is a UserError naming its line number."""
    path = Path(project.root) / "reports" / LEDGER_FILE
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise UserError(f"{path}, line {number}: not a ledger entry ({exc})") from None
    return out


def find_entry(project, ref: str | None = None, *, last: bool = False) -> dict[str, Any]:
    """The entry with id ``ref`` (or a unique prefix of it), or the last one."""
    entries = read_entries(project)
    where = Path(project.root) / "reports" / LEDGER_FILE
    if not entries:
        raise UserError(f"{where}: no export has been recorded yet")
    if last or not ref:
        return entries[-1]
    hits = [e for e in entries if e.get("id") == ref] or [e for e in entries if str(e.get("id", "")).startswith(ref)]
    if not hits:
        raise UserError(f"{where}: no ledger entry {ref!r} (the last is {entries[-1]['id']})")
    if len({e["id"] for e in hits}) > 1:
        raise UserError(f"{where}: {ref!r} matches {len(hits)} entries; give more of the id")
    return hits[0]


# --------------------------------------------------------------------------------------
# comparing numbers
# --------------------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs: ``groups[1].median`` -> 14.2."""
    if isinstance(value, Mapping):
        for key in value:
            yield from flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return a == b


@dataclass
class Difference:
    """One number that differs: its path in the description, the recorded and the new value
    (``MISSING`` where a side has no such number)."""

    path: str
    recorded: Any
    now: Any
    where: str = ""  #: the row's label ("female", "Overall"), when the path runs through one

    def text(self) -> str:
        where = f" ({self.where})" if self.where else ""
        return f"{self.path}{where}: recorded {_show(self.recorded)}, now {_show(self.now)}"


#: keys that name a row of a description (the first one present labels it)
ROW_LABELS = ("label", "level", "group", "marker", "variable", "term", "center", "run", "set")


def row_label(numbers: Any, path: str) -> str:
    """The labels of the list items a path runs through, joined by ": " (``rows[2].counts.training``
    -> "female" when row 2 of a Table 1 is the level female; ``groups[0].at_risk[3]`` -> "<200")."""
    import re

    labels = []
    node = numbers
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path):
        try:
            node = node[int(index)] if index else node[key]
        except (KeyError, IndexError, TypeError):
            break
        if index and isinstance(node, Mapping):
            name = next((node[k] for k in ROW_LABELS if isinstance(node.get(k), str) and node.get(k)), None)
            if name:
                labels.append(name)
    return ": ".join(labels)


MISSING = "(absent)"


def _show(value: Any) -> str:
    return value if value == MISSING else json.dumps(value)


def compare_numbers(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> tuple[int, list[Difference]]:
    """(number of leaves compared, the differences), leaf by leaf."""
    from pathomics_desktop.stats.data import clean_json

    old = dict(flatten(recorded))
    new = dict(flatten(clean_json(json.loads(json.dumps(clean_json(dict(now)))))))
    diffs = []
    for path in list(old) + [p for p in new if p not in old]:
        a, b = old.get(path, MISSING), new.get(path, MISSING)
        if (path not in old) or (path not in new) or not _same(a, b):
            diffs.append(Difference(path, a, b, row_label(recorded if path in old else now, path)))
    return len(set(old) | set(new)), diffs


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce`."""

    entry: dict[str, Any]
    compared: int
    differences: list[Difference]
    snapshot_now: str
    output_now: str | None  #: SHA-256 of the output file now (None: the file is gone)
    notes: list[str] = field(default_factory=list)

    @property
    def data_changed(self) -> bool:
        return self.snapshot_now != self.entry["inputs"]["snapshot"]["sha256"]

    @property
    def matches(self) -> bool:
        return not self.differences

    def text(self) -> str:
        e = self.entry
        lines = [f"ledger entry {e['id']}: {e['command']} -> {e['output']['path']} ({e['time']}, {e['user']})"]
        if self.data_changed:
            lines.append(f"the data changed since: the cohort snapshot was {e['inputs']['snapshot']['sha256'][:12]}, "
                         f"it is now {self.snapshot_now[:12]}")
        if self.matches:
            lines.append(f"all {self.compared} numbers match")
        else:
            lines.append(f"{len(self.differences)} of {self.compared} numbers differ:")
            lines += [f"  {d.text()}" for d in self.differences]
        if self.output_now is None:
            lines.append(f"note: the exported file {e['output']['path']} no longer exists")
        elif self.output_now != e["output"]["sha256"]:
            lines.append(f"note: the exported file {e['output']['path']} was changed or replaced since")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.entry["id"], "command": self.entry["command"], "matches": self.matches,
                "compared": self.compared, "data_changed": self.data_changed,
                "snapshot_recorded": self.entry["inputs"]["snapshot"]["sha256"], "snapshot_now": self.snapshot_now,
                "differences": [{"path": d.path, "recorded": d.recorded, "now": d.now} for d in self.differences],
                "notes": list(self.notes)}


def reproduce(project, ref: str | None = None, *, last: bool = False) -> Reproduction:
    """Recompute a ledger entry on the current data and compare every number (module docstring)."""
    from pathomics_desktop.analytics.cohort_filter import AnalysisSource, CohortFilter
    from pathomics_desktop.reports.cli import compute_description

    entry = find_entry(project, ref, last=last)
    source = AnalysisSource.open(project)
    cohort_filter = CohortFilter.from_dict(entry["cohort_filter"])
    description = compute_description(project, entry["command"], source, cohort_filter, entry["params"])
    compared, diffs = compare_numbers(entry["numbers"], description_numbers(description))
    notes = []
    for kind in ("predictions", "signature"):
        recorded = entry["inputs"].get(kind) or {}
        for rel, sha in recorded.items():
            path = Path(project.root) / rel
            if not path.exists():
                notes.append(f"{kind} file {rel} no longer exists")
            elif file_sha256(path) != sha:
                notes.append(f"{kind} file {rel} changed since the export")
    output = Path(entry["output"]["path"])
    output = output if output.is_absolute() else Path(project.root) / output
    return Reproduction(entry, compared, diffs, file_sha256(source.parquet),
                        file_sha256(output) if output.exists() else None, notes)


__all__ = ["record_export", "prepare_entry", "append_entry", "reproduce", "read_entries", "find_entry",
           "compare_numbers", "file_sha256", "ledger_path", "software_versions", "Reproduction", "Difference",
           "description_numbers"]
