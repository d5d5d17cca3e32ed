"""``python -m pathomics_desktop.ui.probe``: start a QApplication and print the platform name.

Run in a child process by the launcher: if Qt cannot load its platform plugin it aborts the
process, which then costs only the probe."""

from __future__ import annotations

if __name__ == "__main__":
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    print(app.platformName())
