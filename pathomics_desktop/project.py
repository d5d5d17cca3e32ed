"""A project on disk: settings, registry location and the folders of bulk outputs.

Layout::

    MyStudy/
      project.toml              settings (database URL, tiling, seeds)
      registry.sqlite           embedded registry (absent when a PostgreSQL URL is set)
      tiles/<slide>.parquet     tile indexes
      predictions/<model>/<slide>.parquet
      features/ models/ reports/ thumbnails/ jobs/ backups/

The project folder comes from ``--project DIR``, else ``$PATHOMICS_PROJECT``, else the
current directory.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathomics_desktop.errors import UserError

PROJECT_FILE = "project.toml"
SQLITE_FILE = "registry.sqlite"

DEFAULT_SETTINGS: dict[str, Any] = {
    "project": {"name": "", "synthetic": False},
    "database": {"url": ""},  # empty: the embedded SQLite file
    "tiling": {"tile_size": 512, "target_mpp": 0.5, "tissue_threshold": 0.5},
    # QuPath classes to tile (glob, case-insensitive) and classes subtracted besides Ignore*
    # (same defaults as slides.roi.DEFAULT_ROI_CLASSES)
    # ``roots``: the folders slides may be registered from (empty: anywhere; see limits.py)
    "slides": {"roi_classes": ["Tumor", "Tumour", "Region*"], "exclude_classes": [], "roots": []},
    "study": {"split_seed": 20240101, "train_fraction": 0.7, "development_center": ""},
}


def _merge(base: dict, override: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Project:
    """A project folder and its settings."""

    root: Path
    settings: dict[str, Any] = field(default_factory=lambda: _merge(DEFAULT_SETTINGS, {}))

    # -- locations ---------------------------------------------------------------------
    @property
    def settings_path(self) -> Path:
        return self.root / PROJECT_FILE

    @property
    def database_url(self) -> str:
        url = (os.environ.get("PATHOMICS_DATABASE_URL") or self.settings["database"].get("url") or "").strip()
        return url or f"sqlite:///{(self.root / SQLITE_FILE).as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def folder(self, name: str) -> Path:
        """``tiles``, ``predictions``, ``features``, ``models``, ``reports``, ``thumbnails``,
        ``jobs``, ``backups``, ``slides``: created on first use."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- persistence -------------------------------------------------------------------
    def save(self) -> None:
        import tomli_w

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.settings_path.with_suffix(".toml.tmp")
        tmp.write_bytes(tomli_w.dumps(self.settings).encode("utf-8"))
        tmp.replace(self.settings_path)

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> "Project":
        root = Path(root).expanduser().resolve()
        path = root / PROJECT_FILE
        if not path.is_file():
            raise UserError(
                f"{root} is not a Pathomics project (no {PROJECT_FILE}); "
                "create one with `pathomics init DIR` or `pathomics demo DIR`"
            )
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: not a valid TOML settings file ({exc})") from exc
        return cls(root=root, settings=_merge(DEFAULT_SETTINGS, data))

    @classmethod
    def create(cls, root: str | os.PathLike[str], *, name: str = "", database_url: str = "",
               synthetic: bool = False) -> "Project":
        root = Path(root).expanduser().resolve()
        if (root / PROJECT_FILE).exists():
            raise UserError(f"{root} already holds a project ({PROJECT_FILE} exists)")
        settings = _merge(DEFAULT_SETTINGS, {
            "project": {"name": name or root.name, "synthetic": synthetic},
            "database": {"url": database_url},
        })
        project = cls(root=root, settings=settings)
        project.save()
        return project


def resolve_project_dir(cli_value: str | None) -> Path:
    """``--project`` if given, else ``$PATHOMICS_PROJECT``, else the current directory."""
    return Path(cli_value or os.environ.get("PATHOMICS_PROJECT") or os.getcwd())


def open_project(cli_value: str | None) -> Project:
    return Project.load(resolve_project_dir(cli_value))
