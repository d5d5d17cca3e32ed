"""Cutpoint explorer: the maxstat statistic across cut values with the Lau94 p, the X-tile map,
the bootstrap stability of the cut, and "Lock this cut" for a signature.

Everything is computed by :func:`pathomics_desktop.figures.cutpoint.build_cutpoint` in a worker
thread; the view draws the description with pyqtgraph. A click on the statistic curve chooses
that cut (blank "Cut" = the maxstat optimum). Locking is a command on the undo stack
(:class:`LockCutCommand`) that writes through
:func:`pathomics_desktop.signature.cut_lock.lock_cut`; its undo restores the previous version's
cut through :func:`~pathomics_desktop.signature.cut_lock.restore_cut`.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QDoubleValidator, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.cutpoint import DATA_SETS, ENDPOINTS, CutpointFigure, build_cutpoint, score_column
from pathomics_desktop.figures.signature import list_signatures
from pathomics_desktop.figures.style import PALETTE, format_estimate_ci, format_p
from pathomics_desktop.figures.style import format_p as style_p
from pathomics_desktop.ui.commands import RegistryCommand, push
from pathomics_desktop.ui.views.analysis.base import AnalysisView, labelled_row
from pathomics_desktop.ui.views.analysis.plotting import group_pen, plot_widget, qcolor
from pathomics_desktop.ui.views.common import show_message

DEFAULT_BOOTSTRAP = 200
DATA_SET_LABELS = {"training": "Training set", "internal": "Internal validation", "external": "External validation",
                   "all": "All patients in the filter"}


def plot_title(plot, text: str) -> None:
    """A plot title in the theme's text colour."""
    from pathomics_desktop.ui.theme import is_dark

    plot.getPlotItem().setTitle(text, color="#dddddd" if is_dark() else "#222222", size="10pt")


class LockCutCommand(RegistryCommand):
    """Lock ``cut`` as signature ``name``'s risk cut (a new version, audited, registry groups
    regrouped); undo restores the cut of the version before the lock."""

    def __init__(self, ctx, name: str, cut: float, *, reason: str):
        super().__init__(ctx, "", f"Lock cut {cut:.4g} of signature {name}", reason=reason)
        self.name, self.cut = name, float(cut)
        self.previous_version: int | None = None
        self.results: list = []

    def apply(self, reason: str | None = None) -> None:
        from pathomics_desktop.signature.cut_lock import lock_cut

        result = lock_cut(self.ctx.project, self.name, self.cut, user=self.ctx.user,
                          reason=reason if reason is not None else self.reason, registry=self.ctx.registry)
        if self.previous_version is None:
            self.previous_version = result.previous_version
        self.results.append(result)

    def revert(self, reason: str | None) -> None:
        from pathomics_desktop.signature.cut_lock import restore_cut

        self.results.append(restore_cut(self.ctx.project, self.name, self.previous_version, user=self.ctx.user,
                                        reason=reason, registry=self.ctx.registry))


class LockCutDialog(QDialog):
    """Asks for the reason of a lock (required: it goes into the audit trail)."""

    def __init__(self, parent, signature: dict, cut: float):
        super().__init__(parent)
        self.setWindowTitle("Lock this cut")
        layout = QVBoxLayout(self)
        text = QLabel(f"Store the cut <b>{cut:.4g}</b> with signature <b>{signature['name']}</b> "
                      f"(now v{signature['version']}, cut {signature['cut']:.4g}, {signature['cut_method']}).<br>"
                      "This makes a new version (the old one is kept), regroups the registry's risk groups "
                      "(high risk: score &gt; cut) and is audited. Undo restores the previous cut.")
        text.setWordWrap(True)
        layout.addWidget(text)
        self.reason_edit = QLineEdit()
        self.reason_edit.setPlaceholderText("Reason for the change (required)")
        layout.addWidget(self.reason_edit)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.reason_edit.textChanged.connect(self._update)
        self._update()

    def _update(self, *_args) -> None:
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(bool(self.reason_edit.text().strip()))

    def reason(self) -> str:
        return self.reason_edit.text().strip()


class CutpointView(AnalysisView):
    """The cutpoint explorer (see the module docstring)."""

    #: action -> widgets that do it (greyed out when the role lacks it: ui/permissions.py)
    PERMISSIONS = {"edit_patients": ("lock_button",)}

    view_id = "cutpoint"
    title = "Cutpoint"
    compute = staticmethod(build_cutpoint)

    def __init__(self, parent=None):
        self._options_cache = None
        self._bootstrap_reps = 0
        self.lock_dialog: LockCutDialog | None = None
        self.last_command: LockCutCommand | None = None
        super().__init__(parent)

    # -- controls ---------------------------------------------------------------------
    def build_controls(self, form) -> None:
        self.endpoint_combo = QComboBox()
        for key, (_t, _e, label) in ENDPOINTS.items():
            self.endpoint_combo.addItem(label, key)
        self.marker_combo = QComboBox()
        self.marker_combo.addItem("Pathomics score of the endpoint", None)
        self.marker_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.data_set_combo = QComboBox()
        for key in DATA_SETS:
            self.data_set_combo.addItem(DATA_SET_LABELS[key], key)
        self.data_set_combo.setToolTip("Whose marker values choose the cut (within the cohort filter); "
                                       "the study chose its cuts on the training set")
        self.minprop_spin = QDoubleSpinBox()
        self.minprop_spin.setRange(0.05, 0.45)
        self.minprop_spin.setSingleStep(0.05)
        self.minprop_spin.setValue(0.10)
        self.minprop_spin.setToolTip("Smallest group a cut may leave, as a share of the patients")
        self.cut_edit = QLineEdit()
        self.cut_edit.setValidator(QDoubleValidator())
        self.cut_edit.setPlaceholderText("maxstat optimum")
        self.cut_edit.setToolTip("The cut to examine and lock (low: marker <= cut); click the curve to choose one")
        self.cut_edit.setMaximumWidth(120)
        self.signature_combo = QComboBox()
        self.signature_combo.setToolTip("The signature whose frozen cut is marked and to which a cut is locked")
        first = labelled_row((("", self.endpoint_combo), ("Marker", self.marker_combo),
                              ("Patients", self.data_set_combo)))
        self.bootstrap_spin = QSpinBox()
        self.bootstrap_spin.setRange(10, 5000)
        self.bootstrap_spin.setValue(DEFAULT_BOOTSTRAP)
        self.bootstrap_spin.setSuffix(" resamples")
        self.bootstrap_button = QPushButton("Bootstrap stability")
        self.bootstrap_button.setToolTip("The maxstat cut over bootstrap resamples of the patients: its 95% "
                                         "interval and the share within +/- 0.25 SD of the chosen cut")
        self.bootstrap_button.clicked.connect(self.run_bootstrap)
        self.lock_button = QPushButton("Lock this cut...")
        self.lock_button.setToolTip("Store the chosen cut with the signature (a new version, audited; undoable)")
        self.lock_button.clicked.connect(self.open_lock_dialog)
        second = labelled_row((("Smallest group", self.minprop_spin), ("Cut", self.cut_edit),
                              ("", self.bootstrap_spin), ("", self.bootstrap_button),
                              ("Signature", self.signature_combo), ("", self.lock_button)))
        form.addRow("Endpoint", first)
        form.addRow("Cut", second)
        self.endpoint_combo.currentIndexChanged.connect(self._choice_changed)
        self.marker_combo.currentIndexChanged.connect(self._choice_changed)
        self.data_set_combo.currentIndexChanged.connect(self._choice_changed)
        self.minprop_spin.valueChanged.connect(self._choice_changed)
        self.cut_edit.editingFinished.connect(self.recompute)
        self.signature_combo.currentIndexChanged.connect(self.recompute)

    def _choice_changed(self, *_args) -> None:
        """A new marker, endpoint or patient set: back to the optimum, no bootstrap."""
        self._bootstrap_reps = 0
        self.cut_edit.clear()
        self._fill_signatures()
        self.recompute()

    def endpoint(self) -> str:
        return self.endpoint_combo.currentData() or "os"

    def marker(self) -> str:
        return self.marker_combo.currentData() or score_column(self.endpoint())

    def chosen_signature(self) -> dict | None:
        return self.signature_combo.currentData()

    def params(self) -> dict[str, Any]:
        text = self.cut_edit.text().strip().replace(",", ".")
        signature = self.chosen_signature()
        on_score = self.marker() == score_column(self.endpoint())
        return {"endpoint": self.endpoint(), "marker": self.marker(), "data_set": self.data_set_combo.currentData(),
                "minprop": round(self.minprop_spin.value(), 4), "cut": float(text) if text else None,
                "bootstrap": self._bootstrap_reps,
                "reference_cut": signature["cut"] if signature is not None and on_score else None}

    def run_bootstrap(self) -> None:
        self._bootstrap_reps = self.bootstrap_spin.value()
        self.recompute(force=True)

    def set_context(self, ctx) -> None:
        from pathomics_desktop.ui.views.analysis.filter_panel import OptionsCache

        if self._options_cache is not None:
            self._options_cache.ready.disconnect(self._options_ready)
            self._options_cache = None
        if self.ctx is not None:
            self.ctx.data_changed.disconnect(self._fill_signatures)
        super().set_context(ctx)
        if ctx is not None:
            ctx.data_changed.connect(self._fill_signatures)
            self._fill_signatures()
            self.recompute()  # with the signature's frozen cut now known
            self._options_cache = OptionsCache.of(ctx)
            self._options_cache.ready.connect(self._options_ready)
            self._options_cache.request()

    def _options_ready(self, options) -> None:
        current = self.marker_combo.currentData()
        self.marker_combo.blockSignals(True)
        self.marker_combo.clear()
        self.marker_combo.addItem("Pathomics score of the endpoint", None)
        skip = {"os_months", "rfs_months", *(score_column(ep) for ep in ENDPOINTS)}
        for option in options.variables:
            if option.kind == "number" and option.column not in skip:
                unit = f" ({option.unit})" if option.unit else ""
                self.marker_combo.addItem(f"{option.label}{unit}", option.column)
        index = self.marker_combo.findData(current)
        self.marker_combo.setCurrentIndex(max(index, 0))
        self.marker_combo.blockSignals(False)
        self._fill_signatures()

    def _fill_signatures(self, *_args) -> None:
        """The signatures fitted on the current endpoint (their frozen cut is marked)."""
        if self.ctx is None:
            return
        current = self.chosen_signature()
        chosen = [s for s in list_signatures(self.ctx.project.root) if s["endpoint"] == self.endpoint()]
        self.signature_combo.blockSignals(True)
        self.signature_combo.clear()
        for sig in chosen:
            self.signature_combo.addItem(f"{sig['name']} (v{sig['version']})", sig)
        if not chosen:
            self.signature_combo.addItem("none fitted", None)
        names = [s["name"] for s in chosen]
        if current is not None and current["name"] in names:
            self.signature_combo.setCurrentIndex(names.index(current["name"]))
        self.signature_combo.blockSignals(False)
        self._update_lock_button()

    def _update_lock_button(self) -> None:
        ok = self.chosen_signature() is not None and self.marker() == score_column(self.endpoint())
        self.lock_button.setEnabled(ok and self.computed is not None)
        self.lock_button.setToolTip(
            "Store the chosen cut with the signature (a new version, audited; undoable)" if ok else
            "A cut can be locked for a signature's score: choose the pathomics score and a fitted signature")

    def prepare_screenshot(self) -> None:
        """OS, the pathomics score of the training set, the maxstat optimum, with a bootstrap."""
        for combo, value in ((self.endpoint_combo, "os"), (self.marker_combo, None), (self.data_set_combo, "training")):
            combo.blockSignals(True)
            combo.setCurrentIndex(max(combo.findData(value), 0))
            combo.blockSignals(False)
        self.cut_edit.clear()
        self._fill_signatures()
        self._bootstrap_reps = DEFAULT_BOOTSTRAP
        super().prepare_screenshot()

    # -- content ----------------------------------------------------------------------
    def build_content(self) -> QWidget:
        widget = QWidget()
        widget.setAutoFillBackground(True)
        grid = QGridLayout(widget)
        grid.setContentsMargins(0, 0, 0, 0)
        self.stat_plot = plot_widget(x_label="Cut (low: marker \u2264 cut)", y_label="Standardized log-rank statistic")
        self.stat_plot.scene().sigMouseClicked.connect(self._stat_clicked)
        self.boot_plot = plot_widget(x_label="Maxstat cut of a bootstrap resample", y_label="Resamples")
        self.boot_plot.setMaximumHeight(220)
        self.xtile_plot = plot_widget(x_label="Low cut c1 (low: \u2264 c1)", y_label="High cut c2 (high: > c2)")
        self.xtile_image = pg.ImageItem()
        self.xtile_plot.addItem(self.xtile_image)
        self.xtile_plot.getPlotItem().setAspectLocked(False)
        self.colour_bar = pg.ColorBarItem(values=(0, 1), colorMap=pg.colormap.get("viridis"), label="\u03c7\u00b2 (2 df)",
                                          interactive=False)
        self.colour_bar.setImageItem(self.xtile_image, insert_in=self.xtile_plot.getPlotItem())
        for plot in (self.stat_plot, self.boot_plot, self.xtile_plot):
            for name in ("bottom", "left"):
                plot.getPlotItem().getAxis(name).enableAutoSIPrefix(False)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.RichText)
        self.summary.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.summary.setMinimumWidth(300)
        self.summary.setMargin(6)
        grid.addWidget(self.stat_plot, 0, 0)
        grid.addWidget(self.xtile_plot, 0, 1)
        grid.addWidget(self.boot_plot, 1, 0)
        grid.addWidget(self.summary, 1, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 1)
        return widget

    def render(self, model: CutpointFigure) -> None:
        self._draw_statistic(model)
        self._draw_xtile(model)
        self._draw_bootstrap(model)
        self.summary.setText(self.summary_html(model))
        self._update_lock_button()

    def _line(self, plot, x: float, colour: str, style=Qt.SolidLine, label: str = "", y_anchor: float = 0.95):
        pen = pg.mkPen(qcolor(colour), width=1.5, style=style)
        line = pg.InfiniteLine(pos=x, angle=90, pen=pen, label=label or None,
                               labelOpts={"position": y_anchor, "color": colour, "anchors": [(0, 0), (0, 0)]})
        plot.addItem(line)
        return line

    def _draw_statistic(self, model: CutpointFigure) -> None:
        plot = self.stat_plot
        plot.clear()
        x, y = np.asarray(model.cuts), np.asarray(model.statistics)
        plot.plot(x, y, pen=group_pen(0, 2.0))
        plot.plot([model.cutpoint], [model.statistic], pen=None, symbol="o", symbolSize=9,
                  symbolBrush=qcolor(PALETTE[1]), symbolPen=pg.mkPen(qcolor(PALETTE[1])))
        self._line(plot, model.cutpoint, PALETTE[1], Qt.DashLine,
                   f"max {model.statistic:.2f} at {model.cutpoint:.3g}; Lau94 p {format_p(model.p_lau94)}")
        if not np.isclose(model.chosen_cut, model.cutpoint):
            self._line(plot, model.chosen_cut, PALETTE[2], Qt.SolidLine, f"chosen {model.chosen_cut:.3g}", 0.8)
        if model.reference_cut is not None:
            self._line(plot, model.reference_cut, "#777777", Qt.DotLine, f"frozen {model.reference_cut:.3g}", 0.65)
        unit = f" ({model.unit})" if model.unit else ""
        plot.getPlotItem().setLabel("bottom", f"Cut of {model.marker_label}{unit} (low: \u2264 cut)")
        plot_title(plot, f"{ENDPOINTS[model.endpoint][2]}, {DATA_SET_LABELS[model.data_set].lower()}: "
                                    f"n = {model.n}, {model.events} events")
        top = float(np.nanmax(y)) if y.size else 1.0
        plot.setYRange(0, top * 1.15, padding=0)

    def _draw_xtile(self, model: CutpointFigure) -> None:
        cuts = model.xtile_cuts
        chi = np.array([[np.nan if v is None else v for v in row] for row in model.xtile_chi2], dtype=float)
        finite = chi[np.isfinite(chi)]
        top = float(finite.max()) if finite.size else 1.0
        # ImageItem: axis 0 is x (c1), axis 1 is y (c2); undefined cells transparent
        # the chi2 values themselves (NaN cells are drawn transparent); the colour bar owns the
        # colour map and the levels, so the map and its scale cannot disagree
        self.xtile_image.setImage(chi, autoLevels=False)
        self.colour_bar.setLevels((0.0, top))
        self.xtile_image.setRect(-0.5, -0.5, len(cuts), len(cuts))
        ticks = [(i, f"{c:.3g}") for i, c in enumerate(cuts)][:: max(1, len(cuts) // 6)]
        for name in ("bottom", "left"):
            self.xtile_plot.getPlotItem().getAxis(name).setTicks([ticks])
        plot_title(self.xtile_plot, 
            f"X-tile: best pair {model.xtile_pair[0]:.3g} / {model.xtile_pair[1]:.3g}, "
            f"\u03c7\u00b2 = {model.xtile_pair_chi2:.1f}")
        self.xtile_plot.setRange(xRange=(-0.5, len(cuts) - 0.5), yRange=(-0.5, len(cuts) - 0.5), padding=0)

    def _draw_bootstrap(self, model: CutpointFigure) -> None:
        plot = self.boot_plot
        plot.clear()
        boot = model.bootstrap
        if boot is None:
            plot_title(plot, "Bootstrap stability: press \u201cBootstrap stability\u201d")
            return
        counts, edges = np.histogram(boot.cuts, bins=min(30, max(5, len(set(boot.cuts)))))
        plot.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts, brush=qcolor(PALETTE[0], 150),
                                     pen=pg.mkPen(qcolor(PALETTE[0]))))
        span = pg.LinearRegionItem((model.chosen_cut - boot.window, model.chosen_cut + boot.window), movable=False,
                                   brush=qcolor(PALETTE[2], 40), pen=pg.mkPen(None))
        plot.addItem(span)
        self._line(plot, model.chosen_cut, PALETTE[1], Qt.DashLine)
        plot_title(plot, f"Bootstrap ({boot.reps}): 95% interval {boot.lower:.3g} to {boot.upper:.3g}; "
                                    f"{boot.share_within:.0%} within \u00b1{boot.window:.2g}")

    @staticmethod
    def summary_html(model: CutpointFigure) -> str:
        def format_p(p) -> str:  # "< 0.001" is not a tag
            return escape(style_p(p))

        lines = [f"<b>{model.marker_label}</b>, {ENDPOINTS[model.endpoint][2]}",
                 f"{DATA_SET_LABELS[model.data_set]}: n = {model.n}, {model.events} events",
                 f"Maxstat cut {model.cutpoint:.4g}: statistic {model.statistic:.2f}, "
                 f"p {format_p(model.p_raw)} (unadjusted), <b>p {format_p(model.p_lau94)} (Lau94)</b>"]
        c = model.chosen
        if c is not None:
            lines.append(f"At cut {model.chosen_cut:.4g}: low {c['n'][0]}, high {c['n'][1]}; "
                         f"HR high vs low {format_estimate_ci(c['hr'][0], c['hr_lower'][0], c['hr_upper'][0])}, "
                         f"log-rank p {format_p(c['logrank_p'])}")
        lines.append(f"X-tile single cut {model.xtile_single_cut:.4g} (\u03c7\u00b2 {model.xtile_single_chi2:.1f}); "
                     f"pair {model.xtile_pair[0]:.4g} / {model.xtile_pair[1]:.4g} "
                     f"(\u03c7\u00b2 {model.xtile_pair_chi2:.1f}, 2 df, p {format_p(model.xtile_pair_p_raw)} unadjusted)")
        if model.bootstrap is not None:
            b = model.bootstrap
            lines.append(f"Bootstrap ({b.reps} resamples): median cut {b.median:.4g}, 95% interval "
                         f"{b.lower:.4g} to {b.upper:.4g}; {b.share_within:.0%} within \u00b1{b.window:.3g} of the cut")
        if model.reference_cut is not None:
            lines.append(f"Signature's frozen cut: {model.reference_cut:.4g}")
        lines += [f"<i>{n}</i>" for n in model.notes]
        return "<br>".join(lines)

    def _stat_clicked(self, event) -> None:
        if self.computed is None or event.button() != Qt.LeftButton:
            return
        point = self.stat_plot.getPlotItem().vb.mapSceneToView(event.scenePos())
        self.choose_cut_near(point.x())

    def choose_cut_near(self, x: float) -> None:
        """Choose the admissible cut nearest to ``x`` (as a click on the curve does)."""
        cuts = np.asarray(self.computed.model.cuts)
        if cuts.size == 0:
            return
        self.cut_edit.setText(repr(float(cuts[int(np.argmin(np.abs(cuts - x)))])))
        self.recompute()

    # -- lock -------------------------------------------------------------------------
    def open_lock_dialog(self) -> None:
        signature = self.chosen_signature()
        if self.computed is None or signature is None:
            return
        self.lock_dialog = LockCutDialog(self, signature, self.computed.model.chosen_cut)
        cut = self.computed.model.chosen_cut
        self.lock_dialog.accepted.connect(lambda: self.lock_chosen_cut(signature["name"], cut,
                                                                        self.lock_dialog.reason()))
        self.lock_dialog.open()

    def lock_chosen_cut(self, name: str, cut: float, reason: str) -> LockCutCommand | None:
        """Lock ``cut`` for signature ``name`` as an undoable command (a message on refusal)."""
        command = LockCutCommand(self.ctx, name, cut, reason=reason)
        QGuiApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            push(self.ctx, command)
        except UserError as exc:
            show_message(self, "Lock this cut", f"{exc}")
            return None
        finally:
            QGuiApplication.restoreOverrideCursor()
        self.last_command = command
        self._fill_signatures()
        self.ctx.status_message.emit(command.results[-1].summary().splitlines()[0])
        return command

    # -- data -------------------------------------------------------------------------
    def table_data(self, model: CutpointFigure):
        header = ["cut", "standardized log-rank statistic"]
        rows = [[f"{c:.6g}", f"{s:.4f}"] for c, s in zip(model.cuts, model.statistics)]
        return header, rows

    def snapshot_data(self, model: CutpointFigure) -> dict:
        return {"cutpoint": model.to_dict(), "summary": self.summary.text()}
