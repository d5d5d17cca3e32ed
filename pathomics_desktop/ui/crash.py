"""Errors as a person meets them: a message that says what to do, never a traceback.

* A :class:`~pathomics_desktop.errors.UserError` (bad input, a missing file, an outdated
  registry...) is shown as it is: its message already names what is wrong and where.
* A background task that fails unexpectedly (``ctx.task_failed``) shows a short message; the
  technical details sit behind a "Show Details..." button.
* An unexpected exception anywhere else (``sys.excepthook``) opens the crash dialog, which
  saves a report file and shows where it is.

Privacy policy of the crash report: it holds the traceback's code (file, line, function,
source line), the versions (Python, Qt, PySide6, Pathomics Desktop, platform), the last
:data:`MAX_ACTIONS` user actions (menu commands and view switches by name, never the
patient, field or value concerned) and no local variables. Exception messages (and, to be
safe, the source lines) can quote data, so they are scrubbed: quoted literals become
``'<value>'``, ISO dates ``<date>``, runs of 4+ digits ``<number>``, and every study id and
identifier value (name, MRN, birth date) known to the open registry ``<identifier>``. No cell
value is written.
"""

from __future__ import annotations

import datetime as dt
import importlib
import platform
import re
import sys
import traceback
from collections import deque
from pathlib import Path
from typing import Callable, Iterable

from PySide6.QtCore import QStandardPaths, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.errors import UserError

MAX_ACTIONS = 30
_ACTIONS: deque[str] = deque(maxlen=MAX_ACTIONS)


# -- the action log ------------------------------------------------------------------------
def record_action(name: str) -> None:
    """Remember a user action for crash reports: a command or view name only (no data)."""
    _ACTIONS.append(f"{dt.datetime.now().strftime('%H:%M:%S')} {name}")


def last_actions() -> list[str]:
    return list(_ACTIONS)


# -- classifying failures ------------------------------------------------------------------
def is_user_error_trace(trace: str) -> bool:
    """Does a worker's formatted traceback end in a UserError (or a subclass)?

    ``FunctionWorker.failed`` carries only (message, traceback text); the last line of the
    text names the exception class (``module.Class: message``). An empty traceback is a
    failure a view reported itself, so it counts as a user error too."""
    lines = [line for line in (trace or "").strip().splitlines() if line and not line.startswith(" ")]
    if not lines:
        return True
    qualified = lines[-1].split(":", 1)[0].strip()
    module_name, _, name = qualified.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name or "builtins"), name)
    except (ImportError, AttributeError, ValueError):
        return False
    return isinstance(cls, type) and issubclass(cls, UserError)


# -- scrubbing and the report ------------------------------------------------------------
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_NUMBER = re.compile(r"\d{4,}")


def known_identifiers(registry) -> list[str]:
    """Study ids and identifier values (name, MRN, birth date) of the registry's patients."""
    if registry is None:
        return []
    from sqlalchemy import select

    from pathomics_desktop.registry.models import Patient, PatientIdentifier

    values: list[str] = []
    try:
        with registry.session() as session:
            values += [s for s in session.scalars(select(Patient.study_id)) if s]
            for name, mrn, birth in session.execute(
                    select(PatientIdentifier.name, PatientIdentifier.mrn, PatientIdentifier.birth_date)):
                values += [str(v) for v in (name, mrn, birth) if v]
    except Exception:  # the crash may be the database itself: scrub with the patterns only
        return []
    return values


def scrub(text: str, identifiers: Iterable[str] = ()) -> str:
    """Remove data values from an exception message (see the module docstring)."""
    for value in sorted({v for v in identifiers if v and len(v) >= 3}, key=len, reverse=True):
        text = text.replace(value, "<identifier>")
    text = _QUOTED.sub("'<value>'", text)
    text = _DATE.sub("<date>", text)
    return _NUMBER.sub("<number>", text)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return list(reversed(chain))


def versions() -> dict[str, str]:
    import PySide6
    from PySide6.QtCore import qVersion

    import pathomics_desktop

    return {"pathomics-desktop": pathomics_desktop.__version__, "python": platform.python_version(),
            "qt": qVersion(), "pyside6": PySide6.__version__,
            "platform": f"{platform.system()} {platform.release()} ({platform.machine()})"}


def build_report(exc: BaseException, *, identifiers: Iterable[str] = ()) -> str:
    """The crash report text (see the module docstring for what it holds and omits)."""
    identifiers = list(identifiers)
    lines = ["Pathomics Desktop crash report",
             f"time: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}", ""]
    lines += [f"{k}: {v}" for k, v in versions().items()]
    lines += ["", "last actions (oldest first):"]
    lines += [f"  {a}" for a in last_actions()] or ["  (none)"]
    lines += ["", "traceback (scrubbed of data values):"]
    for i, link in enumerate(_exception_chain(exc)):
        if i:
            lines.append("  -- which caused --")
        frames = traceback.format_list(traceback.extract_tb(link.__traceback__))
        lines += [scrub(chunk.rstrip("\n"), identifiers) for chunk in frames]
        lines.append(f"{type(link).__module__}.{type(link).__qualname__}: {scrub(str(link), identifiers)}")
    return "\n".join(lines) + "\n"


def report_folder(project=None) -> Path:
    """``<project>/reports/crash`` when a project is open, else the user's data folder."""
    if project is not None:
        try:
            return project.folder("reports") / "crash"
        except OSError:
            pass
    base = QStandardPaths.writableLocation(QStandardPaths.AppLocalDataLocation) or str(Path.home())
    return Path(base) / "crash-reports"


def save_report(text: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    path = folder / f"crash-{stamp}.txt"
    path.write_text(text, encoding="utf-8")
    return path


# -- dialogs -------------------------------------------------------------------------------
class CrashDialog(QDialog):
    """Tells the user what happened, that saved data are safe, and where the report is."""

    def __init__(self, report_path: Path, report_text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Pathomics Desktop: unexpected problem")
        self.report_path = report_path
        message = QLabel(
            "<b>Pathomics Desktop met an unexpected problem.</b><br><br>"
            "Every edit you saved is safe in the registry; an edit that was not saved yet may "
            "need to be made again.<br><br>"
            f"A report (no patient data) was saved to:<br><code>{report_path}</code><br><br>"
            "Please send this file to your Pathomics Desktop support contact, then carry on or "
            "restart the application.")
        message.setWordWrap(True)
        message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.details = QPlainTextEdit(report_text)
        self.details.setReadOnly(True)
        self.details.setVisible(False)
        self.details.setMinimumHeight(220)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        toggle = QPushButton("Show report")
        toggle.setCheckable(True)
        toggle.toggled.connect(self.details.setVisible)
        toggle.toggled.connect(lambda on: toggle.setText("Hide report" if on else "Show report"))
        copy = QPushButton("Copy path")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(str(report_path)))
        folder = QPushButton("Open folder")
        folder.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(report_path.parent))))
        for button in (toggle, copy, folder):
            buttons.addButton(button, QDialogButtonBox.ActionRole)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(message)
        layout.addWidget(self.details)
        layout.addWidget(buttons)
        self.resize(560, 260)


def show_user_error(parent: QWidget | None, title: str, message: str) -> None:
    """A UserError's message as it is (it names what is wrong and where)."""
    QMessageBox.warning(parent, title, message)


def show_task_failure(parent: QWidget | None, title: str, message: str, trace: str) -> None:
    """``ctx.task_failed``: a user error as it is; anything else with what to do, and the
    technical details only behind "Show Details..."."""
    if is_user_error_trace(trace):
        show_user_error(parent, title, message)
        return
    box = QMessageBox(QMessageBox.Critical, title,
                      "The task stopped because of an unexpected problem. Your saved data are safe.\n\n"
                      "Try again; if it happens again, send the details below to your support contact.",
                      QMessageBox.Ok, parent)
    box.setInformativeText(message.splitlines()[0][:300] if message else "")
    box.setDetailedText(trace)
    box.exec()


class CrashHandler:
    """``sys.excepthook`` for the GUI: a UserError gets a message box, anything else a saved
    report and the crash dialog. ``context()`` returns the open ProjectContext (or None);
    in headless mode (``--screenshots``) nothing modal opens and the report path is printed."""

    def __init__(self, context: Callable[[], object] | None = None, *, headless: bool = False):
        self.context = context or (lambda: None)
        self.headless = headless
        self.reports: list[Path] = []
        self.dialogs: list[CrashDialog] = []
        self._previous = None

    def install(self) -> "CrashHandler":
        self._previous = sys.excepthook
        sys.excepthook = self
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook = self._previous

    def __call__(self, exc_type, exc, tb) -> None:
        self.handle(exc if exc is not None else exc_type())

    def handle(self, exc: BaseException) -> Path | None:
        if isinstance(exc, KeyboardInterrupt):
            QApplication.quit()
            return None
        parent = QApplication.activeWindow()
        if isinstance(exc, UserError):
            if self.headless:
                print(f"error: {exc}", file=sys.stderr)
            else:
                show_user_error(parent, "Pathomics Desktop", str(exc))
            return None
        ctx = self.context()
        text = build_report(exc, identifiers=known_identifiers(getattr(ctx, "registry", None)))
        path = save_report(text, report_folder(getattr(ctx, "project", None)))
        self.reports.append(path)
        if self.headless:
            print(f"unexpected error ({type(exc).__name__}); report saved to {path}", file=sys.stderr)
            return path
        dialog = CrashDialog(path, text, parent)
        self.dialogs = [d for d in self.dialogs if d.isVisible()] + [dialog]
        dialog.open()
        return path
