"""Helpers of the GUI tests."""

from __future__ import annotations


def shown_view(qtbot, view, ctx, size: tuple[int, int]):
    """``view`` registered with qtbot, resized, shown and given ``ctx`` (as the main window does)."""
    qtbot.addWidget(view)
    view.resize(*size)
    view.show()
    view.set_context(ctx)
    return view
