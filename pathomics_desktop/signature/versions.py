"""Frozen signatures are versioned: every fit is kept, none is overwritten silently.

Layout in the project folder::

    signature/<name>.json                    the current version (what `show` and `apply` read)
    signature/<name>_scores.parquet          its fit scores (study_id, score, risk_group)
    signature/<name>/v<k>.json               every version k = 1, 2, ... (never changed again)
    signature/<name>/v<k>_scores.parquet
    signature/<name>/v<k>_predictions.json   SHA-256 of every prediction file the fit read
    signature/<name>/applied/v<k>_<scope>_<sha12>.parquet   scores written by `signature apply`

Fitting under an existing name is refused unless ``replace`` is given; a replacing fit
becomes version k + 1 and the earlier versions stay. Each version records its provenance:
the training cohort snapshot's SHA-256 (the Parquet file's bytes) and registry version (the
audit high-water mark), the prediction files' hashes (one combined SHA-256 over the sorted
``slide_id<TAB>sha256`` lines, the per-file list beside the version), the features file's
SHA-256, the seeds, the UTC time and the software versions (python, numpy, scipy, pandas,
duckdb, torch when installed, pathomics).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import re
from pathlib import Path
from typing import Any, Mapping

from pathomics_desktop.errors import UserError

VERSION_FILE = re.compile(r"^v(\d+)\.json$")


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def predictions_hashes(files: Mapping[str, Path]) -> tuple[str, dict[str, str]]:
    """(combined SHA-256, ``{slide_id: sha256}``) of prediction files; the combined hash is
    over the sorted ``slide_id<TAB>sha256`` lines, so it names the whole set of inputs."""
    per_file = {sid: file_sha256(path) for sid, path in sorted(files.items())}
    return text_sha256("".join(f"{sid}\t{h}\n" for sid, h in per_file.items())), per_file


def software_versions() -> dict[str, str | None]:
    """Versions of the software a fit ran on (torch None when it is not installed)."""
    from importlib import metadata

    import pathomics_desktop

    out: dict[str, str | None] = {"python": platform.python_version(), "pathomics": pathomics_desktop.__version__}
    for dist in ("numpy", "scipy", "pandas", "duckdb", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def version_folder(project, name: str) -> Path:
    return project.root / "signature" / name


def versions(project, name: str) -> list[int]:
    """The kept versions of a signature, ascending (empty when it was never fitted)."""
    folder = version_folder(project, name)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := VERSION_FILE.match(p.name)))


def version_paths(project, name: str, version: int) -> tuple[Path, Path, Path]:
    """(frozen JSON, fit scores, prediction hashes) of one version."""
    folder = version_folder(project, name)
    return folder / f"v{version}.json", folder / f"v{version}_scores.parquet", folder / f"v{version}_predictions.json"


def next_version(project, name: str, *, replace: bool) -> int:
    """The version a new fit gets; refuses an existing name without ``replace``. A current
    file from before versions existed is first kept as v1 (so a replacing fit is v2)."""
    import shutil

    from pathomics_desktop.signature.fit import signature_paths

    kept = versions(project, name)
    current, current_scores = signature_paths(project, name)
    if (kept or current.exists()) and not replace:
        latest = f"v{kept[-1]}" if kept else "an unversioned fit"
        raise UserError(f"signature {name!r} already exists ({latest}, {current}); fit under another --name, "
                        f"or pass --replace to fit version v{(kept[-1] if kept else 1) + 1} "
                        "(earlier versions are kept)")
    if not kept and current.exists():
        v_json, v_scores, _ = version_paths(project, name, 1)
        v_json.parent.mkdir(parents=True, exist_ok=True)
        if current_scores.exists():
            shutil.copy2(current_scores, v_scores)
        shutil.copy2(current, v_json)
        kept = [1]
    return (kept[-1] if kept else 0) + 1


def load_version(project, name: str, version: int) -> dict[str, Any]:
    path = version_paths(project, name, version)[0]
    if not path.exists():
        kept = versions(project, name)
        raise UserError(f"signature {name!r} has no version v{version}"
                        + (f" (kept: {', '.join(f'v{k}' for k in kept)})" if kept else ""))
    return json.loads(path.read_text(encoding="utf-8"))


def provenance(*, snapshot: Path, snapshot_version: Mapping[str, Any] | None, predictions_sha256: str,
               prediction_files: int, features_file: Path, seeds: Mapping[str, int],
               replaces: int | None) -> dict[str, Any]:
    """The provenance record of one fit (see the module docstring)."""
    return {
        "fitted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training_snapshot": {"file": snapshot.name, "sha256": file_sha256(snapshot),
                              "registry_version": dict(snapshot_version or {})},
        "predictions": {"files": prediction_files, "sha256": predictions_sha256},
        "features_sha256": file_sha256(features_file),
        "seeds": dict(seeds),
        "software": software_versions(),
        "replaces_version": replaces,
    }
