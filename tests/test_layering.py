"""The layering the guide asks for: only pathomics_desktop/ui imports Qt (PySide6, pyqtgraph),
and the CLI starts without loading Qt, torch or matplotlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pathomics_desktop"
QT = ("PySide6", "pyqtgraph", "shiboken6")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_only_ui_imports_qt():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "ui" in path.relative_to(PACKAGE).parts[:1]:
            continue
        used = imported_modules(path) & set(QT)
        if used:
            offenders.append(f"{path.relative_to(PACKAGE)}: {', '.join(sorted(used))}")
    assert offenders == []
    # the scan sees a Qt import where there is one
    assert "PySide6" in imported_modules(PACKAGE / "ui" / "context.py")


def test_cli_starts_without_qt_torch_or_matplotlib():
    code = ("import sys, pathomics_desktop.cli as c; c.build_parser(); "
            "print(sorted(m for m in ('PySide6', 'pyqtgraph', 'torch', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
