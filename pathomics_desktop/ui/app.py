"""``pathomics-desktop``: the desktop application.

    pathomics-desktop                          the start page (create or open a project)
    pathomics-desktop --project DIR            open DIR (also: pathomics-desktop DIR)
    pathomics-desktop --project DIR --screenshots OUT [--views a,b] [--size 1400x900] [--dark]
                                               render every view offscreen to OUT/<view>.png
                                               and OUT/<view>.json, then exit (0: all views
                                               rendered; 1: a view failed; 2: the project
                                               could not be opened)

Set-up before the QApplication: high-DPI scale factors pass through unrounded (crisp at
125 %/150 %), Fusion style with the remembered light or dark palette, and the crash handler
(:mod:`pathomics_desktop.ui.crash`).
"""

from __future__ import annotations

import argparse
import os
import sys


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the size as WIDTHxHEIGHT, e.g. 1400x900") from None
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pathomics-desktop", description="Pathomics Desktop")
    parser.add_argument("folder", nargs="?", help="project folder to open (same as --project)")
    parser.add_argument("--project", metavar="DIR", help="project folder to open")
    parser.add_argument("--screenshots", metavar="OUT",
                        help="render every view offscreen to OUT/<view>.png and OUT/<view>.json, then exit")
    parser.add_argument("--views", help="with --screenshots: only these views (comma-separated ids)")
    parser.add_argument("--size", type=_size, default=(1400, 900), help="window size (default 1400x900)")
    parser.add_argument("--dark", action="store_true", help="with --screenshots: the dark palette")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="with --screenshots: seconds to wait for each view (default 120)")
    return parser


def create_application(qt_args: list[str]):
    """The QApplication, with high-DPI rounding set first (it must precede the instance)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from pathomics_desktop.ui.settings import APPLICATION, ORGANIZATION

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication([sys.argv[0], *qt_args])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    return app


def run_screenshots(args, app) -> int:
    from PySide6.QtCore import Qt

    from pathomics_desktop.ui.crash import CrashHandler
    from pathomics_desktop.ui.main_window import MainWindow
    from pathomics_desktop.ui.screenshots import process_events_until, take_screenshots
    from pathomics_desktop.ui.theme import apply_theme
    from pathomics_desktop.ui.views import VIEWS

    root = args.project or args.folder
    if not root:
        print("error: --screenshots needs --project DIR", file=sys.stderr)
        return 2
    views = [v.strip() for v in args.views.split(",")] if args.views else None
    known = [view_id for view_id, _title, _target in VIEWS]
    unknown = [v for v in views or () if v not in known]
    if unknown:
        print(f"error: unknown view(s) {', '.join(unknown)} (known: {', '.join(known)})", file=sys.stderr)
        return 2
    apply_theme(args.dark, app)
    window = MainWindow(headless=True)
    handler = CrashHandler(lambda: window.ctx, headless=True).install()
    try:
        window.setAttribute(Qt.WA_DontShowOnScreen, True)
        window.resize(*args.size)
        window.show()
        window.open_project(root)
        process_events_until(lambda: not window.busy(), args.timeout)
        if window.ctx is None:
            detail = window.errors[-1][1] if window.errors else "it did not open in time"
            print(f"error: cannot open the project {root}: {detail}", file=sys.stderr)
            return 2
        result = take_screenshots(window, args.screenshots, views=views, timeout_s=args.timeout,
                                  crash_handler=handler)
        for path in result.written:
            print(path)
        for view_id, problem in result.failures.items():
            print(f"error: view {view_id}: {problem}", file=sys.stderr)
        return 0 if result.ok else 1
    finally:
        window.close()
        handler.uninstall()


def main(argv: list[str] | None = None) -> int:
    args, qt_args = build_parser().parse_known_args(argv)
    if args.screenshots:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = create_application(qt_args)
    if args.screenshots:
        return run_screenshots(args, app)

    from pathomics_desktop.ui.crash import CrashHandler
    from pathomics_desktop.ui.main_window import MainWindow
    from pathomics_desktop.ui.settings import dark_mode
    from pathomics_desktop.ui.theme import apply_theme

    apply_theme(dark_mode(), app)
    window = MainWindow()
    handler = CrashHandler(lambda: window.ctx).install()
    window.show()
    root = args.project or args.folder
    if root:
        window.open_project(root)
    try:
        return app.exec()
    finally:
        handler.uninstall()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
