"""Exceptions shared by every capability (no third-party imports here)."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input (a file, a row, a field, a slide).

    The message must name what is wrong and where; the CLI prints it as one line and exits
    with status 2, the GUI shows it in a message box. Never raised for programming errors.
    """


class ValidationFailed(UserError):
    """A validated import or edit found errors; ``issues`` lists every one of them."""

    def __init__(self, message: str, issues: list | None = None):
        super().__init__(message)
        self.issues = list(issues or [])
