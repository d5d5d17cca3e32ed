"""The cutpoint explorer: where to cut a continuous marker into low and high risk. Qt-free; the
GUI's cutpoint view and the publication exports draw the same :class:`CutpointFigure`.

Statistics come from :mod:`pathomics_desktop.stats.cutpoint` only:

* the standardized log-rank statistic ``S_m`` of every admissible cut (low: marker <= cut) and
  its maximum with the Lausen-Sauerbrei-Schumacher (1994) corrected p:
  :func:`~pathomics_desktop.stats.cutpoint.maxstat_cutpoint` (``lausen94_pvalue``);
* the X-tile map (Camp, Dolled-Filhart & Rimm 2004): the 2-df log-rank chi-square of every
  low/mid/high pair of cuts (low <= c1 < mid <= c2 < high) on the candidate cuts thinned to
  ``xtile_cuts``, and the best single cut's 1-df chi-square:
  :func:`~pathomics_desktop.stats.cutpoint.xtile` (no permutations here);
* at the chosen cut (the maxstat cut unless ``cut`` is given): group sizes, log-rank test and
  the Cox HR high vs low: :func:`~pathomics_desktop.stats.cutpoint.validate_cut`;
* bootstrap stability of the maxstat cut (``bootstrap`` > 0 resamples of patients with
  replacement, seeded): the maxstat cut of each resample, its median, the 2.5th-97.5th
  percentile interval and the share of resamples whose cut lies within ``cut +/- window``
  (``window`` in marker units; default 0.25 standard deviations of the marker).

``params`` (all optional): ``endpoint`` ("os" | "rfs"), ``marker`` (any numeric column;
default ``pathomics_<endpoint>_score``), ``data_set`` ("training" by default, "internal",
"external" or "all": every patient the cohort filter lets through), ``minprop`` (0.1: the
smallest group as a share of the patients), ``cut``, ``xtile_cuts`` (60), ``bootstrap`` (0),
``seed`` (0), ``window``, ``reference_cut`` (a cut to mark, e.g. the signature's frozen one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.figures.km import ENDPOINTS

DATA_SETS = ("training", "internal", "external", "all")
DEFAULT_XTILE_CUTS = 60
#: default stability window, in standard deviations of the marker
WINDOW_SD = 0.25


def score_column(endpoint: str) -> str:
    return f"pathomics_{endpoint}_score"


@dataclass
class BootstrapStability:
    """The maxstat cut over bootstrap resamples of the patients."""

    reps: int
    seed: int
    cuts: list[float]
    failed: int  #: resamples in which no cut could be chosen
    median: float
    lower: float  #: 2.5th percentile
    upper: float  #: 97.5th percentile
    window: float
    share_within: float  #: share of resample cuts within cut +/- window

    def to_dict(self) -> dict[str, Any]:
        return {"reps": self.reps, "seed": self.seed, "failed": self.failed, "median": self.median,
                "lower": self.lower, "upper": self.upper, "window": self.window,
                "share_within": self.share_within, "cuts": list(self.cuts)}


@dataclass
class CutpointFigure:
    """What the cutpoint explorer shows (see the module docstring)."""

    endpoint: str
    marker: str
    marker_label: str
    unit: str
    data_set: str
    n: int
    events: int
    minprop: float
    cuts: list[float]  #: every admissible maxstat cut
    statistics: list[float]  #: standardized log-rank statistic at each cut
    cutpoint: float  #: the maxstat cut (first maximum)
    statistic: float
    p_raw: float
    p_lau94: float
    chosen_cut: float
    chosen: dict[str, Any] | None  #: validate_cut at the chosen cut (None if a group is empty)
    xtile_cuts: list[float]
    xtile_chi2: list[list[float | None]]  #: (c1, c2) 2-df chi-square, None where undefined
    xtile_single_cut: float
    xtile_single_chi2: float
    xtile_pair: tuple[float, float]
    xtile_pair_chi2: float
    xtile_pair_p_raw: float
    bootstrap: BootstrapStability | None = None
    reference_cut: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.marker_label}: cutpoint for {ENDPOINTS[self.endpoint][2]}"

    def to_dict(self) -> dict[str, Any]:
        from pathomics_desktop.stats.data import clean_json

        return clean_json({
            "endpoint": self.endpoint, "marker": self.marker, "marker_label": self.marker_label,
            "unit": self.unit, "data_set": self.data_set, "n": self.n, "events": self.events,
            "minprop": self.minprop,
            "maxstat": {"cutpoint": self.cutpoint, "statistic": self.statistic, "p_raw": self.p_raw,
                        "p_lau94": self.p_lau94, "cuts": list(self.cuts), "statistics": list(self.statistics)},
            "chosen_cut": self.chosen_cut, "chosen": self.chosen,
            "xtile": {"cuts": list(self.xtile_cuts), "chi2": self.xtile_chi2,
                      "single_cut": self.xtile_single_cut, "single_chi2": self.xtile_single_chi2,
                      "pair": list(self.xtile_pair), "pair_chi2": self.xtile_pair_chi2,
                      "pair_p_raw": self.xtile_pair_p_raw},
            "bootstrap": None if self.bootstrap is None else self.bootstrap.to_dict(),
            "reference_cut": self.reference_cut, "notes": list(self.notes)})


def bootstrap_stability(time, event, marker, *, cut: float, reps: int, seed: int = 0, minprop: float = 0.1,
                        window: float | None = None) -> BootstrapStability:
    """The maxstat cut (:func:`~pathomics_desktop.stats.cutpoint.maxstat_cutpoint`) of ``reps``
    resamples of the patients drawn with replacement (``numpy.random.default_rng(seed)``)."""
    from pathomics_desktop.stats.cutpoint import maxstat_cutpoint

    t, e, x = (np.asarray(a, dtype=float) for a in (time, event, marker))
    if reps < 10:
        raise UserError(f"the bootstrap needs at least 10 resamples, got {reps}")
    window = float(WINDOW_SD * np.std(x, ddof=1)) if window is None else float(window)
    rng = np.random.default_rng(seed)
    cuts: list[float] = []
    for _ in range(reps):
        idx = rng.integers(0, t.size, size=t.size)
        try:
            cuts.append(maxstat_cutpoint(t[idx], e[idx], x[idx], minprop=minprop).cutpoint)
        except UserError:
            continue
    if len(cuts) < reps // 2:
        raise UserError(f"only {len(cuts)} of {reps} bootstrap resamples allowed a cut (too few events or "
                        "distinct marker values)")
    arr = np.asarray(cuts)
    lower, median, upper = np.percentile(arr, [2.5, 50, 97.5])
    return BootstrapStability(reps, seed, cuts, reps - len(cuts), float(median), float(lower), float(upper),
                              window, float(np.mean(np.abs(arr - cut) <= window)))


def marker_data(source, frame, params: dict[str, Any]):
    """(endpoint, marker column, data set, time, event, marker) of the patients with all three."""
    import pandas as pd

    endpoint = str(params.get("endpoint") or "os")
    if endpoint not in ENDPOINTS:
        raise UserError(f"endpoint must be 'os' or 'rfs', got {endpoint!r}")
    time_col, event_col, _ = ENDPOINTS[endpoint]
    marker = str(params.get("marker") or score_column(endpoint))
    data_set = str(params.get("data_set") or "training")
    if data_set not in DATA_SETS:
        raise UserError(f"data set must be one of {', '.join(DATA_SETS)}, got {data_set!r}")
    if marker not in frame.columns or frame[marker].isna().all():
        if marker.startswith("pathomics_"):
            raise UserError(f"No patient has a {marker} yet: fit a signature (`pathomics signature fit --model RUN "
                            f"--endpoint {endpoint}`) and apply it (`pathomics signature apply NAME --all`), "
                            "or pick another marker.")
        raise UserError(f"{marker!r} is not a column of the cohort snapshot with values; pick another marker")
    values = pd.to_numeric(frame[marker], errors="coerce")
    if values.isna().all():
        raise UserError(f"{source.label(marker)} ({marker}) is not numeric; pick a numeric marker")
    part = frame.assign(_marker=values)
    if data_set != "all":
        part = part[part["split"] == data_set]
    part = part.dropna(subset=[time_col, event_col, "_marker"])
    if len(part) == 0:
        where = "in the filter" if data_set == "all" else f"of the {data_set} set in the filter"
        raise UserError(f"No patients {where} have {source.label(marker)} and {endpoint.upper()}. "
                        "Widen the cohort filter or choose another data set.")
    return (endpoint, marker, data_set, part[time_col].to_numpy(float), part[event_col].to_numpy(float),
            part["_marker"].to_numpy(float))


def marker_label(source, marker: str) -> str:
    """The marker's label; the derived score columns get a short one."""
    for endpoint in ENDPOINTS:
        if marker == score_column(endpoint):
            return f"Pathomics {endpoint.upper()} score"
    return source.label(marker)


def _matrix(values: np.ndarray) -> list[list[float | None]]:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in values]


def build_cutpoint(source, frame, params: dict[str, Any]) -> CutpointFigure:
    """The cutpoint explorer of the filtered cohort (see the module docstring)."""
    from pathomics_desktop.stats.cutpoint import maxstat_cutpoint, validate_cut, xtile

    endpoint, marker, data_set, t, e, x = marker_data(source, frame, params)
    minprop = float(params.get("minprop") or 0.1)
    if int(e.sum()) < 2:
        raise UserError(f"{int(e.sum())} {endpoint.upper()} event(s) among the {t.size} patients: "
                        "a cutpoint needs at least two")
    ms = maxstat_cutpoint(t, e, x, minprop=minprop)
    xt = xtile(t, e, x, minprop=minprop, n_perm=0, max_cuts=int(params.get("xtile_cuts") or DEFAULT_XTILE_CUTS))
    chosen_cut = ms.cutpoint if params.get("cut") is None else float(params["cut"])
    notes: list[str] = []
    try:
        chosen = validate_cut(t, e, x, chosen_cut)
    except UserError as exc:
        chosen = None
        notes.append(f"cut {chosen_cut:.4g}: {exc}")
    reps = int(params.get("bootstrap") or 0)
    boot = None
    if reps:
        boot = bootstrap_stability(t, e, x, cut=chosen_cut, reps=reps, seed=int(params.get("seed") or 0),
                                   minprop=minprop, window=params.get("window"))
    reference = params.get("reference_cut")
    return CutpointFigure(
        endpoint=endpoint, marker=marker, marker_label=marker_label(source, marker), unit=source.unit(marker),
        data_set=data_set, n=int(t.size), events=int(e.sum()), minprop=minprop,
        cuts=[float(c) for c in ms.cuts], statistics=[float(s) for s in ms.statistics],
        cutpoint=ms.cutpoint, statistic=ms.statistic, p_raw=ms.p_raw, p_lau94=ms.p_adjusted,
        chosen_cut=chosen_cut, chosen=chosen,
        xtile_cuts=[float(c) for c in xt.pair_cuts], xtile_chi2=_matrix(xt.chi2_pairs),
        xtile_single_cut=xt.cutpoint, xtile_single_chi2=xt.statistic, xtile_pair=xt.pair,
        xtile_pair_chi2=xt.pair_statistic, xtile_pair_p_raw=xt.pair_p_raw, bootstrap=boot,
        reference_cut=None if reference is None else float(reference), notes=notes)
