"""The analysis views: Kaplan-Meier, Cox, subgroup forest, ROC, Table 1, cutpoint and
signature. Each is an :class:`~pathomics_desktop.ui.views.analysis.base.AnalysisView` over the
DuckDB cohort snapshot, filtered by the one cohort filter of the project context, drawing a
Qt-free figure description (``pathomics_desktop.figures``) computed in a worker thread."""
