"""Greying out what the login's role cannot do (the server refuses it anyway: migration 0005).

Each view names, per action of :mod:`pathomics_desktop.registry.permissions`, the widgets
that perform it (``View.PERMISSIONS``: action -> attribute names). :func:`restrict` keeps such
a widget disabled while the role lacks the action, also when the view's own state logic
enables it later (the widget's ``setEnabled`` is wrapped), and says why in its tooltip.
"""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

_ALLOWED = "_pathomics_allowed"


def restrict(widget: QWidget, allowed: bool, reason: str) -> None:
    """Let ``widget`` be enabled only when ``allowed``; ``reason`` becomes its tooltip while not."""
    if not hasattr(widget, _ALLOWED):
        native = type(widget).setEnabled
        widget.__dict__["_pathomics_wanted"] = widget.isEnabled()
        widget.__dict__["_pathomics_tooltip"] = widget.toolTip()

        def set_enabled(on: bool, _widget=widget, _native=native) -> None:
            _widget.__dict__["_pathomics_wanted"] = bool(on)
            _native(_widget, bool(on) and _widget.__dict__[_ALLOWED])

        widget.setEnabled = set_enabled
    widget.__dict__[_ALLOWED] = bool(allowed)
    type(widget).setEnabled(widget, widget.__dict__["_pathomics_wanted"] and allowed)
    widget.setToolTip(widget.__dict__["_pathomics_tooltip"] if allowed else reason)


def apply_permissions(view, role: str) -> None:
    """Restrict the widgets of ``view.PERMISSIONS`` for ``role``."""
    from pathomics_desktop.registry.permissions import can

    for action, names in getattr(view, "PERMISSIONS", {}).items():
        allowed = can(role, action)
        reason = f"Your role ({role or 'none'}) cannot {action.replace('_', ' ')} in this registry"
        for name in names:
            widget = getattr(view, name, None)
            if widget is not None:
                restrict(widget, allowed, reason)
