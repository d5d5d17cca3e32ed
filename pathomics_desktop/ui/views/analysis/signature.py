"""Signature panel: a frozen signature on the filtered cohort, as the report analyses it.

Computed by :func:`pathomics_desktop.figures.signature.build_signature_panel` in a worker
thread (the report's own functions on the filtered cohort); the view draws it:

* **Performance**: C-index and td-AUC (bootstrap 95% CIs) per set, a small Kaplan-Meier plot
  of the risk groups per set and the risk-group summary (n/events, medians, HR, log-rank p);
* **Centers**: the forest of per-center HRs (high vs low) on a log axis with the random-effects
  diamond and its prediction interval, I^2, Q, tau^2, and the center random-effect Cox model;
* **CA19-9 and chemotherapy**: the report's Figure 5 and Figure S6 tables.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from pathomics_desktop.figures.signature import DEFAULT_BOOT, SignaturePanel, build_signature_panel, list_signatures
from pathomics_desktop.figures.style import PALETTE, format_estimate_ci, format_p
from pathomics_desktop.ui.models.base import DictTableModel
from pathomics_desktop.ui.views.analysis.base import AnalysisView, labelled_row
from pathomics_desktop.ui.views.analysis.cutpoint import plot_title
from pathomics_desktop.ui.views.analysis.km import step_xy
from pathomics_desktop.ui.views.analysis.plotting import group_pen, plot_widget, qcolor
from pathomics_desktop.ui.views.common import row_table

ENDPOINT_LABELS = {"os": "Overall survival", "rfs": "Recurrence-free survival"}
RISK_COLOURS = {"low": 0, "high": 1}
FOREST_TICKS = (0.25, 0.5, 1, 2, 4, 8, 16)


def _table(columns: list[tuple[str, str]]):
    model = DictTableModel([c for c, _ in columns], [h for _, h in columns])
    table = row_table(model, sortable=False)
    table.horizontalHeader().setStretchLastSection(True)
    return model, table


def _ci(value, lo, hi, digits: int = 3) -> str:
    return format_estimate_ci(value, lo, hi, digits)


class SignatureView(AnalysisView):
    """The signature panel (see the module docstring)."""

    view_id = "signature"
    title = "Signature"
    compute = staticmethod(build_signature_panel)

    # -- controls ---------------------------------------------------------------------
    def build_controls(self, form) -> None:
        self.signature_combo = QComboBox()
        self.signature_combo.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.endpoint_combo = QComboBox()
        self.endpoint_combo.addItem("the signature's", None)
        for key, label in ENDPOINT_LABELS.items():
            self.endpoint_combo.addItem(label, key)
        self.boot_spin = QSpinBox()
        self.boot_spin.setRange(10, 2000)
        self.boot_spin.setValue(DEFAULT_BOOT)
        self.boot_spin.setSuffix(" resamples")
        self.boot_spin.setToolTip("Bootstrap resamples of the C-index and td-AUC confidence intervals")
        row = labelled_row((("", self.signature_combo), ("Endpoint", self.endpoint_combo),
                              ("Bootstrap", self.boot_spin)))
        form.addRow("Signature", row)
        self.signature_combo.currentIndexChanged.connect(self.recompute)
        self.endpoint_combo.currentIndexChanged.connect(self.recompute)
        self.boot_spin.editingFinished.connect(self.recompute)

    def params(self) -> dict[str, Any]:
        return {"project": str(self.ctx.project.root) if self.ctx is not None else "",
                "name": self.signature_combo.currentData(), "endpoint": self.endpoint_combo.currentData(),
                "n_boot": self.boot_spin.value()}

    def set_context(self, ctx) -> None:
        if self.ctx is not None:
            self.ctx.data_changed.disconnect(self._fill_signatures)
        super().set_context(ctx)
        if ctx is not None:
            ctx.data_changed.connect(self._fill_signatures)
            self._fill_signatures()

    def _fill_signatures(self, *_args) -> None:
        current = self.signature_combo.currentData()
        self.signature_combo.blockSignals(True)
        self.signature_combo.clear()
        for sig in list_signatures(self.ctx.project.root):
            self.signature_combo.addItem(f"{sig['name']} ({(sig['endpoint'] or '').upper()}, v{sig['version']}, "
                                         f"cut {sig['cut']:.4g})", sig["name"])
        index = self.signature_combo.findData(current)
        self.signature_combo.setCurrentIndex(max(index, 0))
        self.signature_combo.blockSignals(False)

    def prepare_screenshot(self) -> None:
        self.tabs.setCurrentIndex(0)
        super().prepare_screenshot()

    # -- content ----------------------------------------------------------------------
    def build_content(self) -> QWidget:
        self.tabs = QTabWidget()
        # performance
        page = QWidget()
        column = QVBoxLayout(page)
        self.heading = QLabel()
        self.heading.setTextFormat(Qt.RichText)
        self.heading.setWordWrap(True)  # a long heading must not widen the window
        column.addWidget(self.heading)
        self.disc_model, self.disc_table = _table([("set", "Set"), ("n", "n"), ("c", "C-index (95% CI)")])
        self.disc_table.setMaximumHeight(130)
        column.addWidget(QLabel("<b>Discrimination</b> (Harrell's C and time-dependent AUC, bootstrap 95% CI)"))
        column.addWidget(self.disc_table)
        self.km_row = QHBoxLayout()
        self.km_plots: dict[str, pg.PlotWidget] = {}
        column.addLayout(self.km_row, 1)
        self.km_model, self.km_table = _table([
            ("set", "Set"), ("low", "Low risk n/events"), ("low_median", "Median (95% CI)"),
            ("high", "High risk n/events"), ("high_median", "Median (95% CI)"), ("hr", "HR high vs low (95% CI)"),
            ("p", "Log-rank p")])
        self.km_table.setMaximumHeight(130)
        column.addWidget(QLabel("<b>Risk groups</b> (Kaplan-Meier medians in months; Cox HR, Wald 95% CI)"))
        column.addWidget(self.km_table)
        self.tabs.addTab(page, "Performance")
        # centers
        page = QWidget()
        column = QVBoxLayout(page)
        self.forest = plot_widget(x_label="HR high vs low risk (95% CI), log scale; dashed: 95% prediction interval",
                                  y_label="Center (role): events/n")
        self.forest.getPlotItem().getAxis("left").setWidth(240)
        column.addWidget(self.forest, 3)
        self.center_model, self.center_table = _table([
            ("center", "Center"), ("role", "Role"), ("n", "n"), ("events", "Events"), ("hr", "HR (95% CI)"),
            ("p", "p")])
        column.addWidget(self.center_table, 1)
        self.meta_label = QLabel()
        self.meta_label.setWordWrap(True)
        self.meta_label.setTextFormat(Qt.RichText)
        column.addWidget(self.meta_label)
        self.tabs.addTab(page, "Centers")
        # CA19-9 and chemotherapy
        page = QWidget()
        column = QVBoxLayout(page)
        interaction_columns = [("set", "Set"), ("figure", "Figure"), ("within", "Within"), ("n", "n"),
                               ("events", "Events"), ("medians", "Medians (months)"), ("hr", "HR (95% CI)"),
                               ("p", "Log-rank p"), ("p_bonf", "p Bonf."), ("p_int", "p interaction")]
        column.addWidget(QLabel("<b>CA19-9 interception</b> (Figure 5): CA19-9 \u2265200 vs &lt;200 U/mL "
                                "within each risk group"))
        self.ca_model, self.ca_table = _table(interaction_columns)
        column.addWidget(self.ca_table)
        self.chemo_label = QLabel("<b>Chemotherapy benefit</b> (Figure S6, RFS): adjuvant chemotherapy yes vs no")
        column.addWidget(self.chemo_label)
        self.chemo_model, self.chemo_table = _table(interaction_columns)
        column.addWidget(self.chemo_table)
        self.tabs.addTab(page, "CA19-9 and chemotherapy")
        return self.tabs

    def export_widget(self) -> QWidget:
        return self.tabs.currentWidget()

    # -- drawing ----------------------------------------------------------------------
    def render(self, model: SignaturePanel) -> None:
        self.heading.setText(
            f"<b>{model.name}</b> v{model.version} (fitted on {model.fit_endpoint.upper()}); cut {model.cut:.4g} "
            f"({model.cut_method}), high risk: score &gt; cut; {ENDPOINT_LABELS[model.endpoint]}; "
            f"{model.n_scored} scored patients in the filter, {model.n_without_score} without a score")
        self._fill_discrimination(model)
        self._draw_km(model)
        self.km_model.set_rows(self.km_rows(model))
        self.km_table.resizeColumnsToContents()
        self._draw_forest(model)
        self.center_model.set_rows(self.center_rows(model))
        self.center_table.resizeColumnsToContents()
        self.meta_label.setText(escape(self.meta_text(model)).replace("\n", "<br>"))
        self.ca_model.set_rows(self.interaction_rows(model, "ca19_9"))
        self.chemo_model.set_rows(self.interaction_rows(model, "chemotherapy"))
        for table in (self.ca_table, self.chemo_table):
            table.resizeColumnsToContents()

    def _fill_discrimination(self, model: SignaturePanel) -> None:
        columns = [("set", "Set"), ("n", "n"), ("c", "C-index (95% CI)")] + [
            (f"auc_{t:g}", f"AUC {t / 12:g} y (95% CI)") for t in model.auc_times]
        self.disc_model.beginResetModel()
        self.disc_model.COLUMNS = tuple(columns)
        self.disc_model.rows = self.discrimination_rows(model)
        self.disc_model.endResetModel()
        self.disc_table.resizeColumnsToContents()

    @staticmethod
    def discrimination_rows(model: SignaturePanel) -> list[dict]:
        out = []
        for row in model.discrimination_rows():
            shown = {"set": row["set"], "n": row["n"], "c": _ci(row["c"], row["c_lower"], row["c_upper"])}
            for t in model.auc_times:
                key = f"auc_{t:g}"
                shown[key] = _ci(row[key], row[f"{key}_lower"], row[f"{key}_upper"])
            out.append(shown)
        return out

    @staticmethod
    def km_rows(model: SignaturePanel) -> list[dict]:
        rows = []
        for s in model.sets:
            d = s.survival.to_dict()
            groups = {g["group"]: g for g in d["groups"]}
            row = {"set": s.set}
            for level in ("low", "high"):
                g = groups.get(level)
                row[level] = "-" if g is None else f"{g['n']}/{g['events']}"
                row[f"{level}_median"] = "-" if g is None else (
                    "NR" if g["median"] is None else _ci(g["median"], g["median_lower"], g["median_upper"], 1))
            hr = d["hr"] or {}
            row["hr"] = _ci(hr.get("hr"), hr.get("hr_lower"), hr.get("hr_upper"))
            row["p"] = format_p(None if d["logrank"] is None else d["logrank"]["p"])
            rows.append(row)
        return rows

    def _draw_km(self, model: SignaturePanel) -> None:
        wanted = [s.set for s in model.sets]
        for name in list(self.km_plots):
            if name not in wanted:
                self.km_plots.pop(name).setParent(None)
        for s in model.sets:
            plot = self.km_plots.get(s.set)
            if plot is None:
                plot = plot_widget(x_label="Months", y_label="Survival probability")
                plot.setMinimumHeight(200)
                plot.setMinimumWidth(160)
                self.km_plots[s.set] = plot
                self.km_row.addWidget(plot)
            plot.clear()
            legend = plot.getPlotItem().legend or plot.getPlotItem().addLegend(offset=(10, -10),
                                                                                  labelTextColor="#222222")
            legend.clear()
            d = s.survival.to_dict()
            for g in d["groups"]:
                c = g["curve"]
                t = np.concatenate([[0.0], np.asarray(c["time"], float)])
                surv = np.concatenate([[1.0], np.asarray(c["survival"], float)])
                x, y = step_xy(t, surv)
                # short legend (medians are in the table below), in the empty lower-left corner
                plot.plot(x, y, pen=group_pen(RISK_COLOURS.get(g["group"], 2)), name=f"{g['group']} ({g['n']})")
            p = None if d["logrank"] is None else d["logrank"]["p"]
            plot_title(plot, escape(f"{s.set}: log-rank p {format_p(p)}"))
            plot.setYRange(0, 1.02, padding=0)

    @staticmethod
    def center_rows(model: SignaturePanel) -> list[dict]:
        return [{"center": c["center"], "role": c["role"] or "", "n": c["n"], "events": c["events"],
                 "hr": _ci(c["hr"], c["hr_lower"], c["hr_upper"]) if c["hr"] is not None else (c["note"] or "-"),
                 "p": format_p(c["p"])} for c in model.centers.to_dict()["centers"]]

    @staticmethod
    def meta_text(model: SignaturePanel) -> str:
        d = model.centers.to_dict()
        lines = []
        m = d["meta"]
        if m:
            lines.append(f"Random-effects meta-analysis (REML, k = {m['k']}): HR "
                         f"{_ci(m['hr'], m['hr_lower'], m['hr_upper'])}; I\u00b2 = {m['i2']:.1f}%, "
                         f"Q = {m['q']:.2f} (p {format_p(m['q_p'])}), \u03c4\u00b2 = {m['tau2']:.4f}; "
                         f"95% prediction interval {m['pi_hr_lower']:.2f}-{m['pi_hr_upper']:.2f}")
        x = d["mixed_effects"]
        if x:
            lines.append(f"Cox model with a random center intercept: HR {_ci(x['hr'], x['hr_lower'], x['hr_upper'])}, "
                         f"p {format_p(x['p'])}, center variance {x['center_variance']:.4f}")
        lines += [f"note: {n}" for n in d["notes"]]
        return "\n".join(lines)

    def _draw_forest(self, model: SignaturePanel) -> None:
        plot = self.forest
        plot.clear()
        d = model.centers.to_dict()
        rows = [c for c in d["centers"] if c["hr"] is not None]
        labels = []
        k = len(rows)
        events = np.array([max(c["events"], 1) for c in rows], float)
        sizes = 8 + 16 * np.sqrt(events / events.max()) if k else []
        for i, c in enumerate(rows):
            y = k - i
            lo, hi = np.log(c["hr_lower"]), np.log(c["hr_upper"])
            plot.plot([lo, hi], [y, y], pen=pg.mkPen(qcolor("#222222"), width=1.5))
            plot.plot([np.log(c["hr"])], [y], pen=None, symbol="s", symbolSize=float(sizes[i]),
                      symbolBrush=qcolor(PALETTE[0]), symbolPen=pg.mkPen(qcolor(PALETTE[0])))
            labels.append((y, f"{c['center']} ({c['role'] or '-'}): {c['events']}/{c['n']}"))
        m = d["meta"]
        if m:
            est, lo, hi = np.log(m["hr"]), np.log(m["hr_lower"]), np.log(m["hr_upper"])
            plot.plot([np.log(m["pi_hr_lower"]), np.log(m["pi_hr_upper"])], [0, 0],
                      pen=pg.mkPen(qcolor(PALETTE[1]), width=1.5, style=Qt.DashLine))
            diamond = pg.PlotDataItem([lo, est, hi, est, lo], [0, 0.3, 0, -0.3, 0], pen=pg.mkPen(qcolor(PALETTE[1])),
                                      fillLevel=0, fillBrush=qcolor(PALETTE[1], 180))
            plot.addItem(diamond)
            labels.append((0, f"Random effects, I\u00b2 {m['i2']:.0f}%"))
        plot.addItem(pg.InfiniteLine(pos=0, angle=90, pen=pg.mkPen(qcolor("#777777"), style=Qt.DotLine)))
        values = [v for c in rows for v in (c["hr_lower"], c["hr_upper"])] + (
            [m["pi_hr_lower"], m["pi_hr_upper"]] if m else [])
        low, high = (min(values + [0.8]), max(values + [1.25])) if values else (0.5, 2)
        ticks = [(np.log(v), f"{v:g}") for v in FOREST_TICKS if low / 1.5 <= v <= high * 1.5]
        item = plot.getPlotItem()
        item.getAxis("bottom").setTicks([ticks])
        item.getAxis("left").setTicks([labels])
        item.showGrid(x=False, y=False)
        plot.setXRange(np.log(low) - 0.1, np.log(high) + 0.1, padding=0)
        plot.setYRange(-0.8, k + 0.8, padding=0)
        plot_title(plot, f"Per-center HR high vs low risk, {ENDPOINT_LABELS[model.endpoint].lower()} (all filtered sets)")

    @staticmethod
    def interaction_rows(model: SignaturePanel, which: str) -> list[dict]:
        rows = []
        for s in model.sets:
            parts = [s.ca19_9] if which == "ca19_9" else ([] if s.chemotherapy is None else s.chemotherapy.parts())
            for part in parts:
                for r in part.within():
                    meds = ", ".join(f"{g['group']}: {'NR' if g['median'] is None else format(g['median'], '.1f')}"
                                     for g in r["groups"])
                    rows.append({"set": s.set, "figure": r["figure"] or "", "within": f"{part.modifier}={r['level']}",
                                 "n": r["n"], "events": r["events"], "medians": meds,
                                 "hr": _ci(r["hr"], r["hr_lower"], r["hr_upper"]),
                                 "p": format_p(r["logrank_p"]), "p_bonf": format_p(r["logrank_p_bonferroni"]),
                                 "p_int": format_p(part.p_interaction)})
        return rows

    # -- data -------------------------------------------------------------------------
    def table_data(self, model: SignaturePanel):
        disc = self.discrimination_rows(model)
        header = list(disc[0]) if disc else ["set"]
        rows = [[r[h] for h in header] for r in disc]
        km = self.km_rows(model)
        if km:
            rows.append([])
            rows.append(list(km[0]))
            rows += [list(r.values()) for r in km]
        centers = self.center_rows(model)
        if centers:
            rows.append([])
            rows.append(list(centers[0]))
            rows += [list(r.values()) for r in centers]
            rows.append([self.meta_text(model).replace("\n", " | ")])
        return header, rows

    def snapshot_data(self, model: SignaturePanel) -> dict:
        data = model.to_dict()
        for s in data["sets"].values():  # the curves and ROC points are drawn, not listed
            for g in s["km"]["groups"]:
                g.pop("curve", None)
            s["discrimination"].pop("roc", None)
        return {"signature": data, "tables": {"discrimination": self.discrimination_rows(model),
                                              "risk_groups": self.km_rows(model),
                                              "centers": self.center_rows(model), "meta": self.meta_text(model),
                                              "ca19_9": self.interaction_rows(model, "ca19_9"),
                                              "chemotherapy": self.interaction_rows(model, "chemotherapy")}}
