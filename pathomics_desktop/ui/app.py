"""``pathomics-desktop``: start the GUI (optionally on a project folder)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pathomics-desktop")
    parser.add_argument("project", nargs="?", help="project folder to open")
    args, qt_args = parser.parse_known_args(argv)
    from PySide6.QtWidgets import QApplication

    from pathomics_desktop.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setApplicationName("Pathomics Desktop")
    window = MainWindow()
    window.show()
    if args.project:
        window.open_project(args.project)
    return app.exec()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
