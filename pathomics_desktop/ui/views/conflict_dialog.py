"""The edit-conflict dialog: another user saved the record after this user opened it.

It shows, per field of this user's save, the value when the form was opened, this user's
value and the value now stored (the other user's), with the fields both changed marked.
The user keeps theirs, takes the other's, or picks per field; nothing is written until the
form saves again against the new version."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

MINE, THEIRS = "mine", "theirs"


def _shown(value: Any) -> str:
    return "(empty)" if value is None else str(value)


class ConflictDialog(QDialog):
    """``choices()`` -> {variable: "mine" | "theirs"} once accepted."""

    def __init__(self, conflict, parent: QWidget | None = None):
        super().__init__(parent)
        self.conflict = conflict
        self.setWindowTitle(f"Patient {conflict.study_id} was changed by someone else")
        layout = QVBoxLayout(self)
        who = conflict.changed_by or "another user"
        when = f" at {conflict.changed_at}" if conflict.changed_at else ""
        intro = QLabel(f"<b>{who}</b> saved patient <b>{conflict.study_id}</b>{when}, after you opened it. "
                       "Nothing of yours was saved yet. Choose, for each field, which value to keep; "
                       "fields you both changed are marked.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        grid = QGridLayout()
        for col, title in enumerate(("Field", "When you opened it", "Yours", "Theirs (saved)")):
            grid.addWidget(QLabel(f"<b>{title}</b>"), 0, col)
        self.groups: dict[str, QButtonGroup] = {}
        self.buttons: dict[str, tuple[QRadioButton, QRadioButton]] = {}
        for row, field in enumerate(conflict.fields, start=1):
            mark = " ⚠" if field["conflict"] else ""
            name = QLabel(field["label"] + mark)
            if field["conflict"]:
                name.setStyleSheet("color: #b00020; font-weight: bold;")
            grid.addWidget(name, row, 0)
            grid.addWidget(QLabel(_shown(field["base"])), row, 1)
            mine, theirs = QRadioButton(_shown(field["mine"])), QRadioButton(_shown(field["theirs"]))
            group = QButtonGroup(self)
            group.addButton(mine)
            group.addButton(theirs)
            # default: theirs where they changed the field, yours elsewhere (a field-by-field merge)
            (theirs if field["conflict"] else mine).setChecked(True)
            grid.addWidget(mine, row, 2)
            grid.addWidget(theirs, row, 3)
            self.groups[field["variable"]] = group
            self.buttons[field["variable"]] = (mine, theirs)
        layout.addLayout(grid)
        box = QDialogButtonBox()
        self.keep_mine = QPushButton("Keep all mine")
        self.take_theirs = QPushButton("Take all theirs")
        self.merge = QPushButton("Save this merge")
        self.merge.setDefault(True)
        for button in (self.keep_mine, self.take_theirs, self.merge):
            box.addButton(button, QDialogButtonBox.AcceptRole)
        box.addButton(QDialogButtonBox.Cancel)
        self.keep_mine.clicked.connect(lambda: self._choose_all(MINE))
        self.take_theirs.clicked.connect(lambda: self._choose_all(THEIRS))
        self.merge.clicked.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self.setAttribute(Qt.WA_DeleteOnClose, False)

    def _choose_all(self, which: str) -> None:
        for mine, theirs in self.buttons.values():
            (mine if which == MINE else theirs).setChecked(True)
        self.accept()

    def choices(self) -> dict[str, str]:
        return {var: (MINE if mine.isChecked() else THEIRS) for var, (mine, _theirs) in self.buttons.items()}
