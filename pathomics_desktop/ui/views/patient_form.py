"""The patient form, generated from the codebook.

Every variable appears with its label and unit, grouped by where the registry keeps it
(patient, surgery, pathology, laboratory, treatment, comorbidities, follow-up summary,
user-defined variables); the identifiers (name, MRN, birth date) sit in a section of their
own that is hidden, and not even loaded, until "Show identifiers" is ticked.

Editors follow the variable's type: categories and yes/no as drop-downs showing code and
label, dates as ISO text with a calendar, numbers with their limits. Each value is checked
with the codebook while typing (:meth:`Variable.parse`): a hard-limit error is shown in red
beside the field and blocks Save; a soft-limit warning opens a note field beside it, and the
note becomes the audit row's reason; a locked record needs a reason for the change.

OS/RFS, the AJCC stage and the inclusion decision are recomputed live from the values in the
form by :func:`pathomics_desktop.cohort.live.derive_from_values` (the cohort functions
themselves). Save pushes one :class:`~pathomics_desktop.ui.commands.EditValuesCommand` on
the undo stack; the follow-up visits are added, edited and deleted by their own commands.
A field's history (who, when, old, new, reason) opens from its "History" button.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable

from PySide6.QtCore import QDate, Qt
from PySide6.QtGui import QAction, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCalendarWidget,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
    QWidgetAction,
)

from pathomics_desktop.cohort.live import LiveDerived, derive_from_values
from pathomics_desktop.errors import UserError
from pathomics_desktop.registry import service
from pathomics_desktop.registry.codebook import CellError, Codebook, Variable
from pathomics_desktop.ui.commands import (
    AddVisitCommand,
    DeleteVisitCommand,
    EditValuesCommand,
    EditVisitCommand,
    SetLockCommand,
    push,
)
from pathomics_desktop.ui.models.visits import COLUMNS as VISIT_COLUMNS
from pathomics_desktop.ui.models.visits import VisitTableModel
from pathomics_desktop.ui.views.base import View

#: form sections: (key, title); a variable's key is its storage table ("custom" for user
#: variables, "identifiers" for direct identifiers)
SECTIONS = [("patients", "Patient"), ("surgeries", "Surgery"), ("pathology", "Pathology"),
            ("labs", "Laboratory"), ("treatments", "Treatment"), ("comorbidities", "Comorbidities"),
            ("followup", "Follow-up summary"), ("custom", "User-defined variables"),
            ("identifiers", "Identifiers")]
NOT_SET = "not set"
ERROR_STYLE = "color: #b00020;"
WARNING_STYLE = "color: #8a5300;"
CHANGED_STYLE = "font-weight: bold; color: #0b5394;"
TWO_COLUMNS_WIDTH = 720  # px of form needed for two columns of sections
NUMBER_PATTERN = r"\s*-?\d*([.,]\d*)?\s*"
DATE_PATTERN = r"\d{0,4}(-\d{0,2}(-\d{0,2})?)?"


def section_of(var: Variable) -> str:
    if var.identifier:
        return "identifiers"
    if var.is_custom:
        return "custom"
    return var.storage.partition(".")[0]


def code_label(code: str, synonyms: tuple[str, ...]) -> str:
    """An abbreviated code's readable label from its synonyms (``DP`` -> distal
    pancreatectomy): the longest synonym made of letters, spaces and hyphens; "" for codes
    that are words already (``female``, ``alive``)."""
    if code.islower():
        return ""
    words = [s for s in synonyms if len(s) > 3 and s.lower() != code.lower()
             and re.fullmatch(r"[A-Za-z][A-Za-z -]*", s)]
    return max(words, key=len) if words else ""


def limits_text(var: Variable) -> str:
    """The limits of a number beside its field: hard limits, then the expected range."""
    def span(lo, hi) -> str:
        if lo is None:
            return f"≤ {hi}"
        return f"≥ {lo}" if hi is None else f"{lo}–{hi}"

    text = span(var.min, var.max) if var.min is not None or var.max is not None else ""
    if var.soft_min is not None or var.soft_max is not None:
        text += f" (expected {span(var.soft_min, var.soft_max)})"
    return text.strip()


class DateEdit(QWidget):
    """An ISO date (or empty: not set) typed or picked from a calendar."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.line = QLineEdit()
        self.line.setPlaceholderText("YYYY-MM-DD")
        self.line.setValidator(QRegularExpressionValidator(DATE_PATTERN, self.line))
        self.line.setClearButtonEnabled(True)
        self.line.setMinimumWidth(110)
        self.button = QToolButton()
        self.button.setText("▾")
        self.button.setToolTip("Pick a date from the calendar")
        self.button.setPopupMode(QToolButton.InstantPopup)
        menu = QMenu(self.button)
        self.calendar = QCalendarWidget()
        self.calendar.setGridVisible(True)
        action = QWidgetAction(menu)
        action.setDefaultWidget(self.calendar)
        menu.addAction(action)
        menu.aboutToShow.connect(self._calendar_at_value)
        self.calendar.clicked.connect(lambda d: (self.set_date(d.toPython()), menu.close()))
        self.button.setMenu(menu)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.line, 1)
        layout.addWidget(self.button)
        self.textChanged = self.line.textChanged

    def _calendar_at_value(self) -> None:
        try:
            day = dt.date.fromisoformat(self.line.text().strip())
        except ValueError:
            day = dt.date.today()
        self.calendar.setSelectedDate(QDate(day.year, day.month, day.day))

    def set_date(self, day: dt.date | None) -> None:
        self.line.setText(day.isoformat() if day else "")

    def text(self) -> str:
        return self.line.text()


class FieldEditor:
    """One variable's editor, its inline message and its note; validates with the codebook.

    ``state()`` -> (canonical value, hard error or None, soft warning or None)."""

    def __init__(self, var: Variable, on_change: Callable[[], None]):
        self.var = var
        self.original: Any = None
        self._on_change = on_change
        self._loading = False
        self.label = QLabel(var.display_label + (" *" if var.required else ""))
        self.label.setToolTip(f"{var.name}" + (" (required)" if var.required else ""))
        self.widget = self._make_widget()
        limits = limits_text(var)
        self.hint = QLabel(f"limits {limits}" if limits and var.type in ("integer", "number") else "")
        self.hint.setStyleSheet("color: #6b7280;")
        self.hint.setVisible(bool(self.hint.text()))
        if limits:
            self.label.setToolTip(f"{var.name}: limits {limits}" + (" (required)" if var.required else ""))
        self.history_button = QToolButton()
        self.history_button.setText("⋯")
        self.history_button.setAutoRaise(True)
        self.history_button.setToolTip(f"History: who changed {var.label}, when, and why")
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        self.note = QLineEdit()
        self.note.setPlaceholderText("Note (required): why is this value right?")
        self.note.setVisible(False)
        self.note.textChanged.connect(lambda _t: self._on_change())

    def _make_widget(self) -> QWidget:
        var = self.var
        if var.type in ("category", "yesno"):
            combo = QComboBox()
            combo.addItem(NOT_SET, None)
            codes = var.codes if var.type == "category" else {"yes": (), "no": ()}
            for code, synonyms in codes.items():
                label = code_label(code, synonyms)
                combo.addItem(f"{code} — {label}" if label else code, code)
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
            combo.currentIndexChanged.connect(lambda _i: self._changed())
            return combo
        if var.type == "date":
            edit = DateEdit()
            edit.textChanged.connect(lambda _t: self._changed())
            return edit
        edit = QLineEdit()
        if var.type in ("integer", "number"):
            edit.setValidator(QRegularExpressionValidator(NUMBER_PATTERN, edit))
            edit.setAlignment(Qt.AlignRight)
            edit.setPlaceholderText(var.unit or "number")
            edit.setMinimumWidth(90)
            edit.setMaximumWidth(130)
        edit.textChanged.connect(lambda _t: self._changed())
        return edit

    # -- values --------------------------------------------------------------------------
    def load(self, value: Any) -> None:
        """Show a stored value (not a change)."""
        self._loading = True
        self.original = value
        w = self.widget
        if isinstance(w, QComboBox):
            key = None if value is None else (("yes" if value else "no") if self.var.type == "yesno" else value)
            index = w.findData(key)
            if index < 0:  # a stored value that is no longer a code: show it, do not change it
                w.addItem(f"{key} (not a code of {self.var.name})", key)
                index = w.count() - 1
            w.setCurrentIndex(index)
        elif isinstance(w, DateEdit):
            w.set_date(value)
        else:
            w.setText("" if value is None else (f"{value:g}" if isinstance(value, float) else str(value)))
        self.note.clear()
        self._loading = False
        self.refresh_message()

    def raw(self) -> Any:
        w = self.widget
        if isinstance(w, QComboBox):
            return w.currentData()
        return w.text()

    def set_raw(self, raw: Any) -> None:
        """Type or choose a value as a user would (tests, scripted demos)."""
        w = self.widget
        if isinstance(w, QComboBox):
            index = w.findData(raw)
            if index < 0:
                raise UserError(f"{self.var.label}: {raw!r} is not one of its choices")
            w.setCurrentIndex(index)
        elif isinstance(w, DateEdit):
            w.line.setText("" if raw is None else str(raw))
        else:
            w.setText("" if raw is None else str(raw))

    def state(self) -> tuple[Any, str | None, str | None]:
        try:
            value, warning = self.var.parse(self.raw())
        except CellError as exc:
            return self.original, str(exc), None
        return value, None, warning

    @property
    def dirty(self) -> bool:
        value, error, _ = self.state()
        return error is not None or value != self.original

    def _changed(self) -> None:
        if self._loading:
            return
        self.refresh_message()
        self._on_change()

    def refresh_message(self) -> None:
        _value, error, warning = self.state()
        dirty = self.dirty
        self.label.setStyleSheet(CHANGED_STYLE if dirty else "")
        if error:
            self.message.setText(f"✖ {error} — not saved")
            self.message.setStyleSheet(ERROR_STYLE)
        elif warning and dirty:
            self.message.setText(f"⚠ {warning}")
            self.message.setStyleSheet(WARNING_STYLE)
        shown = bool(error or (warning and dirty))
        self.message.setVisible(shown)
        self.note.setVisible(bool(warning and dirty and not error))
        self.hint.setVisible(bool(self.hint.text()) and not shown)


def build_fields(grid: QGridLayout, editors: list[FieldEditor]) -> None:
    """Lay out editors: label | editor and limits | history, and the message/note row below."""
    grid.setColumnStretch(1, 1)
    row = grid.rowCount()
    for editor in editors:
        editor.label.setWordWrap(True)
        editor.label.setMinimumWidth(150)
        editor.label.setMaximumWidth(190)
        grid.addWidget(editor.label, row, 0)
        grid.addWidget(editor.widget, row, 1)
        grid.addWidget(editor.history_button, row, 2)
        notes = QHBoxLayout()  # below the field: its limits, or its error / warning and note
        notes.setContentsMargins(0, 0, 0, 0)
        notes.addWidget(editor.hint)
        notes.addWidget(editor.message, 1)
        notes.addWidget(editor.note, 1)
        grid.addLayout(notes, row + 1, 0, 1, 3)
        row += 2
    grid.setRowStretch(row, 1)  # rows stay at the top when the box is taller than they are


class FieldHistoryDialog(QDialog):
    """Who changed one field of a patient, when, from what to what, and why."""

    HEADERS = ["When (UTC)", "User", "Action", "Old", "New", "Reason"]

    def __init__(self, study_id: str, var: Variable, rows: list[dict[str, Any]], parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"History of {var.label} — {study_id}")
        self.rows = rows
        self.table = QTableWidget(len(rows), len(self.HEADERS))
        self.table.setHorizontalHeaderLabels(self.HEADERS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        for r, row in enumerate(rows):
            values = [row["at"].strftime("%Y-%m-%d %H:%M:%S"), row["user"], row["action"],
                      row["old"] or "", row["new"] or "", row["reason"] or ""]
            for c, text in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(str(text)))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        title = QLabel(f"<b>{var.display_label}</b> of {study_id}: {len(rows)} change(s), oldest first")
        layout.addWidget(title)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(760, 300)


class VisitDialog(QDialog):
    """Add or edit a follow-up visit, validated like the form (hard errors block OK; soft
    warnings need a note; a locked record needs a reason)."""

    def __init__(self, form: "PatientFormView", visit: dict[str, Any] | None):
        super().__init__(form)
        self.form, self.visit = form, visit
        book = form.codebook
        from pathomics_desktop.registry.importer import VISIT_DATE

        variables = [VISIT_DATE if n == "visit_date" else book[n] for n in service.VISIT_FIELDS]
        self.setWindowTitle(f"{'Edit' if visit else 'Add'} follow-up visit — {form.study_id}")
        self.fields = {v.name: FieldEditor(v, self._changed) for v in variables}
        for editor in self.fields.values():
            editor.history_button.setVisible(False)
            editor.load(visit.get(editor.var.name) if visit else None)
        grid = QGridLayout()
        build_fields(grid, list(self.fields.values()))
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("required: the record is locked" if form.locked else "optional")
        self.error = QLabel("")
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        reason_row = QFormLayout()
        reason_row.addRow("Reason for change", self.reason)
        layout.addLayout(reason_row)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.resize(620, 320)

    def _changed(self) -> None:
        self.error.setText("")

    def submit(self) -> bool:
        """Validate and write (one undoable command); the dialog closes only on success."""
        errors = [f"{e.var.label}: {err}" for e in self.fields.values() if (err := e.state()[1])]
        if errors:
            self.error.setText("Cannot save: " + "; ".join(errors))
            return False
        fields = {name: e.state()[0] for name, e in self.fields.items()}
        notes = {name: e.note.text().strip() for name, e in self.fields.items() if e.note.text().strip()}
        missing = [e.var.label for e in self.fields.values() if e.state()[2] and not e.note.text().strip()]
        if missing:
            self.error.setText("A note is required for a value outside the expected range: " + ", ".join(missing))
            return False
        reason = self.reason.text().strip() or None
        if self.form.locked and not reason:
            self.error.setText("This record is locked: enter a reason for the change.")
            return False
        ctx, sid = self.form.ctx, self.form.study_id
        if self.visit is None:
            command = AddVisitCommand(ctx, sid, fields, reason=reason, notes=notes)
        else:
            command = EditVisitCommand(ctx, sid, self.visit["visit_date"], fields, reason=reason, notes=notes)
        try:
            push(ctx, command)
        except UserError as exc:
            self.error.setText(str(exc))
            return False
        self.accept()
        return True


class PatientFormView(View):

    #: action -> widgets that do it (greyed out when the role lacks it: ui/permissions.py)
    PERMISSIONS = {"edit_patients": ("save_button", "add_visit_button", "edit_visit_button", "delete_visit_button"),
                   "lock_patients": ("lock_button",), "view_identifiers": ("show_identifiers",)}
    view_id = "patient"
    title = "Patient"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.study_id: str | None = None
        self.record: dict[str, Any] | None = None
        self.codebook: Codebook | None = None
        self.fields: dict[str, FieldEditor] = {}
        self.sections: dict[str, QGroupBox] = {}
        self.derived: LiveDerived | None = None
        self.history_dialog: FieldHistoryDialog | None = None
        self.visit_dialog: VisitDialog | None = None
        self._layout_key: tuple | None = None
        self._columns = 0
        self._loading = False
        self._saving = False
        self._stale = False

        # header: patient, lock, identifiers
        self.heading = QLabel("No patient selected: double-click a patient in the Patients list")
        self.heading.setStyleSheet("font-size: 15px; font-weight: bold;")
        self.lock_badge = QLabel("")
        self.goto = QLineEdit()
        self.goto.setPlaceholderText("Study ID")
        self.goto.setMaximumWidth(140)
        self.goto.returnPressed.connect(lambda: self.show_patient(self.goto.text().strip()))
        self.lock_button = QPushButton("Lock record")
        self.lock_button.clicked.connect(self.toggle_lock)
        self.show_identifiers = QCheckBox("Show identifiers")
        self.show_identifiers.setToolTip("Show (and load) name, medical record number and birth date")
        self.show_identifiers.toggled.connect(self._identifiers_toggled)
        header = QHBoxLayout()
        header.addWidget(self.heading)
        header.addWidget(self.lock_badge)
        header.addStretch(1)
        header.addWidget(QLabel("Go to"))
        header.addWidget(self.goto)
        header.addWidget(self.lock_button)
        header.addWidget(self.show_identifiers)

        # save bar
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("Reason for change (required when the record is locked)")
        self.reason.textChanged.connect(lambda _t: self._update_state())
        self.save_button = QPushButton("Save")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        self.revert_button = QPushButton("Revert")
        self.revert_button.clicked.connect(self.revert)
        self.state_label = QLabel("")
        self.state_label.setWordWrap(True)
        savebar = QHBoxLayout()
        savebar.addWidget(self.reason, 2)
        savebar.addWidget(self.revert_button)
        savebar.addWidget(self.save_button)
        savebar.addWidget(self.state_label, 3)

        # the generated form (left) and the derived values and visits (right)
        self.form_body = QWidget()
        self.form_grid = QGridLayout(self.form_body)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.form_body)

        self.derived_labels = {key: QLabel("–") for key in ("os", "rfs", "stage", "inclusion")}
        derived_box = QGroupBox("Derived (live, from the values in the form)")
        derived_form = QFormLayout(derived_box)
        for key, title in (("os", "Overall survival"), ("rfs", "Recurrence-free survival"),
                           ("stage", "AJCC 8th stage"), ("inclusion", "Inclusion")):
            self.derived_labels[key].setWordWrap(True)
            derived_form.addRow(title, self.derived_labels[key])

        visits_box = QGroupBox("Follow-up visits")
        self.visits_model = VisitTableModel()
        self.visits_table = QTableView()
        self.visits_table.setModel(self.visits_model)
        self.visits_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.visits_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.visits_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.visits_table.verticalHeader().setVisible(False)
        self.visits_table.verticalHeader().setDefaultSectionSize(22)
        self.visits_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.visits_table.doubleClicked.connect(lambda index: self.edit_visit(index.row()))
        self.add_visit_button = QPushButton("Add visit…")
        self.add_visit_button.clicked.connect(self.add_visit)
        self.edit_visit_button = QPushButton("Edit…")
        self.edit_visit_button.clicked.connect(lambda: self.edit_visit(self._selected_visit_row()))
        self.delete_visit_button = QPushButton("Delete")
        self.delete_visit_button.clicked.connect(lambda: self.delete_visit(self._selected_visit_row()))
        self.visit_message = QLabel("")
        self.visit_message.setWordWrap(True)
        self.visit_message.setStyleSheet(ERROR_STYLE)
        visit_buttons = QHBoxLayout()
        for b in (self.add_visit_button, self.edit_visit_button, self.delete_visit_button):
            visit_buttons.addWidget(b)
        visit_buttons.addStretch(1)
        visits_layout = QVBoxLayout(visits_box)
        visits_layout.addWidget(self.visits_table, 1)
        visits_layout.addLayout(visit_buttons)
        visits_layout.addWidget(self.visit_message)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(derived_box)
        right_layout.addWidget(visits_box, 1)
        self.splitter = QSplitter()
        self.splitter.setObjectName("patient_form_splitter")
        self.splitter.addWidget(self.scroll)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([940, 420])
        self.splitter.splitterMoved.connect(lambda _pos, _index: self._place_sections())
        self.scroll.setMinimumWidth(480)
        right.setMinimumWidth(360)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addLayout(savebar)
        layout.addWidget(self.splitter, 1)
        self._set_enabled(False)

    # -- context -------------------------------------------------------------------------
    def set_context(self, ctx) -> None:
        if self.ctx is not None:
            try:
                self.ctx.data_changed.disconnect(self._data_changed)
            except (RuntimeError, TypeError):
                pass
        self.study_id, self.record = None, None
        if ctx is None:
            self.heading.setText("No project open")
            self.visits_model.set_visits([])
            for editor in self.fields.values():
                editor.load(None)
            self._set_enabled(False)
        if ctx is not None:  # ctx.request_patient is routed here by the shell (show_patient)
            ctx.data_changed.connect(self._data_changed)
        super().set_context(ctx)

    def _data_changed(self, what: str) -> None:
        if self._saving or self.study_id is None or what not in ("patients", "visits", "variables", "slides", ""):
            return
        if not self.isVisible():  # the shell refreshes a hidden view when it is shown
            return
        if self.dirty_fields():
            self._stale = True
            self._update_state()
            return
        self.refresh()

    def refresh(self) -> None:
        if self.ctx is not None and self.study_id:
            self.show_patient(self.study_id)

    def find(self, text: str) -> None:
        """Ctrl+F: a study id opens that patient; other text focuses the first field whose
        label contains it."""
        text = text.strip()
        if not text:
            self.goto.setFocus()
            return
        for editor in self.fields.values():
            if text.lower() in editor.var.label.lower() and editor.widget.isVisibleTo(self):
                self.scroll.ensureWidgetVisible(editor.widget)
                editor.widget.setFocus()
                return
        self.show_patient(text)

    def busy(self) -> bool:
        return self._loading or super().busy()

    # -- loading -------------------------------------------------------------------------
    def show_patient(self, study_id: str) -> None:
        """Load a patient into the form (in a worker; the form fills when it arrives)."""
        if self.ctx is None or not study_id:
            return
        self._loading = True
        self.state_label.setText(f"Loading {study_id}…")
        self.ctx.run(service.load_patient_record, self.ctx.registry, study_id,
                     include_identifiers=self.show_identifiers.isChecked(),
                     on_done=self._loaded, on_error=self._load_failed, key=f"patient:record:{id(self)}")

    def _load_failed(self, message: str, _trace: str) -> None:
        self._loading = False
        self.state_label.setText(message)
        self.state_label.setStyleSheet(ERROR_STYLE)

    def _loaded(self, record: dict[str, Any]) -> None:
        self._loading = False
        self._stale = False
        self.record = record
        self.study_id = record["study_id"]
        self.codebook = record["codebook"]
        self._build_form(self.codebook)
        values = record["values"]
        for name, editor in self.fields.items():
            editor.load(values.get(name))
        self.sections["identifiers"].setVisible(self.show_identifiers.isChecked())
        self.visits_model.set_visits(record["visits"])
        locked = record["locked"]
        synthetic = " · SYNTHETIC" if record.get("synthetic") else ""
        self.heading.setText(f"Patient {self.study_id}{synthetic}")
        self.lock_badge.setText("🔒 locked" if locked else "")
        self.lock_badge.setStyleSheet("color: #8a5300; font-weight: bold;")
        self.lock_button.setText("Unlock record" if locked else "Lock record")
        self.reason.setPlaceholderText("Reason for change (required: this record is locked)" if locked
                                       else "Reason for change (optional)")
        self.goto.setText(self.study_id)
        self._set_enabled(True)
        self.recompute()

    @property
    def locked(self) -> bool:
        return bool(self.record and self.record["locked"])

    def _build_form(self, book: Codebook) -> None:
        """(Re)generate the editors when the codebook's variables change."""
        variables = [v for v in book if v.name != "study_id"]
        key = tuple((v.name, v.type, tuple(v.codes), v.min, v.max, v.soft_min, v.soft_max) for v in variables)
        if key == self._layout_key:
            return
        self._layout_key = key
        while self.form_grid.count():
            item = self.form_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.fields, self.sections = {}, {}
        by_section: dict[str, list[Variable]] = {}
        for var in variables:
            by_section.setdefault(section_of(var), []).append(var)
        for section, title in SECTIONS:
            box = QGroupBox(title)
            self.sections[section] = box
            grid = QGridLayout(box)
            editors = []
            for var in by_section.get(section, []):
                editor = FieldEditor(var, self.recompute)
                editor.history_button.clicked.connect(lambda _c=False, n=var.name: self.show_history(n))
                for w in (editor.label, editor.widget):
                    w.setContextMenuPolicy(Qt.CustomContextMenu)
                    w.customContextMenuRequested.connect(lambda pos, n=var.name, w=w: self._field_menu(n, w, pos))
                self.fields[var.name] = editor
                editors.append(editor)
            build_fields(grid, editors)
            if not editors:
                box.setVisible(False)
        self._columns = 0
        self._place_sections()

    def _place_sections(self) -> None:
        """Sections in two columns when the form is wide enough, else in one."""
        columns = 2 if self.scroll.viewport().width() >= TWO_COLUMNS_WIDTH else 1
        if columns == self._columns or not self.sections:
            return
        self._columns = columns
        boxes = [box for key, box in self.sections.items() if key != "identifiers" and box.layout().count()]
        for box in self.sections.values():
            self.form_grid.removeWidget(box)
        for position, box in enumerate(boxes):
            self.form_grid.addWidget(box, position // columns, position % columns)
        identifiers = self.sections.get("identifiers")
        if identifiers is not None and identifiers.layout().count():
            identifiers.setStyleSheet("QGroupBox { border: 1px solid #c9a227; margin-top: 6px; }")
            self.form_grid.addWidget(identifiers, 100, 0, 1, columns)
        self.form_grid.setRowStretch(101, 1)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._place_sections()

    def _field_menu(self, name: str, widget: QWidget, pos) -> None:
        menu = QMenu(self)
        action = QAction(f"History of {self.fields[name].var.label}…", menu)
        action.triggered.connect(lambda: self.show_history(name))
        menu.addAction(action)
        menu.popup(widget.mapToGlobal(pos))

    def _set_enabled(self, on: bool) -> None:
        for w in (self.save_button, self.revert_button, self.reason, self.lock_button,
                  self.add_visit_button, self.edit_visit_button, self.delete_visit_button):
            w.setEnabled(on)

    def _identifiers_toggled(self, on: bool) -> None:
        if "identifiers" in self.sections:
            self.sections["identifiers"].setVisible(on)
        if not on and self.record is not None:
            for var in self.codebook.identifiers:  # forget them, not only hide them
                self.record["values"].pop(var.name, None)
                if var.name in self.fields:
                    self.fields[var.name].load(None)
        elif on and self.study_id:
            self.show_patient(self.study_id)

    # -- live state ----------------------------------------------------------------------
    def form_values(self) -> dict[str, Any]:
        """The values the form holds now (a field with an error keeps its stored value)."""
        values = dict(self.record["values"]) if self.record else {}
        for name, editor in self.fields.items():
            if name in values or not editor.var.identifier:  # hidden identifiers stay out
                values[name] = editor.state()[0]
        return values

    def dirty_fields(self) -> list[FieldEditor]:
        return [e for e in self.fields.values() if e.dirty]

    def recompute(self) -> None:
        """Derived OS/RFS, stage and inclusion from the form's values (cohort functions)."""
        if self.record is None:
            return
        values = self.form_values()
        self.derived = derive_from_values(self.study_id, values, self.codebook,
                                          visits=self.record["visits"], slide_qc=self.record["slide_qc"])
        d = self.derived
        self.derived_labels["os"].setText(
            "cannot be derived yet" if d.os_months is None else
            f"{d.os_months:.1f} months, {'death' if d.os_event else 'alive (censored)'}")
        self.derived_labels["rfs"].setText(
            "cannot be derived yet" if d.rfs_months is None else
            f"{d.rfs_months:.1f} months, {'recurrence or death' if d.rfs_event else 'event-free (censored)'}")
        self.derived_labels["stage"].setText(
            "not determined (T, N or M missing)" if d.stage is None else f"{d.stage} (group {d.stage_group})")
        if d.included:
            self.derived_labels["inclusion"].setText("included")
            self.derived_labels["inclusion"].setStyleSheet("color: #1b5e20;")
        else:
            detail = f" ({d.detail})" if d.detail else ""
            self.derived_labels["inclusion"].setText(f"excluded: {d.exclusion_reason}{detail}")
            self.derived_labels["inclusion"].setStyleSheet("color: #8a5300;")
        self._update_state()

    def problems(self) -> list[str]:
        """Why Save is refused now (empty when it may go ahead)."""
        dirty = self.dirty_fields()
        out = [f"{e.var.label}: {e.state()[1]}" for e in dirty if e.state()[1]]
        out += [f"{e.var.label} needs a note (outside the expected range)"
                for e in dirty if e.state()[2] and not e.state()[1] and not e.note.text().strip()]
        if dirty and self.locked and not self.reason.text().strip():
            out.append("this record is locked: enter a reason for the change")
        return out

    def _update_state(self) -> None:
        dirty = self.dirty_fields()
        problems = self.problems()
        if problems:
            self.state_label.setText("Cannot save: " + "; ".join(problems))
            self.state_label.setStyleSheet(ERROR_STYLE)
        elif self._stale:
            self.state_label.setText("The record was changed elsewhere: Revert to reload it")
            self.state_label.setStyleSheet(WARNING_STYLE)
        elif dirty:
            self.state_label.setText(f"{len(dirty)} unsaved change(s)")
            self.state_label.setStyleSheet(CHANGED_STYLE)
        else:
            self.state_label.setText("All changes saved" if self.record else "")
            self.state_label.setStyleSheet("color: #6b7280;")
        self.save_button.setEnabled(bool(dirty) and not problems)
        self.revert_button.setEnabled(bool(dirty) or self._stale)

    # -- writing -------------------------------------------------------------------------
    def save(self) -> bool:
        """Write every changed field as one undoable command; refused (with the reason shown
        beside Save and the field) while a field has a hard error, a soft warning lacks a
        note, or a locked record lacks a reason."""
        if self.ctx is None or self.record is None:
            return False
        dirty = self.dirty_fields()
        if not dirty:
            return False
        if self.problems():
            self._update_state()
            return False
        changes = {e.var.name: (e.original, e.state()[0]) for e in dirty}
        notes = {e.var.name: e.note.text().strip() for e in dirty if e.note.text().strip()}
        labels = {e.var.name: e.var.label for e in dirty}
        command = EditValuesCommand(self.ctx, self.study_id, changes, reason=self.reason.text().strip() or None,
                                    notes=notes, labels=labels, expected_version=self.record.get("version"))
        self._saving = True
        try:
            push(self.ctx, command)
        except service.EditConflict as conflict:
            self.state_label.setText(str(conflict))
            self.state_label.setStyleSheet(ERROR_STYLE)
            self._show_conflict(conflict)
            return False
        except UserError as exc:
            self.state_label.setText(str(exc))
            self.state_label.setStyleSheet(ERROR_STYLE)
            return False
        finally:
            self._saving = False
        for name, (_old, new) in command.changes.items():  # saved: these are the stored values now
            self.record["values"][name] = new
            self.fields[name].load(new)
        self.record["version"] = service.record_version(self.ctx.registry, self.study_id)
        self.reason.clear()
        self.recompute()
        self.state_label.setText(f"Saved {len(changes)} change(s) — Ctrl+Z undoes")
        return True

    def _show_conflict(self, conflict) -> None:
        """Another user saved the record since it was opened: let the user choose per field
        (non-modal; kept on ``last_conflict_dialog``)."""
        from pathomics_desktop.ui.views.conflict_dialog import ConflictDialog

        dialog = ConflictDialog(conflict, self)
        dialog.accepted.connect(lambda: self.resolve_conflict(conflict, dialog.choices()))
        self.last_conflict_dialog = dialog
        dialog.open()

    def resolve_conflict(self, conflict, choices: dict[str, str]) -> bool:
        """Apply the user's choice: "theirs" shows the stored value (no change), "mine"
        keeps the typed value as a change of the stored one; then save against the current
        version (which may conflict again if a third save came in between)."""
        mine = {f["variable"]: f["mine"] for f in conflict.fields}
        for field in conflict.fields:
            name = field["variable"]
            editor = self.fields[name]
            self.record["values"][name] = field["theirs"]
            editor.load(field["theirs"])
            if choices.get(name) == "mine":
                editor.set_raw(editor.var.format(mine[name]) if mine[name] is not None else None)
        self.record["version"] = conflict.current_version
        if not self.dirty_fields():
            self.state_label.setText("Their values are shown; nothing of yours was saved")
            return False
        return self.save()

    def revert(self) -> None:
        """Drop unsaved changes and reload the stored record."""
        self._stale = False
        if self.study_id:
            self.show_patient(self.study_id)

    def toggle_lock(self) -> bool:
        if self.record is None:
            return False
        locked = not self.locked
        reason = self.reason.text().strip() or None
        if not locked and not reason:
            self.state_label.setText("Unlocking needs a reason: enter it in 'Reason for change'")
            self.state_label.setStyleSheet(ERROR_STYLE)
            return False
        try:
            push(self.ctx, SetLockCommand(self.ctx, self.study_id, locked, reason=reason))
        except UserError as exc:
            self.state_label.setText(str(exc))
            self.state_label.setStyleSheet(ERROR_STYLE)
            return False
        self.reason.clear()
        return True

    # -- visits --------------------------------------------------------------------------
    def _selected_visit_row(self) -> int:
        rows = self.visits_table.selectionModel().selectedRows()
        return rows[0].row() if rows else -1

    def add_visit(self) -> VisitDialog | None:
        if self.record is None:
            return None
        self.visit_dialog = VisitDialog(self, None)
        self.visit_dialog.open()
        return self.visit_dialog

    def edit_visit(self, row: int) -> VisitDialog | None:
        visit = self._editable_visit(row)
        if visit is None:
            return None
        self.visit_dialog = VisitDialog(self, visit)
        self.visit_dialog.open()
        return self.visit_dialog

    def delete_visit(self, row: int) -> bool:
        """Delete a visit (undoable, so no confirmation); a locked record needs the reason."""
        visit = self._editable_visit(row)
        if visit is None:
            return False
        reason = self.reason.text().strip() or None
        if self.locked and not reason:
            self.visit_message.setText("This record is locked: enter a reason for the change above, then Delete.")
            return False
        try:
            push(self.ctx, DeleteVisitCommand(self.ctx, self.study_id, visit["visit_date"], reason=reason))
        except UserError as exc:
            self.visit_message.setText(str(exc))
            return False
        self.reason.clear()
        return True

    def _editable_visit(self, row: int) -> dict[str, Any] | None:
        self.visit_message.setText("")
        if self.record is None or not 0 <= row < self.visits_model.rowCount():
            self.visit_message.setText("Select a visit first.")
            return None
        visit = self.visits_model.visit(row)
        if visit.get("source") != "visit":
            self.visit_message.setText("This is the follow-up summary: edit it in the form's Follow-up section.")
            return None
        return visit

    # -- history -------------------------------------------------------------------------
    def show_history(self, variable: str) -> FieldHistoryDialog | None:
        """Open the audit history of one field (who, when, old, new, reason)."""
        if self.ctx is None or self.study_id is None:
            return None
        try:
            rows = service.field_history(self.ctx.registry, self.study_id, variable)
        except UserError as exc:
            self.state_label.setText(str(exc))
            return None
        self.history_dialog = FieldHistoryDialog(self.study_id, self.fields[variable].var, rows, self)
        self.history_dialog.show()
        return self.history_dialog

    # -- screenshots ---------------------------------------------------------------------
    def prepare_screenshot(self) -> None:
        if self.ctx is not None and self.study_id is None:
            from pathomics_desktop.registry.patient_list import first_study_id

            first = first_study_id(self.ctx.registry)
            if first:
                self.show_patient(first)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"view": self.view_id, "study_id": self.study_id, "locked": self.locked}
        if self.record is None:
            return out
        sections: dict[str, dict[str, str]] = {}
        for name, editor in self.fields.items():
            if editor.var.identifier:
                continue
            w = editor.widget
            text = w.currentText() if isinstance(w, QComboBox) else w.text()
            sections.setdefault(section_of(editor.var), {})[editor.var.display_label] = text
        d = self.derived
        out.update({
            "sections": sections,
            "derived": None if d is None else {
                "os_months": None if d.os_months is None else round(d.os_months, 1), "os_event": d.os_event,
                "rfs_months": None if d.rfs_months is None else round(d.rfs_months, 1), "rfs_event": d.rfs_event,
                "stage": d.stage, "stage_group": d.stage_group, "included": d.included,
                "exclusion_reason": d.exclusion_reason},
            "visits": [{k: self.visits_model.index(r, c).data() for c, (k, _t) in enumerate(VISIT_COLUMNS)}
                       for r in range(self.visits_model.rowCount())],
            "unsaved": len(self.dirty_fields()),
            "problems": self.problems(),
        })
        return out
