"""``make run``: the main job on the embedded default (SQLite + DuckDB + SYNTHETIC demo).

Creates the synthetic demo project if it does not exist yet, then opens the desktop app on it;
on a machine without a display it runs the headless demo pipeline instead and prints where
its output is.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pathomics_desktop.launch")
    parser.add_argument("--demo-dir", default="demo-project")
    parser.add_argument("--headless", action="store_true", help="run the headless pipeline even with a display")
    args = parser.parse_args(argv)
    root = Path(args.demo_dir).resolve()
    from pathomics_desktop.demo.pipeline import ensure_demo_project, run_headless_pipeline
    from pathomics_desktop.errors import UserError

    try:
        ensure_demo_project(root)
        if has_display() and not args.headless:
            from pathomics_desktop.ui.app import main as gui_main

            return gui_main([str(root)])
        summary = run_headless_pipeline(root)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
