"""Survival statistics, Qt-free (numpy/scipy/pandas only; imported lazily by the CLI).

Part 1 (models):

* :mod:`.km` - Kaplan-Meier (Greenwood, log/log-log/plain CIs, median and quantile CIs,
  survival and number at risk at given times), log-rank (k groups, stratified, G-rho),
  trend test, pairwise log-rank with Holm adjustment.
* :mod:`.cox` - Cox model (Efron/Breslow, categorical ``var=level`` dummies, strata,
  cluster-robust SE, Wald/LR/score tests, Harrell's C), ``cox_zph`` (R cox.zph),
  univariate screening and the multivariable model.
* :mod:`.frailty` - Cox model with a Gaussian random center intercept (R frailty, REML).
* :mod:`.subgroups` - exposure HR per subgroup level with interaction LR p (forest plot).
* :mod:`.table1` - baseline table with Shapiro-Wilk-chosen tests and exact r x c Fisher.
* :mod:`.data` - table loader for the ``analyze`` commands and JSON/text output.
* :mod:`.results` - the habit every result object shares: typed dataclass fields,
  ``to_dict()`` (exactly the ``analyze ... --json`` object) and ``summary()`` / ``str()``
  (the text output).
* :mod:`.levels` - how category values are labelled and ordered (shared by all of the above).

Every public function raises :class:`pathomics_desktop.errors.UserError` for degenerate
input instead of returning NaN.
"""
