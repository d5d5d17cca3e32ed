"""The views of the main window, in navigation order.

Each view is a ``QWidget`` subclass (see :class:`pathomics_desktop.ui.views.base.View`)
named here as "module:Class" and imported when the main window is built, so that a broken
view fails loudly at start rather than disappearing.
"""

from __future__ import annotations

import importlib

#: (view id, navigation title, "module:Class")
VIEWS: list[tuple[str, str, str]] = [
    ("patients", "Patients", "pathomics_desktop.ui.views.patients:PatientsView"),
    ("patient", "Patient", "pathomics_desktop.ui.views.patient_form:PatientFormView"),
    ("study", "Study set-up", "pathomics_desktop.ui.views.study:StudySetupView"),
    ("import", "Import", "pathomics_desktop.ui.views.import_wizard:ImportWizardView"),
    ("slides", "Slides", "pathomics_desktop.ui.views.slides:SlideCatalogView"),
    ("qc", "QC", "pathomics_desktop.ui.views.qc:QCQueueView"),
    ("viewer", "Slide viewer", "pathomics_desktop.ui.views.viewer:SlideViewerView"),
    ("jobs", "Jobs", "pathomics_desktop.ui.views.jobs:JobsView"),
    ("km", "Kaplan-Meier", "pathomics_desktop.ui.views.analysis.km:KaplanMeierView"),
    ("cox", "Cox models", "pathomics_desktop.ui.views.analysis.cox:CoxView"),
    ("forest", "Subgroup forest", "pathomics_desktop.ui.views.analysis.forest:ForestView"),
    ("roc", "ROC", "pathomics_desktop.ui.views.analysis.roc:RocView"),
    ("table1", "Table 1", "pathomics_desktop.ui.views.analysis.table1:BaselineTableView"),
    ("cutpoint", "Cutpoint", "pathomics_desktop.ui.views.analysis.cutpoint:CutpointView"),
    ("signature", "Signature", "pathomics_desktop.ui.views.analysis.signature:SignatureView"),
]


def view_class(target: str):
    module_name, name = target.split(":")
    return getattr(importlib.import_module(module_name), name)
