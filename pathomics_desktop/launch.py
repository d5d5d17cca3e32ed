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


GUI_SYSTEM_LIBRARIES = ("libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
                        "libxkbcommon-x11-0 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libegl1 libgl1 "
                        "libfontconfig1 libdbus-1-3")


def gui_available(timeout: float = 30.0) -> tuple[bool, str]:
    """Can Qt start a window here? Probed in a child process, so that a missing platform
    plugin library (Qt aborts the process) only costs the probe. Returns (ok, reason)."""
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-m", "pathomics_desktop.ui.probe"], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "the display did not answer"
    if done.returncode == 0:
        return True, done.stdout.strip()
    detail = [line for line in done.stderr.splitlines() if "xcb" in line or "display" in line.lower()]
    return False, (detail[-1] if detail else done.stderr.strip()[-300:] or f"exit status {done.returncode}")


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
            ok, reason = gui_available()
            if ok:
                from pathomics_desktop.ui.app import main as gui_main

                return gui_main([str(root)])
            print(f"The desktop app cannot open a window here ({reason}).\n"
                  "On Debian/Ubuntu the Qt system libraries come with:\n"
                  f"  sudo apt-get install {GUI_SYSTEM_LIBRARIES}\n"
                  "Running the headless demo pipeline instead.", file=sys.stderr)
        summary = run_headless_pipeline(root)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
