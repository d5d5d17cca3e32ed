"""The patients behind a number: clicking a KM group, a censor mark, a forest row or a Table 1
count lists them here. Double-click (or Open patient) opens the patient form; Open slide opens
the patient's first slide in the viewer, with its heatmap."""

from __future__ import annotations

from typing import Any, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout

from pathomics_desktop.ui.models.base import DictTableModel
from pathomics_desktop.ui.views.common import row_table


class PatientListDialog(QDialog):
    """A non-modal list of patients (``rows``: dicts with at least ``study_id``)."""

    def __init__(self, ctx, title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                 parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle(title)
        self.setAttribute(Qt.WA_DeleteOnClose)
        self.rows = [dict(r) for r in rows]
        self.columns = list(columns or (list(self.rows[0]) if self.rows else ["study_id"]))
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"<b>{title}</b>: {len(self.rows)} patient(s). Double-click opens the patient."))
        self.model = DictTableModel(self.columns, [c.replace("_", " ") for c in self.columns])
        self.model.set_rows(self.rows)
        self.table = row_table(self.model, sortable=False)
        self.table.doubleClicked.connect(lambda index: self.open_patient(index.row()))
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.open_button = QPushButton("Open patient")
        self.slide_button = QPushButton("Open slide")
        buttons.addButton(self.open_button, QDialogButtonBox.ActionRole)
        buttons.addButton(self.slide_button, QDialogButtonBox.ActionRole)
        self.open_button.clicked.connect(lambda: self.open_patient(self._selected()))
        self.slide_button.clicked.connect(lambda: self.open_slide(self._selected()))
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)
        self.resize(520, 420)

    def study_ids(self) -> list[str]:
        return [str(r["study_id"]) for r in self.rows]

    def _selected(self) -> int:
        index = self.table.currentIndex()
        return index.row() if index.isValid() else 0

    def open_patient(self, row: int) -> None:
        if 0 <= row < len(self.rows):
            self.ctx.request_patient.emit(str(self.rows[row]["study_id"]))

    def open_slide(self, row: int) -> None:
        if not 0 <= row < len(self.rows):
            return
        from pathomics_desktop.registry.slide_list import first_slide_of_patient

        study_id = str(self.rows[row]["study_id"])

        def opened(slide_id):
            if slide_id is None:
                self.ctx.status_message.emit(f"{study_id} has no slide in the catalogue")
            else:
                self.ctx.request_slide.emit(int(slide_id))

        self.ctx.run(first_slide_of_patient, self.ctx.registry, study_id, on_done=opened)
