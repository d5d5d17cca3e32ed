"""Per-site path maps: the same slide or output folder mounted at different places on the
machines of different sites.

``project.toml``::

    [sites.gpu-lyon]
    path_map = {"/mnt/slides" = "/data/slides", "//nas/pathology" = "/srv/nas"}

A worker started with ``--site gpu-lyon`` reads a slide registered as
``/mnt/slides/A/P001.svs`` from ``/data/slides/A/P001.svs``. The longest matching prefix wins,
matched on whole path components (``/mnt/slides2`` is not under ``/mnt/slides``); a path
under no prefix is used as registered. Outputs go under the worker's own ``--project``
folder (the site's mount of the shared project folder).

The active map is process-wide (one worker process serves one site): :func:`activate` sets
it, :func:`local_path` applies it where job functions resolve registered slide paths.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Mapping

from pathomics_desktop.errors import UserError

_active: dict[str, str] = {}


def _components(path: str) -> tuple[str, ...]:
    """Path components, with Windows separators as ``/`` and no trailing separator."""
    text = str(path).replace("\\", "/")
    lead = "//" if text.startswith("//") else ("/" if text.startswith("/") else "")
    return (lead, *[part for part in text[len(lead):].split("/") if part not in ("", ".")])


def map_path(path: str, path_map: Mapping[str, str]) -> str:
    """``path`` with its longest mapped prefix (whole components) replaced; unchanged if
    no prefix matches."""
    parts = _components(path)
    best: tuple[int, str] | None = None
    for prefix, target in path_map.items():
        head = _components(prefix)
        if parts[:len(head)] == head and (best is None or len(head) > best[0]):
            best = (len(head), target)
    if best is None:
        return str(path)
    rest = parts[best[0]:]
    return str(PurePosixPath(str(best[1]), *rest)) if rest else str(best[1])


def site_path_map(project, site: str | None) -> dict[str, str]:
    """The validated ``[sites.<site>] path_map`` of the project (empty for no site)."""
    if not site:
        return {}
    where = f"{project.settings_path} [sites.{site}]"
    sites = project.settings.get("sites", {})
    if site not in sites:
        known = ", ".join(sorted(sites)) or "none"
        raise UserError(f"{where}: no such site (sites configured: {known}); add "
                        f'[sites.{site}] path_map = {{"/registered/prefix" = "/local/prefix"}}')
    path_map = sites[site].get("path_map", {}) if isinstance(sites[site], dict) else None
    if not isinstance(path_map, dict) or not all(isinstance(k, str) and isinstance(v, str) and k.strip() and v.strip()
                                                for k, v in path_map.items()):
        raise UserError(f"{where} path_map: expected a table of \"registered prefix\" = \"local prefix\" "
                        f"strings, got {path_map!r}")
    return dict(path_map)


def activate(path_map: Mapping[str, str]) -> None:
    """Make ``path_map`` the map :func:`local_path` applies in this process."""
    _active.clear()
    _active.update(path_map)


def local_path(path: str) -> str:
    """A registered path as this machine reads it (the active site's map applied)."""
    return map_path(path, _active) if _active else path
