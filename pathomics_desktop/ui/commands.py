"""Every edit of curated data in the GUI is a command on the project's QUndoStack.

A command writes through the one audited registry service
(:mod:`pathomics_desktop.registry.service`): ``redo`` writes the new value, ``undo`` writes
the old one back, each in its own small transaction with its own audit rows. The audit
reason of an undo is ``"undo: <original reason>"`` (``"undo"`` when there was none), of a
second redo ``"redo: <original reason>"``. After each write the command emits
``ctx.data_changed`` so that the views reload.

Use :func:`push` rather than ``undo_stack.push``: it performs the first write *before* the
command enters the stack, so a refused change (a hard limit, a locked record without a
reason, a value the database rejects) raises :class:`~pathomics_desktop.errors.UserError` to
the caller and leaves neither a write nor an undo entry behind.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from PySide6.QtGui import QUndoCommand

from pathomics_desktop.errors import UserError
from pathomics_desktop.registry import service


def push(ctx, command: "RegistryCommand") -> "RegistryCommand":
    """Apply ``command`` once (raising :class:`UserError` if refused), then put it on the
    undo stack without applying it again."""
    command.apply()
    command._applied = True
    ctx.undo_stack.push(command)  # calls redo(), which skips the write already done
    return command


def undo_reason(reason: str | None) -> str:
    return f"undo: {reason}" if reason else "undo"


def redo_reason(reason: str | None) -> str:
    return f"redo: {reason}" if reason else "redo"


class RegistryCommand(QUndoCommand):
    """A change of one patient's curated data, undone and redone through the service."""

    what = "patients"  # the data_changed topic

    def __init__(self, ctx, study_id: str, text: str, *, reason: str | None = None):
        super().__init__(text)
        self.ctx, self.study_id, self.reason = ctx, study_id, reason
        self._applied = False
        self._times = 0

    # subclasses: apply(reason) writes the change, revert(reason) writes it back
    def apply(self, reason: str | None = None) -> None:
        raise NotImplementedError

    def revert(self, reason: str | None) -> None:
        raise NotImplementedError

    def redo(self) -> None:
        if self._applied:  # the first write happened in push()
            self._applied = False
            self._times += 1
            self._changed()
            return
        self._guarded("Redo failed", lambda: self.apply(redo_reason(self.reason)))

    def undo(self) -> None:
        self._guarded("Undo failed", lambda: self.revert(undo_reason(self.reason)))

    def _guarded(self, title: str, write: Callable[[], None]) -> None:
        """Write; if the registry refuses (someone else changed or locked the record), say
        so and drop this command from the stack instead of leaving it out of step."""
        try:
            write()
        except UserError as exc:
            self.setObsolete(True)
            self.ctx.task_failed.emit(title, f"{self.text()}: {exc}", "")
            return
        self._changed()

    def _changed(self) -> None:
        self.ctx.data_changed.emit(self.what)
        self.ctx.status_message.emit(self.text())


class EditValuesCommand(RegistryCommand):
    """Change one or more codebook variables of a patient (one transaction each way).

    ``changes`` maps a variable to ``(old, new)`` canonical values; ``notes`` holds the
    soft-limit note of a field (its audit row's reason, joined with ``reason``)."""

    def __init__(self, ctx, study_id: str, changes: dict[str, tuple[Any, Any]], *,
                 reason: str | None = None, notes: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                 expected_version: int | None = None):
        names = [(labels or {}).get(v, v) for v in changes]
        text = f"{study_id}: {names[0]}" if len(names) == 1 else f"{study_id}: {len(names)} fields"
        super().__init__(ctx, study_id, f"Edit {text}", reason=reason)
        self.changes = dict(changes)
        self.notes = dict(notes or {})
        #: the record version the form was loaded at: the first save is refused with an
        #: EditConflict if anyone changed the record since (optimistic locking)
        self.expected_version = expected_version

    def apply(self, reason: str | None = None) -> None:
        first = not self._times and not self._applied
        written = service.edit_values(
            self.ctx.registry, self.study_id, {v: new for v, (_old, new) in self.changes.items()},
            user=self.ctx.user, reason=reason if reason is not None else self.reason,
            notes=self.notes, require_notes=True,
            expected_version=self.expected_version if first else None,
            base_values={v: old for v, (old, _new) in self.changes.items()},
            # redo: each field must still hold the value undo restored
            expected_values=None if first else {v: old for v, (old, _new) in self.changes.items()})
        self.changes = dict(written)  # the stored old and new values (canonical), for undo

    def revert(self, reason: str | None) -> None:
        # undo: each field must still hold this command's value, else someone changed it since
        service.edit_values(self.ctx.registry, self.study_id,
                            {v: old for v, (old, _new) in self.changes.items()},
                            user=self.ctx.user, reason=reason, notes=self.notes,
                            expected_values={v: new for v, (_old, new) in self.changes.items()})


class EditValueCommand(EditValuesCommand):
    """Change one variable of a patient."""

    def __init__(self, ctx, study_id: str, variable: str, old: Any, new: Any, *,
                 reason: str | None = None, note: str | None = None, label: str | None = None):
        super().__init__(ctx, study_id, {variable: (old, new)}, reason=reason,
                         notes={variable: note} if note else None,
                         labels={variable: label} if label else None)


def _visit_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {k: values.get(k) for k in service.VISIT_FIELDS}


def _day(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date) else str(value)


class AddVisitCommand(RegistryCommand):
    """Add a follow-up visit; undo deletes it again."""

    def __init__(self, ctx, study_id: str, fields: dict[str, Any], *, reason: str | None = None,
                 notes: dict[str, str] | None = None):
        super().__init__(ctx, study_id, f"Add visit of {study_id} on {_day(fields.get('visit_date'))}",
                         reason=reason)
        self.fields, self.notes = dict(fields), dict(notes or {})
        self.stored: dict[str, Any] | None = None

    def apply(self, reason: str | None = None) -> None:
        self.stored = service.add_visit(self.ctx.registry, self.study_id, self.fields, user=self.ctx.user,
                                        reason=reason if reason is not None else self.reason,
                                        notes=self.notes, require_notes=True)

    def revert(self, reason: str | None) -> None:
        service.delete_visit(self.ctx.registry, self.study_id, self.stored["visit_date"], user=self.ctx.user,
                             reason=reason, check=False)


class EditVisitCommand(RegistryCommand):
    """Change a follow-up visit (its date included); undo writes the old fields back."""

    def __init__(self, ctx, study_id: str, visit_date: Any, fields: dict[str, Any], *,
                 reason: str | None = None, notes: dict[str, str] | None = None):
        super().__init__(ctx, study_id, f"Edit visit of {study_id} on {_day(visit_date)}", reason=reason)
        self.visit_date, self.fields, self.notes = visit_date, dict(fields), dict(notes or {})
        self.old: dict[str, Any] | None = None
        self.new: dict[str, Any] | None = None

    def apply(self, reason: str | None = None) -> None:
        self.old, self.new = service.edit_visit(
            self.ctx.registry, self.study_id, self.visit_date, self.fields, user=self.ctx.user,
            reason=reason if reason is not None else self.reason, notes=self.notes, require_notes=True)

    def revert(self, reason: str | None) -> None:
        service.edit_visit(self.ctx.registry, self.study_id, self.new["visit_date"], _visit_fields(self.old),
                           user=self.ctx.user, reason=reason, check=False)


class DeleteVisitCommand(RegistryCommand):
    """Delete a follow-up visit; undo adds it back with the same fields."""

    def __init__(self, ctx, study_id: str, visit_date: Any, *, reason: str | None = None):
        super().__init__(ctx, study_id, f"Delete visit of {study_id} on {_day(visit_date)}", reason=reason)
        self.visit_date = visit_date
        self.old: dict[str, Any] | None = None

    def apply(self, reason: str | None = None) -> None:
        self.old = service.delete_visit(self.ctx.registry, self.study_id, self.visit_date, user=self.ctx.user,
                                        reason=reason if reason is not None else self.reason)

    def revert(self, reason: str | None) -> None:
        service.add_visit(self.ctx.registry, self.study_id, _visit_fields(self.old), user=self.ctx.user,
                          reason=reason, check=False)


class SetLockCommand(RegistryCommand):
    """Lock a patient record (complete) or unlock it (unlocking needs a reason)."""

    def __init__(self, ctx, study_id: str, locked: bool, *, reason: str | None = None):
        super().__init__(ctx, study_id, f"{'Lock' if locked else 'Unlock'} {study_id}", reason=reason)
        self.locked = locked

    def apply(self, reason: str | None = None) -> None:
        service.set_lock(self.ctx.registry, self.study_id, self.locked, user=self.ctx.user,
                         reason=reason if reason is not None else self.reason)

    def revert(self, reason: str | None) -> None:
        service.set_lock(self.ctx.registry, self.study_id, not self.locked, user=self.ctx.user, reason=reason)
