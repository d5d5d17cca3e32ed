"""What the study set-up view shows, as plain data (Qt-free): the codebook, the patient flow
laid out as the reference study's Figure 1, and the data sets with their events.

* :func:`flow_diagram` turns a :class:`~pathomics_desktop.cohort.flow.Flow` into boxes on a
  grid (column x, row y in box units) and the arrows between them; the GUI only draws them.
  Per center: *Enrolled* (row 0), *Excluded* by reason beside the line down (row 1),
  *Included* (row 2); then the data sets (row 3): the development centers' included patients
  feed the training and internal validation sets, every other center's the external set.
* :func:`split_overview` counts patients per center x data set and the events per data set
  (deaths for OS; recurrence or death for RFS), from the analysis rows of
  :func:`~pathomics_desktop.cohort.table.build_rows`, so that they equal the cohort table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pathomics_desktop.cohort.flow import Flow, patient_flow
from pathomics_desktop.cohort.table import EXCLUSION_REASONS, build_rows
from pathomics_desktop.registry.codebook import Codebook, Variable

DATA_SETS = ("training", "internal", "external")
DATA_SET_LABELS = {"training": "Training set", "internal": "Internal validation set",
                   "external": "External validation set", "unassigned": "Not yet assigned"}


# -- the flow diagram -------------------------------------------------------------------------
@dataclass
class Box:
    key: str
    title: str
    count: int
    lines: list[str]
    x: float          # column, in box units
    y: int            # row
    kind: str         # "enrolled", "excluded", "included", "set"


@dataclass
class Arrow:
    source: str
    target: str
    kind: str         # "down" (elbow from the bottom to the top) or "side" (from the line down)


@dataclass
class Diagram:
    boxes: list[Box] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)

    def box(self, key: str) -> Box:
        return next(b for b in self.boxes if b.key == key)

    def to_dict(self) -> dict[str, Any]:
        return {"boxes": [asdict(b) for b in self.boxes], "arrows": [asdict(a) for a in self.arrows]}


def flow_diagram(flow: Flow) -> Diagram:
    """Boxes and arrows of the patient flow (see the module docstring)."""
    diagram = Diagram()
    feeds: dict[str, list[tuple[str, int, float]]] = {s: [] for s in (*DATA_SETS, "unassigned")}
    for i, c in enumerate(flow.centers):
        x = 2.0 * i
        role = "development" if c.role == "development" else "external"
        excluded = sum(c.excluded.values())
        diagram.boxes += [
            Box(f"enrolled:{c.center}", f"Center {c.center} ({role})", c.enrolled,
                [f"Enrolled: n = {c.enrolled}"], x, 0, "enrolled"),
            Box(f"excluded:{c.center}", "Excluded", excluded,
                [f"Excluded: n = {excluded}"] + [f"{reason}: {c.excluded[reason]}"
                                                 for reason in EXCLUSION_REASONS if c.excluded[reason]],
                x + 1, 1, "excluded"),
            Box(f"included:{c.center}", "Included", c.included, [f"Included: n = {c.included}"], x, 2,
                "included"),
        ]
        diagram.arrows += [Arrow(f"enrolled:{c.center}", f"included:{c.center}", "down"),
                           Arrow(f"enrolled:{c.center}", f"excluded:{c.center}", "side")]
        for name in (("training", "internal") if role == "development" else ("external",)):
            feeds[name].append((c.center, getattr(c, name), x))
        if c.unassigned:
            feeds["unassigned"].append((c.center, c.unassigned, x))
    positions: dict[str, float] = {"unassigned": 2.0 * len(flow.centers)}
    dev_x = [x for _c, _n, x in feeds["training"]]
    if dev_x:
        positions["training"] = sum(dev_x) / len(dev_x)
        positions["internal"] = positions["training"] + 1
    ext_x = [x for _c, _n, x in feeds["external"]]
    if ext_x:  # centred under the external centers' columns (each is 2 units wide)
        positions["external"] = sum(ext_x) / len(ext_x) + (0.5 if len(ext_x) > 1 else 0.0)
    for name, sources in feeds.items():
        if not sources:
            continue
        total = sum(n for _c, n, _x in sources)
        lines = [f"{DATA_SET_LABELS[name]}: n = {total}"]
        if len(sources) > 1:
            lines += [f"center {c}: {n}" for c, n, _x in sources]
        diagram.boxes.append(Box(f"set:{name}", DATA_SET_LABELS[name], total, lines, positions[name], 3, "set"))
        diagram.arrows += [Arrow(f"included:{c}", f"set:{name}", "down") for c, _n, _x in sources]
    return diagram


# -- the data sets ----------------------------------------------------------------------------
def split_overview(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per center x data set and events per data set, from analysis rows.

    ``centers``: ``{center: {"role", "included", "training", "internal", "external",
    "unassigned"}}``; ``sets``: ``{set: {"patients", "os_events", "rfs_events", "centers"}}``
    where the events count included patients with ``os_event == 1`` (death) and
    ``rfs_event == 1`` (recurrence or death).
    """
    centers: dict[str, dict[str, Any]] = {}
    sets = {s: {"patients": 0, "os_events": 0, "rfs_events": 0, "centers": []}
            for s in (*DATA_SETS, "unassigned")}
    for row in rows:
        if not row["included"]:
            continue
        entry = centers.setdefault(row["center"], {"role": row["center_role"], "included": 0,
                                                   **{s: 0 for s in (*DATA_SETS, "unassigned")}})
        name = row["split"] if row["split"] in DATA_SETS else "unassigned"
        entry["included"] += 1
        entry[name] += 1
        target = sets[name]
        target["patients"] += 1
        target["os_events"] += int(row["os_event"] == 1)
        target["rfs_events"] += int(row["rfs_event"] == 1)
        if row["center"] not in target["centers"]:
            target["centers"].append(row["center"])
    order = sorted(centers, key=lambda c: (centers[c]["role"] != "development", c))
    return {"centers": {c: centers[c] for c in order}, "sets": sets}


# -- the codebook -----------------------------------------------------------------------------
def _limits(low: Any, high: Any) -> str:
    if low is None and high is None:
        return ""
    return f"{'' if low is None else low} to {'' if high is None else high}".strip()


def variable_row(var: Variable) -> dict[str, Any]:
    """One codebook variable as the editor lists it (codes with their accepted labels)."""
    codes = ""
    if var.type == "category":
        codes = "; ".join(f"{code} ({', '.join(syn)})" if syn else code for code, syn in var.codes.items())
    return {"name": var.name, "label": var.label, "type": var.type, "unit": var.unit, "codes": codes,
            "limits": _limits(var.min, var.max), "soft_limits": _limits(var.soft_min, var.soft_max),
            "required": var.required, "identifier": var.identifier,
            "origin": "user-defined" if var.is_custom else "built-in"}


@dataclass
class StudyOverview:
    variables: list[dict[str, Any]]
    flow: Flow
    diagram: Diagram
    splits: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"variables": self.variables, "flow": self.flow.to_dict(), "splits": self.splits}


def study_overview(registry) -> StudyOverview:
    """Everything the study set-up view draws, read in one session."""
    with registry.session() as session:
        book = Codebook.for_session(session)
        flow = patient_flow(session)
        rows, _columns = build_rows(session)
    return StudyOverview(variables=[variable_row(v) for v in book], flow=flow,
                         diagram=flow_diagram(flow), splits=split_overview(rows))
