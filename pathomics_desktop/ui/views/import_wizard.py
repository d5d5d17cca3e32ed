"""The import wizard: file -> mapping -> dry run -> import -> what changed.

1. **File**: a CSV/XLSX spreadsheet (patients, or a long follow-up file), or a REDCap raw
   export together with the project's REDCap data dictionary.
2. **Mapping**: each source column -> a codebook variable (or ignored), with value recodes
   (``1=female; 2=male``) and a preview grid; a REDCap export starts from the mapping
   proposed by its dictionary (:func:`pathomics_desktop.registry.redcap.plan_redcap`).
   Mappings are saved by name in the project (``mappings/NAME.json``, the store of the CLI's
   ``--save-mapping``).
3. **Check**: the dry run (:func:`~pathomics_desktop.registry.importer.import_file` or
   :func:`~pathomics_desktop.registry.redcap.import_redcap` with ``dry_run=True``, which
   performs the writes and rolls them back) in a worker; every error and warning is listed
   (file row, column, value, message) and its cell is highlighted in the preview (red:
   error, amber: warning).
4. **Import**: possible only after a dry run without errors, on the same file and mapping;
   warnings must be acknowledged.
5. **Summary**: patients added, patients and fields updated, visits added, from the import
   report; ``ctx.data_changed("patients")`` tells the other views.

The wizard computes nothing itself: reading, validation and writing are the registry's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.ui.views.base import View
from pathomics_desktop.ui.views.common import show_message

STEPS = ("File", "Mapping", "Check", "Import", "Summary")
ERROR_COLOR = QColor("#f6b8b3")    # red: an error in this cell
WARNING_COLOR = QColor("#ffd98a")  # amber: a warning
IGNORE = "__ignore__"
AS_IS = "__as_is__"
MASK = "\u2022\u2022\u2022"
EXAMPLE_DIR = Path(__file__).resolve().parents[3] / "resources" / "redcap"


# -- Qt-free steps (run in workers) --------------------------------------------------------
@dataclass
class LoadedFile:
    """A file read for the wizard, with what the mapping step offers."""

    path: str
    frame: Any
    variables: list[tuple[str, str]]  # (name, label) of every codebook variable, + visit_date
    identifiers: set[str]
    dictionary: str = ""
    plan: Any = None  # RedcapPlan for a REDCap export
    saved: list[str] = field(default_factory=list)


def load_file(registry, project_root: str, path: str, dictionary: str = "") -> LoadedFile:
    """Read the spreadsheet (and plan a REDCap mapping when a dictionary is given)."""
    from pathomics_desktop.registry.codebook import Codebook
    from pathomics_desktop.registry.importer import read_spreadsheet, saved_mappings
    from pathomics_desktop.registry.redcap import load_export

    plan = None
    if dictionary:
        frame, plan = load_export(registry, path, dictionary)
    else:
        frame = read_spreadsheet(path)
    with registry.session() as session:
        book = Codebook.for_session(session)
    variables = [(v.name, v.label) for v in book] + [("visit_date", "Visit date (follow-up file)")]
    return LoadedFile(path=path, frame=frame, variables=variables,
                      identifiers={v.name for v in book if v.identifier}, dictionary=dictionary,
                      plan=plan, saved=saved_mappings(project_root))


def run_import(registry, path: str, dictionary: str, mapping, *, dry_run: bool, user: str,
               reason: str | None, development_center: str, synthetic: bool):
    """The registry's import (REDCap or plain), dry or for real: an ImportReport."""
    from pathomics_desktop.registry.importer import import_file
    from pathomics_desktop.registry.redcap import import_redcap

    options = dict(mapping=mapping, dry_run=dry_run, user=user, reason=reason,
                   development_center=development_center, synthetic=synthetic)
    if dictionary:
        return import_redcap(registry, path, dictionary, **options)
    return import_file(registry, path, **options)


def format_recode(recode: dict[str, str]) -> str:
    return "; ".join(f"{a}={b}" for a, b in recode.items())


def parse_recode(text: str) -> dict[str, str]:
    """``"1=female; 2=male"`` -> ``{"1": "female", "2": "male"}``."""
    out = {}
    for part in text.replace("\n", ";").split(";"):
        raw, sep, value = part.partition("=")
        if sep and raw.strip():
            out[raw.strip()] = value.strip()
    return out


# -- the preview grid ----------------------------------------------------------------------
class PreviewModel(QAbstractTableModel):
    """The file's cells as text; issue cells get a red (error) or amber (warning) background
    and the message as tooltip; identifier columns are masked unless shown."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.columns: list[str] = []
        self.rows: list[list[str]] = []
        self.marks: dict[tuple[int, int], tuple[str, str]] = {}  # (row, col) -> (severity, message)
        self.masked: set[int] = set()
        self.ignored: set[int] = set()

    def set_frame(self, frame) -> None:
        self.beginResetModel()
        self.columns = [str(c) for c in frame.columns]
        self.rows = [["" if v is None else str(v) for v in rec] for rec in frame.itertuples(index=False)]
        self.marks = {}
        self.masked = set()
        self.endResetModel()

    def set_masked(self, columns: set[str], ignored: set[str] = frozenset()) -> None:
        """Mask the values of identifier ``columns``; grey out the ``ignored`` ones."""
        self.masked = {i for i, c in enumerate(self.columns) if c in columns}
        self.ignored = {i for i, c in enumerate(self.columns) if c in ignored}
        self._changed()

    def set_marks(self, marks: dict[tuple[int, int], tuple[str, str]]) -> None:
        self.marks = dict(marks)
        self._changed()

    def _changed(self) -> None:
        if self.rows:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.rows) - 1, len(self.columns) - 1))

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        if role == Qt.DisplayRole:
            text = self.rows[r][c]
            return MASK if c in self.masked and text else text
        mark = self.marks.get((r, c))
        if role == Qt.BackgroundRole and mark is not None:
            return QBrush(ERROR_COLOR if mark[0] == "error" else WARNING_COLOR)
        if role == Qt.ForegroundRole and mark is not None:
            return QBrush(QColor("#1a1a1a"))
        if role == Qt.ForegroundRole and c in self.ignored:
            return QBrush(QColor("#9a9a9a"))
        if role == Qt.ToolTipRole and mark is not None:
            return mark[1]
        return None

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role != Qt.DisplayRole:
            return None
        if orientation == Qt.Horizontal:
            return self.columns[section] if section < len(self.columns) else None
        return str(section + 2)  # the spreadsheet row number (the header is row 1)


def _table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setSelectionBehavior(QAbstractItemView.SelectRows)
    table.setAlternatingRowColors(True)
    return table


def _item(text: Any, editable: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem("" if text is None else str(text))
    if not editable:
        item.setFlags(item.flags() & ~Qt.ItemIsEditable)
    return item


# -- the view ------------------------------------------------------------------------------
class ImportWizardView(View):

    #: action -> widgets that do it (greyed out when the role lacks it: ui/permissions.py)
    PERMISSIONS = {"import": ("next_button", "check_button", "import_button")}
    view_id = "import"
    title = "Import"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loaded: LoadedFile | None = None
        self.report = None          # the latest dry run's ImportReport
        self.result = None          # the import's ImportReport
        self._checked_mapping = None  # the mapping the dry run checked (as JSON-able dict)
        self._auto_check = False
        self.last_message = ""

        self.step_labels = [QLabel(f"{i + 1}  {name}") for i, name in enumerate(STEPS)]
        steps = QHBoxLayout()
        for i, label in enumerate(self.step_labels):
            if i:
                steps.addWidget(QLabel("\u203a"))
            steps.addWidget(label)
        steps.addStretch(1)
        self.pages = QStackedWidget()
        for build in (self._file_page, self._mapping_page, self._check_page, self._import_page,
                      self._summary_page):
            self.pages.addWidget(build())
        self.back_button = QPushButton("< Back")
        self.back_button.clicked.connect(self.back)
        self.next_button = QPushButton("Next >")
        self.next_button.setDefault(True)
        self.next_button.clicked.connect(self.next)
        self.busy_label = QLabel("")
        nav = QHBoxLayout()
        nav.addWidget(self.busy_label, 1)
        nav.addWidget(self.back_button)
        nav.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.addLayout(steps)
        layout.addWidget(self.pages, 1)
        layout.addLayout(nav)
        self._show_step(0)

    # -- pages -----------------------------------------------------------------------------
    def _file_page(self) -> QWidget:
        page = QWidget()
        self.file_edit = QLineEdit()
        self.file_edit.setPlaceholderText("a .csv or .xlsx file")
        self.file_edit.textChanged.connect(self._update_buttons)
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse_file)
        self.dictionary_edit = QLineEdit()
        self.dictionary_edit.setPlaceholderText("only for a REDCap raw export: the project's data dictionary CSV")
        browse_dd = QPushButton("Browse...")
        browse_dd.clicked.connect(self._browse_dictionary)
        grid = QGridLayout()
        grid.addWidget(QLabel("Spreadsheet:"), 0, 0)
        grid.addWidget(self.file_edit, 0, 1)
        grid.addWidget(browse, 0, 2)
        grid.addWidget(QLabel("REDCap data dictionary:"), 1, 0)
        grid.addWidget(self.dictionary_edit, 1, 1)
        grid.addWidget(browse_dd, 1, 2)
        help_text = QLabel(
            "A <b>patient spreadsheet</b> has one row per patient (study_id, center, sex, age, ...); "
            "a <b>follow-up file</b> one row per visit (study_id, visit_date, vital_status, ...). "
            "A <b>REDCap raw export</b> (one row per record and event, numeric codes, repeating "
            "follow-up instances) is imported in one step with its data dictionary: patients and "
            "visits together.<br><br>Nothing is written before the dry run of step 3 is clean.")
        help_text.setWordWrap(True)
        layout = QVBoxLayout(page)
        layout.addLayout(grid)
        layout.addWidget(help_text)
        layout.addStretch(1)
        return page

    def _mapping_page(self) -> QWidget:
        page = QWidget()
        self.mapping_info = QLabel("")
        self.mapping_info.setWordWrap(True)
        self.saved_combo = QComboBox()
        self.saved_combo.setMinimumContentsLength(16)
        apply_saved = QPushButton("Use")
        apply_saved.clicked.connect(self._apply_saved)
        self.save_name = QLineEdit()
        self.save_name.setPlaceholderText("name")
        self.save_button = QPushButton("Save mapping")
        self.save_button.clicked.connect(self._save_mapping)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Saved mapping:"))
        bar.addWidget(self.saved_combo)
        bar.addWidget(apply_saved)
        bar.addSpacing(24)
        bar.addWidget(QLabel("Save this mapping as:"))
        bar.addWidget(self.save_name)
        bar.addWidget(self.save_button)
        bar.addStretch(1)
        self.mapping_table = _table(["Source column", "Codebook variable", "Value recodes (raw=code; ...)",
                                     "Values in the file (first 5 distinct)"])
        header = self.mapping_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        header.setSectionResizeMode(3, QHeaderView.Stretch)
        self.mapping_table.itemChanged.connect(lambda _item: self._mapping_changed())
        self.preview_model = PreviewModel(self)
        self.mapping_preview = self._preview_view()
        self.show_identifiers = QCheckBox("Show identifiers in the preview")
        self.show_identifiers.toggled.connect(self._update_masks)
        split = QSplitter(Qt.Vertical)
        split.addWidget(self.mapping_table)
        split.addWidget(self.mapping_preview)
        split.setSizes([300, 200])
        layout = QVBoxLayout(page)
        layout.addWidget(self.mapping_info)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addWidget(self.show_identifiers)
        return page

    def _check_page(self) -> QWidget:
        page = QWidget()
        self.check_status = QLabel("")
        self.check_status.setWordWrap(True)
        font = QFont(self.check_status.font())
        font.setBold(True)
        self.check_status.setFont(font)
        self.check_button = QPushButton("Check again")
        self.check_button.clicked.connect(self.run_dry_run)
        top = QHBoxLayout()
        top.addWidget(self.check_status, 1)
        top.addWidget(self.check_button)
        self.issue_table = _table(["Severity", "File row", "Column", "Value", "Message"])
        self.issue_table.horizontalHeader().setSectionResizeMode(4, QHeaderView.Stretch)
        self.issue_table.setWordWrap(True)
        self.issue_table.itemSelectionChanged.connect(self._show_issue_cell)
        self.check_preview = self._preview_view()
        legend = self.issue_legend = QLabel("In the file below, cells with an error are red and cells with a warning amber "
                        "(hover for the message); grey columns are not imported. Select a problem to "
                        "bring its cell into view.")
        legend.setWordWrap(True)
        split = self.check_split = QSplitter(Qt.Vertical)
        split.addWidget(self.issue_table)
        split.addWidget(self.check_preview)
        split.setSizes([160, 400])
        layout = QVBoxLayout(page)
        layout.addLayout(top)
        layout.addWidget(legend)
        layout.addWidget(split, 1)
        return page

    def _import_page(self) -> QWidget:
        page = QWidget()
        self.import_plan = QLabel("")
        self.import_plan.setWordWrap(True)
        self.ack_warnings = QCheckBox("")
        self.ack_warnings.toggled.connect(self._update_buttons)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("why (recorded in the audit trail; needed to change locked patients)")
        self.import_button = QPushButton("Import")
        self.import_button.clicked.connect(self.run_import)
        form = QFormLayout()
        form.addRow("Reason for the change:", self.reason_edit)
        layout = QVBoxLayout(page)
        layout.addWidget(self.import_plan)
        layout.addWidget(self.ack_warnings)
        layout.addLayout(form)
        row = QHBoxLayout()
        row.addWidget(self.import_button)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(1)
        return page

    def _summary_page(self) -> QWidget:
        page = QWidget()
        box = QGroupBox("What changed")
        box.setMaximumWidth(420)
        grid = QGridLayout(box)
        grid.setColumnStretch(0, 1)
        self.summary_labels: dict[str, QLabel] = {}
        for i, (key, text) in enumerate((("patients_added", "Patients added"),
                                         ("patients_updated", "Patients updated"),
                                         ("fields_updated", "Fields updated"),
                                         ("patients_unchanged", "Patients unchanged"),
                                         ("visits_added", "Follow-up visits added"),
                                         ("visits_updated", "Follow-up visits updated"))):
            value = QLabel("0")
            font = QFont(value.font())
            font.setPointSize(font.pointSize() + 6)
            font.setBold(True)
            value.setFont(font)
            value.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
            grid.addWidget(QLabel(text), i, 0)
            grid.addWidget(value, i, 1)
            self.summary_labels[key] = value
        self.summary_text = QLabel("")
        self.summary_text.setWordWrap(True)
        again = QPushButton("Import another file")
        again.clicked.connect(self.reset)
        patients = QPushButton("Show the patients")
        patients.clicked.connect(lambda: self.ctx is not None and self.ctx.request_view.emit("patients"))
        row = QHBoxLayout()
        row.addWidget(again)
        row.addWidget(patients)
        row.addStretch(1)
        layout = QVBoxLayout(page)
        layout.addWidget(box)
        layout.addWidget(self.summary_text)
        layout.addLayout(row)
        layout.addStretch(1)
        return page

    def _preview_view(self) -> QTableView:
        view = QTableView()
        view.setModel(self.preview_model)
        view.setEditTriggers(QAbstractItemView.NoEditTriggers)
        view.horizontalHeader().setDefaultSectionSize(96)
        view.verticalHeader().setDefaultSectionSize(22)
        return view

    # -- navigation ------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.pages.currentIndex()

    def _show_step(self, index: int) -> None:
        self.pages.setCurrentIndex(index)
        for i, label in enumerate(self.step_labels):
            font = QFont(label.font())
            font.setBold(i == index)
            label.setFont(font)
            label.setEnabled(i <= index)
        self._update_buttons()

    def _update_buttons(self) -> None:
        step = self.step
        working = self.busy()
        self.back_button.setEnabled(0 < step < 4 and not working)
        can_next = {0: bool(self.file_edit.text().strip()), 1: self.loaded is not None,
                    2: self.import_allowed_by_check(), 3: False, 4: False}[step]
        self.next_button.setEnabled(can_next and not working)
        self.next_button.setVisible(step < 3)
        self.import_button.setEnabled(self.import_allowed() and not working)
        self.check_button.setEnabled(self.loaded is not None and not working)
        self.busy_label.setText("Working..." if working else "")

    def back(self) -> None:
        if self.step > 0:
            self._show_step(self.step - 1)

    def next(self) -> None:
        step = self.step
        if step == 0:
            self.load()
        elif step == 1:
            self._show_step(2)
            self.run_dry_run()
        elif step == 2 and self.import_allowed_by_check():
            self._prepare_import_page()
            self._show_step(3)

    def reset(self) -> None:
        self.loaded = self.report = self.result = self._checked_mapping = None
        self.file_edit.clear()
        self.dictionary_edit.clear()
        self.reason_edit.clear()
        self.mapping_table.setRowCount(0)
        self.issue_table.setRowCount(0)
        self.preview_model.set_frame(_empty_frame())
        self._show_step(0)

    # -- step 1: the file ------------------------------------------------------------------
    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Spreadsheet to import", "",
                                              "Spreadsheets (*.csv *.tsv *.txt *.xlsx *.xlsm)")
        if path:
            self.file_edit.setText(path)

    def _browse_dictionary(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "REDCap data dictionary", "", "CSV (*.csv)")
        if path:
            self.dictionary_edit.setText(path)

    def load(self) -> None:
        """Read the chosen file in a worker, then show the mapping step."""
        if self.ctx is None:
            return
        path = self.file_edit.text().strip()
        dictionary = self.dictionary_edit.text().strip()
        self._run("load", load_file, self.ctx.registry, str(self.ctx.project.root), path, dictionary,
                  on_done=self._loaded)
        self._update_buttons()

    def _loaded(self, loaded: LoadedFile) -> None:
        self.loaded = loaded
        self.report = self.result = self._checked_mapping = None
        self.preview_model.set_frame(loaded.frame)
        self._size_preview_columns()
        self.saved_combo.clear()
        self.saved_combo.addItem("(proposed)" if loaded.plan is not None else "(by column name)", "")
        for name in loaded.saved:
            self.saved_combo.addItem(name, name)
        self._fill_mapping(loaded.plan.mapping if loaded.plan is not None else None)
        self._describe_file()
        self._show_step(1)
        if self._auto_check:
            self._auto_check = False
            self.next()

    def _size_preview_columns(self) -> None:
        """Each preview column as wide as its header (60 to 220 px); cheap for any row count."""
        metrics = self.check_preview.fontMetrics()
        for view in (self.mapping_preview, self.check_preview):
            for c, name in enumerate(self.preview_model.columns):
                view.setColumnWidth(c, min(220, max(60, metrics.horizontalAdvance(name) + 28)))

    def _describe_file(self) -> None:
        loaded = self.loaded
        name = Path(loaded.path).name
        n_rows, n_cols = loaded.frame.shape
        text = f"<b>{name}</b>: {n_rows} rows, {n_cols} columns."
        plan = loaded.plan
        if plan is not None:
            text += (f" REDCap export read with <b>{Path(loaded.dictionary).name}</b>: the record id "
                     f"<b>{plan.record_column}</b> is the study id; ")
            text += (f"rows of the form(s) <b>{', '.join(sorted(plan.visit_forms))}</b> become follow-up "
                     "visits, the other fields patient values; the follow-up summary is derived from the visits."
                     if plan.visit_forms else "no form holds a visit date, so no follow-up visits are imported.")
            if plan.proposed:
                names = ", ".join(f"<b>{p.source}</b>" for p in plan.proposed)
                text += (f"<br>Matching no codebook variable (not imported): {names}. To import them, add "
                         "them as user-defined variables (Study set-up, or the command shown in the "
                         "check step), then load the file again.")
        else:
            text += " Columns named like a codebook variable are taken as they are; map the others or ignore them."
        self.mapping_info.setText(text)

    # -- step 2: the mapping ---------------------------------------------------------------
    def _fill_mapping(self, mapping) -> None:
        """One row per source column: target (combo), recodes, first values."""
        loaded = self.loaded
        names = {n for n, _label in loaded.variables}
        table = self.mapping_table
        table.blockSignals(True)
        table.setRowCount(0)
        frame = loaded.frame
        for r, column in enumerate(frame.columns):
            table.insertRow(r)
            table.setItem(r, 0, _item(column))
            combo = QComboBox()
            combo.addItem("(ignore this column)", IGNORE)
            combo.addItem("(unmapped: keep the name)", AS_IS)
            for name, label in loaded.variables:
                combo.addItem(f"{name}  ({label})", name)
            if mapping is not None and column in mapping.ignore:
                target = IGNORE
            elif mapping is not None and column in mapping.columns:
                target = mapping.columns[column]
            else:
                target = column if column in names else AS_IS
            combo.setCurrentIndex(max(0, combo.findData(target)))
            combo.currentIndexChanged.connect(lambda _i: self._mapping_changed())
            table.setCellWidget(r, 1, combo)
            recode = mapping.values.get(target, {}) if mapping is not None else {}
            table.setItem(r, 2, _item(format_recode(recode), editable=True))
            first = list(dict.fromkeys(str(v) for v in frame[column].tolist() if str(v).strip()))[:5]
            masked = target in loaded.identifiers
            table.setItem(r, 3, _item(", ".join(MASK if masked else v for v in first)))
        table.blockSignals(False)
        self._update_masks()
        self._mapping_changed()

    def current_mapping(self):
        """The mapping the table shows, as a ColumnMapping."""
        from pathomics_desktop.registry.importer import ColumnMapping

        mapping = ColumnMapping(name=self.save_name.text().strip() or "wizard")
        for r in range(self.mapping_table.rowCount()):
            column = self.mapping_table.item(r, 0).text()
            target = self.mapping_table.cellWidget(r, 1).currentData()
            recode = parse_recode(self.mapping_table.item(r, 2).text())
            if target == IGNORE:
                mapping.ignore.append(column)
                continue
            if target == AS_IS:
                target = column
            if target != column or self.loaded.plan is not None:
                mapping.columns[column] = target
            if recode:
                mapping.values.setdefault(target, {}).update(recode)
        return mapping

    def set_target(self, column: str, target: str, recode: str | None = None) -> None:
        """Map ``column`` to ``target`` (a variable name, or IGNORE) in the table."""
        for r in range(self.mapping_table.rowCount()):
            if self.mapping_table.item(r, 0).text() == column:
                combo = self.mapping_table.cellWidget(r, 1)
                combo.setCurrentIndex(combo.findData(target))
                if recode is not None:
                    self.mapping_table.item(r, 2).setText(recode)
                return
        raise KeyError(column)

    def _mapping_changed(self) -> None:
        if self.loaded is None:
            return
        if self._checked_mapping is not None and self._mapping_key() != self._checked_mapping:
            self.report = None  # the dry run checked another mapping: check again
            self._checked_mapping = None
            self.preview_model.set_marks({})
        self._update_masks()
        self._update_buttons()

    def _mapping_key(self) -> dict:
        from dataclasses import asdict

        data = asdict(self.current_mapping())
        data.pop("name")
        return data

    def _update_masks(self) -> None:
        if self.loaded is None:
            return
        rows = range(self.mapping_table.rowCount())
        ignored = {self.mapping_table.item(r, 0).text() for r in rows if self._target_of_row(r) == IGNORE}
        masked = set() if self.show_identifiers.isChecked() else {
            self.mapping_table.item(r, 0).text() for r in rows if self._target_of_row(r) in self.loaded.identifiers}
        self.preview_model.set_masked(masked, ignored)

    def _target_of_row(self, r: int) -> str:
        target = self.mapping_table.cellWidget(r, 1).currentData()
        return self.mapping_table.item(r, 0).text() if target == AS_IS else target

    def _apply_saved(self) -> None:
        from pathomics_desktop.errors import UserError
        from pathomics_desktop.registry.importer import ColumnMapping, mapping_path

        name = self.saved_combo.currentData()
        if not name:
            self._fill_mapping(self.loaded.plan.mapping if self.loaded.plan is not None else None)
            return
        try:
            mapping = ColumnMapping.load(mapping_path(self.ctx.project.root, name))
        except UserError as exc:
            self._message("Mapping not loaded", str(exc))
            return
        self.save_name.setText(name)
        self._fill_mapping(mapping)

    def _save_mapping(self) -> None:
        from pathomics_desktop.errors import UserError
        from pathomics_desktop.registry.importer import save_mapping

        name = self.save_name.text().strip()
        try:
            path = save_mapping(self.ctx.project.root, self.current_mapping(), name)
        except UserError as exc:
            self._message("Mapping not saved", f"{exc}. Type a name for the mapping, then save again.")
            return
        if self.saved_combo.findData(name) < 0:
            self.saved_combo.addItem(name, name)
        self.ctx.status_message.emit(f"mapping saved as {path}")

    # -- step 3: the dry run ---------------------------------------------------------------
    def _import_args(self) -> tuple:
        return (self.ctx.registry, self.loaded.path, self.loaded.dictionary, self.current_mapping())

    def _import_options(self, dry_run: bool) -> dict:
        settings = self.ctx.project.settings
        return dict(dry_run=dry_run, user=self.ctx.user, reason=self.reason_edit.text().strip() or None,
                    development_center=settings["study"].get("development_center", ""),
                    synthetic=bool(settings["project"].get("synthetic")))

    def run_dry_run(self) -> None:
        """Validate and perform the import in a worker, then roll it back."""
        if self.ctx is None or self.loaded is None:
            return
        key = self._mapping_key()
        self.check_status.setText("Checking every row (dry run: nothing is written)...")
        self._run("check", run_import, *self._import_args(), **self._import_options(True),
                  on_done=lambda report: self._checked(report, key))
        self._update_buttons()

    def _checked(self, report, key: dict) -> None:
        self.report = report
        self._checked_mapping = key
        self._show_issues(report)
        errors, warnings = len(report.errors), len(report.warnings)
        if errors:
            text = (f"{_n(errors, 'error')} and {_n(warnings, 'warning')} in {report.rows} rows: nothing can "
                    "be imported. Correct the file or the mapping (Back), then check again.")
        elif warnings:
            text = f"No errors; {_n(warnings, 'warning')} to look at. {self._would(report)} Next to import."
        else:
            text = f"No errors, no warnings. {self._would(report)} Next to import."
        self.issue_table.setVisible(bool(report.issues))
        self.issue_legend.setVisible(bool(report.issues))
        self.check_status.setText(text)
        self.check_status.setStyleSheet("color: #b3261e;" if errors else "")
        self._update_buttons()

    @staticmethod
    def _would(report) -> str:
        """What the checked import would write, in words."""
        if report.kind == "followup":
            return (f"The import would add {_n(report.created, 'follow-up visit')} and update "
                    f"{_n(report.updated, 'visit')} ({_n(report.changed_fields, 'field')}).")
        added = _n(report.created, "patient")
        if report.kind == "redcap":
            added += f" and {_n(report.visits_created, 'follow-up visit')}"
        text = (f"The import would add {added}, update {_n(report.updated, 'patient')} "
                f"({_n(report.changed_fields, 'field')})")
        if report.visits_updated:
            text += f" and {_n(report.visits_updated, 'visit')}"
        return text + f", and leave {report.unchanged} unchanged."

    def shown_issues(self) -> list:
        """The dry run's issues, errors first, then by file row."""
        issues = self.report.issues if self.report is not None else []
        return sorted(issues, key=lambda i: (i.severity != "error", i.row or 0))

    def issue_rows(self) -> list[dict[str, Any]]:
        """The issues as the table shows them (identifier values masked)."""
        rows = []
        identifier_columns = self._identifier_columns()
        for issue in self.shown_issues():
            value = issue.value
            if value not in (None, "") and set((issue.column or "").split(",")) & identifier_columns:
                value = MASK
            rows.append({"severity": issue.severity, "file": issue.file, "row": issue.row,
                         "column": issue.column, "value": value, "message": issue.message})
        return rows

    def _identifier_columns(self) -> set[str]:
        """Source and target names of the columns that hold identifiers (name, MRN, birth date)."""
        if self.loaded is None:
            return set()
        mapping = self.current_mapping()
        sources = {c for c in self.preview_model.columns if mapping.columns.get(c, c) in self.loaded.identifiers}
        return sources | set(self.loaded.identifiers)

    def _show_issues(self, report) -> None:
        table = self.issue_table
        table.setRowCount(0)
        for r, row in enumerate(self.issue_rows()):
            table.insertRow(r)
            cells = [row["severity"], "" if row["row"] is None else row["row"], row["column"] or "",
                     row["value"] or "", row["message"]]
            color = ERROR_COLOR if row["severity"] == "error" else WARNING_COLOR
            for c, text in enumerate(cells):
                item = _item(text)
                if c == 0:
                    item.setBackground(QBrush(color))
                    item.setForeground(QBrush(QColor("#1a1a1a")))
                if c == 4:
                    item.setToolTip(str(text))
                table.setItem(r, c, item)
        table.resizeColumnsToContents()
        table.horizontalHeader().setSectionResizeMode(4, QHeaderView.Stretch)
        self.preview_model.set_marks(self.issue_cells(report.issues))
        cells = self.issue_cells(self.shown_issues()[:1])
        for r, c in cells:  # the first problem's cell, in view (not selected: its colour shows)
            self.check_preview.scrollTo(self.preview_model.index(r, c), QAbstractItemView.PositionAtCenter)
        shown = min(max(self.issue_table.rowCount(), 2), 10)
        self.check_split.setSizes([40 + 30 * shown, 400])

    def issue_cells(self, issues) -> dict[tuple[int, int], tuple[str, str]]:
        """Preview cells (frame row, column index) of every issue; an error wins over a warning."""
        columns = {c: i for i, c in enumerate(self.preview_model.columns)}
        reverse: dict[str, str] = {}
        for source, target in self.current_mapping().columns.items():
            reverse.setdefault(target, source)
        marks: dict[tuple[int, int], tuple[str, str]] = {}
        for issue in issues:
            if issue.row is None or issue.row < 2 or not issue.column:
                continue
            for name in issue.column.split(","):
                col = columns.get(name, columns.get(reverse.get(name, "")))
                if col is None or issue.row - 2 >= len(self.preview_model.rows):
                    continue
                key = (issue.row - 2, col)
                if key in marks and marks[key][0] == "error":
                    continue
                marks[key] = (issue.severity, issue.message)
        return marks

    def _show_issue_cell(self) -> None:
        rows = {i.row() for i in self.issue_table.selectedIndexes()}
        if len(rows) != 1 or self.report is None:
            return
        for (r, c) in self.issue_cells([self.shown_issues()[rows.pop()]]):
            self.check_preview.scrollTo(self.preview_model.index(r, c), QAbstractItemView.PositionAtCenter)
            break

    # -- step 4: import --------------------------------------------------------------------
    def import_allowed_by_check(self) -> bool:
        """A dry run of the current file and mapping found no error."""
        return (self.report is not None and not self.report.errors and self.loaded is not None
                and self._checked_mapping == self._mapping_key())

    def import_allowed(self) -> bool:
        """The check is clean and its warnings (if any) are acknowledged."""
        return self.import_allowed_by_check() and self.result is None and (
            not self.report.warnings or self.ack_warnings.isChecked())

    def _prepare_import_page(self) -> None:
        report = self.report
        self.import_plan.setText(f"<b>{Path(self.loaded.path).name}</b>: {self._would(report)}<br>"
                                 "All rows are written in one transaction, audited under your name.")
        n = len(report.warnings)
        self.ack_warnings.setVisible(bool(n))
        self.ack_warnings.setChecked(False)
        self.ack_warnings.setText(f"I have looked at the {_n(n, 'warning')} of the check and import the values "
                                  "as they are.")
        self._update_buttons()

    def run_import(self) -> None:
        if not self.import_allowed() or self.ctx is None:
            return
        self._run("import", run_import, *self._import_args(), **self._import_options(False),
                  on_done=self._imported)
        self._update_buttons()

    def _imported(self, report) -> None:
        if report.errors:  # the registry changed since the dry run: show what is wrong now
            self._checked(report, self._mapping_key())
            self._show_step(2)
            self._message("Nothing was imported", f"{len(report.errors)} error(s) appeared while writing; "
                          "nothing was written. Correct them and check again.")
            return
        self.result = report
        counts = self.summary_counts()
        for key, label in self.summary_labels.items():
            label.setText(str(counts[key]))
        self.summary_text.setText(f"Written in one transaction and audited under the user "
                                  f"{self.ctx.user}.\n{report.summary()}")
        self._show_step(4)
        self.ctx.data_changed.emit("patients")

    def summary_counts(self) -> dict[str, int]:
        """What changed (after the import) or would change (after a clean dry run)."""
        report = self.result or self.report
        if report is None or report.errors:
            return {}  # an import with errors writes nothing
        followup = report.kind == "followup"
        return {"patients_added": 0 if followup else report.created,
                "patients_updated": 0 if followup else report.updated,
                "patients_unchanged": 0 if followup else report.unchanged,
                "fields_updated": report.changed_fields,
                "visits_added": report.created if followup else report.visits_created,
                "visits_updated": report.updated if followup else report.visits_updated}

    # -- shell -----------------------------------------------------------------------------
    def _run(self, name: str, fn, *args, on_done, **kwargs) -> None:
        """``fn`` in a worker (:meth:`View.run_task`: only the latest task ``name`` delivers, on the
        GUI thread; ``ctx.busy()`` stays true until its callback has run)."""

        def settle(callback):
            def deliver(*result):
                callback(*result)
                self._update_buttons()
            return deliver

        self.run_task(name, fn, *args, on_done=settle(on_done), on_error=settle(self._failed), **kwargs)
        self._update_buttons()

    def _failed(self, message: str, _trace: str) -> None:
        self._update_buttons()
        self._message("Import", f"{message}\n\nChoose another file, or correct this one and try again.")

    def _message(self, title: str, text: str) -> None:
        show_message(self, title, text)

    def refresh(self) -> None:
        self._update_buttons()

    def prepare_screenshot(self) -> None:
        """The SYNTHETIC REDCap example with one deliberate error, checked by a dry run."""
        self.reset()
        self.file_edit.setText(str(EXAMPLE_DIR / "SYNTHETIC_pdac_export_with_errors.csv"))
        self.dictionary_edit.setText(str(EXAMPLE_DIR / "SYNTHETIC_pdac_DataDictionary.csv"))
        self._auto_check = True
        self.load()

    def snapshot(self) -> dict[str, Any]:
        mapping = self.current_mapping() if self.loaded is not None else None
        report = self.result or self.report
        return {
            "view": self.view_id,
            "step": self.step + 1,
            "step_name": STEPS[self.step],
            "file": Path(self.loaded.path).name if self.loaded else None,
            "dictionary": Path(self.loaded.dictionary).name if self.loaded and self.loaded.dictionary else None,
            "kind": report.kind if report is not None else None,
            "mapping": None if mapping is None else {"columns": mapping.columns, "ignore": mapping.ignore,
                                                     "values": mapping.values},
            "issues": self.issue_rows(),
            "highlighted_cells": {"error": sum(1 for s, _m in self.preview_model.marks.values() if s == "error"),
                                  "warning": sum(1 for s, _m in self.preview_model.marks.values()
                                                 if s == "warning")},
            "errors": len(report.errors) if report is not None else None,
            "warnings": len(report.warnings) if report is not None else None,
            "summary": self.summary_counts(),
            "imported": self.result is not None,
            "import_enabled": self.import_button.isEnabled(),
        }


def _n(count: int, noun: str) -> str:
    """``3 patients``, ``1 patient``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _empty_frame():
    import pandas as pd

    return pd.DataFrame()
