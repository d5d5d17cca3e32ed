"""Regions of interest as QuPath GeoJSON: import, validation, export (level-0 pixels).

QuPath writes a ``FeatureCollection`` (or a bare ``Feature``, or a JSON list of features)
whose geometries are ``Polygon`` / ``MultiPolygon`` rings in level-0 pixel coordinates
(x right, y down), with ``properties.classification.name`` for the class. Holes (inner
rings) are excluded areas.

Which annotations are tiled (:func:`select_rois`): those whose class matches the tile
classes (glob patterns, case-insensitive; the project setting ``[slides] roi_classes``,
by default ``Tumor``, ``Tumour``, ``Region*``), minus (shapely difference) every annotation
of QuPath's ``Ignore*`` class or of an exclusion class (``[slides] exclude_classes``).
Other classes (Stroma, ...) stay in the stored file for display and are not tiled.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from pathomics_desktop.errors import UserError
from pathomics_desktop.limits import MAX_GEOJSON_BYTES, check_file_size

DEFAULT_ROI_CLASSES: tuple[str, ...] = ("Tumor", "Tumour", "Region*")
IGNORE_CLASSES: tuple[str, ...] = ("Ignore*",)  # QuPath's class for areas to leave out
UNCLASSIFIED = "(unclassified)"


@dataclass
class Roi:
    """One ROI: a shapely (Multi)Polygon in level-0 pixels, plus its names."""

    geometry: Any  # shapely Polygon | MultiPolygon
    name: str = ""
    classification: str = ""
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The ROI's display name: name, else classification, else 'roi'."""
        return self.name or self.classification or "roi"


def _classification(props: dict[str, Any]) -> str:
    """QuPath's class name: ``classification.name`` (0.2-0.5), ``classification.names``
    joined by ': ' (a derived class), or a plain string."""
    cls = props.get("classification")
    if isinstance(cls, dict):
        if cls.get("name"):
            return str(cls["name"])
        names = cls.get("names")
        if isinstance(names, list):
            return ": ".join(str(n) for n in names if n)
        return ""
    if isinstance(cls, str):
        return cls
    return ""


def _geometry_from_json(geom: Any, where: str):
    import shapely
    from shapely.geometry import shape

    if not isinstance(geom, dict) or "type" not in geom:
        raise UserError(f"{where}: geometry is missing or has no 'type'")
    kind = geom["type"]
    if kind not in ("Polygon", "MultiPolygon", "GeometryCollection"):
        return None  # points, lines (e.g. QuPath detections or arrows) are not areas
    try:
        g = shape(geom)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise UserError(f"{where}: malformed {kind} coordinates ({exc})") from exc
    if kind == "GeometryCollection":
        polys = [p for p in getattr(g, "geoms", []) if p.geom_type in ("Polygon", "MultiPolygon")]
        if not polys:
            return None
        g = shapely.union_all(polys)
    if not g.is_valid:
        g = shapely.make_valid(g)
        if g.geom_type == "GeometryCollection":
            g = shapely.union_all([p for p in g.geoms if p.geom_type in ("Polygon", "MultiPolygon")])
    if g.is_empty or g.area <= 0:
        return None
    return g


def parse_rois(doc: Any, *, source: str = "GeoJSON") -> list[Roi]:
    """ROIs from a parsed GeoJSON document (FeatureCollection, Feature, list, geometry)."""
    if isinstance(doc, list):
        features = doc
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise UserError(f"{source}: FeatureCollection without a 'features' list")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, dict) and doc.get("type") in ("Polygon", "MultiPolygon", "GeometryCollection"):
        features = [{"type": "Feature", "geometry": doc, "properties": {}}]
    else:
        raise UserError(f"{source}: not GeoJSON (expected a FeatureCollection, a Feature or a geometry)")
    rois: list[Roi] = []
    for i, feat in enumerate(features):
        where = f"{source}: feature {i + 1}"
        if not isinstance(feat, dict):
            raise UserError(f"{where}: not a JSON object")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise UserError(f"{where}: 'properties' is not an object")
        geom = _geometry_from_json(feat.get("geometry"), where)
        if geom is None:
            continue
        rois.append(Roi(geometry=geom, name=str(props.get("name") or ""),
                        classification=_classification(props), properties=props))
    if not rois:
        raise UserError(f"{source}: no polygon ROI found")
    return rois


def load_rois(path: str | os.PathLike[str], *, slide_size: tuple[int, int] | None = None,
              classes: Iterable[str] | None = None) -> list[Roi]:
    """Read QuPath GeoJSON ROIs from ``path``.

    ``slide_size`` (level-0 width, height) rejects ROIs that lie entirely outside the
    slide and clips the others to it; ``classes`` keeps only ROIs whose classification (or
    name) is listed.
    """
    p = Path(path)
    try:
        check_file_size(p, MAX_GEOJSON_BYTES, "GeoJSON file")
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise UserError(f"ROI file {p}: not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"ROI file {p}: cannot read ({exc})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"ROI file {p}: malformed JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from exc
    rois = parse_rois(doc, source=f"ROI file {p}")
    if classes is not None:
        wanted = {c.lower() for c in classes}
        rois = [r for r in rois if r.classification.lower() in wanted or r.name.lower() in wanted]
        if not rois:
            raise UserError(f"ROI file {p}: no ROI of class {sorted(wanted)}")
    if slide_size is not None:
        rois = clip_rois_to_slide(rois, slide_size, source=f"ROI file {p}")
    return rois


def clip_rois_to_slide(rois: list[Roi], slide_size: tuple[int, int], *, source: str = "ROI") -> list[Roi]:
    """Clip ROIs to the slide rectangle; a UserError if one lies wholly outside it."""
    from shapely.geometry import box

    width, height = slide_size
    frame = box(0, 0, width, height)
    out = []
    for roi in rois:
        clipped = roi.geometry.intersection(frame)
        if clipped.is_empty or clipped.area <= 0:
            minx, miny, maxx, maxy = roi.geometry.bounds
            raise UserError(f"{source}: ROI '{roi.label}' ({minx:.0f},{miny:.0f})-({maxx:.0f},{maxy:.0f}) "
                            f"lies outside the slide ({width} x {height} px)")
        out.append(Roi(clipped, roi.name, roi.classification, roi.properties))
    return out


def class_matches(name: str, patterns: Iterable[str]) -> bool:
    """True when the class ``name`` matches one of the glob ``patterns`` (case-insensitive;
    ``*`` matches anything, so ``Ignore*`` matches QuPath's ``Ignore*`` class)."""
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, str(p).lower()) for p in patterns)


def _is_annotation(roi: Roi) -> bool:
    """QuPath annotations (``objectType`` absent or ``annotation``); detections, cells and
    tiles are not regions to tile."""
    kind = roi.properties.get("objectType", roi.properties.get("object_type", ""))
    return str(kind or "annotation").lower() == "annotation"


@dataclass
class RoiSelection:
    """The ROIs to tile and the bookkeeping of the classes found (for messages and JSON).

    ``rois``: the tiled annotations with the excluded areas already subtracted;
    ``classes_found``: class -> number of annotations (``(unclassified)`` for none);
    ``tiled`` / ``subtracted`` / ``not_tiled``: the classes in each role.
    """

    rois: list[Roi]
    classes_found: dict[str, int]
    tiled: list[str]
    subtracted: list[str]
    not_tiled: list[str]
    roi_classes: list[str]
    exclude_classes: list[str]
    subtracted_area: float = 0.0  # level-0 px^2 removed from the tiled area
    other_objects: int = 0  # detections, cells, tiles: never tiled

    def summary(self) -> str:
        """One line: the classes found and what was done with each."""
        return selection_summary(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"classes_found": dict(self.classes_found), "tiled": list(self.tiled),
                "subtracted": list(self.subtracted), "not_tiled": list(self.not_tiled),
                "roi_classes": list(self.roi_classes), "exclude_classes": list(self.exclude_classes),
                "subtracted_area": round(float(self.subtracted_area), 1), "other_objects": self.other_objects,
                "n_rois": len(self.rois)}


def selection_summary(selection: dict[str, Any]) -> str:
    """A :meth:`RoiSelection.to_dict` as one line, e.g. ``classes found: Tumor (1), Stroma (1),
    Ignore* (1); tiled: Tumor; subtracted: Ignore*; not tiled: Stroma``."""
    found = ", ".join(f"{c} ({n})" for c, n in selection["classes_found"].items()) or "none"
    parts = [f"classes found: {found}", f"tiled: {', '.join(selection['tiled']) or 'none'}"]
    if selection["subtracted"]:
        parts.append(f"subtracted: {', '.join(selection['subtracted'])}")
    if selection["not_tiled"]:
        parts.append(f"not tiled: {', '.join(selection['not_tiled'])}")
    if selection.get("other_objects"):
        parts.append(f"{selection['other_objects']} non-annotation objects ignored")
    return "; ".join(parts)


def _polygonal(geom):
    """The polygonal part of a shapely geometry (difference can leave lines or points)."""
    import shapely

    if geom.is_empty:
        return geom
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def select_rois(rois: list[Roi], roi_classes: Iterable[str] | None = None,
                exclude_classes: Iterable[str] | None = None, *, source: str = "ROI") -> RoiSelection:
    """Annotations to tile: class in ``roi_classes`` (default :data:`DEFAULT_ROI_CLASSES`),
    minus the union of the ``Ignore*`` and ``exclude_classes`` annotations.

    An exclusion wins over a tile class. Unclassified annotations are tiled only when no
    annotation has a tile class (a file of plain drawings); ``*`` as a tile class takes
    every class. Raises UserError (naming ``source`` and the classes found) when nothing is
    left to tile.
    """
    import shapely

    patterns = list(DEFAULT_ROI_CLASSES if roi_classes is None else roi_classes)
    excludes = list(exclude_classes or ())
    annotations = [r for r in rois if _is_annotation(r)]
    found: dict[str, int] = {}
    for r in annotations:
        key = r.classification or UNCLASSIFIED
        found[key] = found.get(key, 0) + 1
    excluded = [bool(r.classification) and class_matches(r.classification, IGNORE_CLASSES + tuple(excludes))
                for r in annotations]
    drop = [r for r, ex in zip(annotations, excluded) if ex]
    take = [r for r, ex in zip(annotations, excluded) if not ex and class_matches(r.classification, patterns)]
    if not take:
        take = [r for r in annotations if not r.classification]
    tiled_names = sorted({r.classification or UNCLASSIFIED for r in take})
    dropped_names = sorted({r.classification for r in drop})
    others = [c for c in found if c not in tiled_names and c not in dropped_names]

    def fail(why: str) -> UserError:
        return UserError(f"{source}: {why}; classes found: {', '.join(found) or 'none'}; tile classes "
                         f"{patterns}, exclusions {list(IGNORE_CLASSES) + excludes} (change them with --roi-class / "
                         "--exclude-class or the project setting [slides] roi_classes / exclude_classes)")

    if not take:
        raise fail("no annotation of the classes to tile")
    out = take
    removed = 0.0
    if drop:
        cut = shapely.union_all([r.geometry for r in drop])
        out = []
        for r in take:
            g = _polygonal(r.geometry.difference(cut))
            removed += r.geometry.area - (g.area if not g.is_empty else 0.0)
            if not g.is_empty and g.area > 0:
                out.append(Roi(g, r.name, r.classification, r.properties))
        if not out:
            raise fail("the excluded annotations cover every annotation to tile")
    return RoiSelection(out, found, tiled_names, dropped_names, others, patterns, excludes,
                        subtracted_area=removed, other_objects=len(rois) - len(annotations))


def load_roi_selection(path: str | os.PathLike[str], *, slide_size: tuple[int, int] | None = None,
                       roi_classes: Iterable[str] | None = None,
                       exclude_classes: Iterable[str] | None = None) -> RoiSelection:
    """:func:`load_rois` then :func:`select_rois`: the ROIs of ``path`` to tile."""
    rois = load_rois(path, slide_size=slide_size)
    return select_rois(rois, roi_classes, exclude_classes, source=f"ROI file {Path(path)}")


#: tiles per shapely call in :func:`roi_coverage`: each call holds the GIL, so a slide's
#: thousands of candidate tiles are measured in chunks to let a GUI thread run in between
COVERAGE_CHUNK = 1024


def roi_coverage(rois: list[Roi], x: np.ndarray, y: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Per tile: the fraction of the square ``[x, x+size) x [y, y+size)`` inside the ROIs
    (holes excluded) and the index of the ROI covering it most (-1 if none)."""
    import shapely

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    if not rois or n == 0:
        return np.zeros(n), np.full(n, -1, dtype=np.int32)
    union = shapely.union_all([r.geometry for r in rois])
    shapely.prepare(union)
    for roi in rois:
        shapely.prepare(roi.geometry)
    parts = [_coverage_chunk(rois, union, x[i:i + COVERAGE_CHUNK], y[i:i + COVERAGE_CHUNK], size)
             for i in range(0, n, COVERAGE_CHUNK)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _coverage_chunk(rois: list[Roi], union, x: np.ndarray, y: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    import shapely

    n = x.size
    best = np.full(n, -1, dtype=np.int32)
    boxes = shapely.box(x, y, x + size, y + size)
    total = np.zeros(n)
    hit = shapely.intersects(union, boxes)
    if hit.any():
        total[hit] = shapely.area(shapely.intersection(boxes[hit], union)) / (size * size)
    best_area = np.zeros(n)
    idx = np.flatnonzero(hit)
    for k, roi in enumerate(rois):
        if idx.size == 0:
            break
        g = roi.geometry
        inter = shapely.intersects(g, boxes[idx])
        if not inter.any():
            continue
        sel = idx[inter]
        area = shapely.area(shapely.intersection(boxes[sel], g))
        better = area > best_area[sel]
        best[sel[better]] = k
        best_area[sel[better]] = area[better]
    return np.clip(total, 0.0, 1.0), best


def _geometry_to_json(geom) -> dict[str, Any]:
    from shapely.geometry import mapping

    out = mapping(geom)
    return json.loads(json.dumps(out))  # tuples -> lists


def rois_to_geojson(rois: list[Roi]) -> dict[str, Any]:
    """A QuPath-readable FeatureCollection of annotations."""
    features = []
    for roi in rois:
        props = {"objectType": "annotation"}
        if roi.name:
            props["name"] = roi.name
        if roi.classification:
            props["classification"] = {"name": roi.classification, "color": [200, 0, 0]}
        features.append({"type": "Feature", "geometry": _geometry_to_json(roi.geometry), "properties": props})
    return {"type": "FeatureCollection", "features": features}


def tiles_to_geojson(x: Iterable[int], y: Iterable[int], size: Iterable[int] | int,
                     tissue_fraction: Iterable[float] | None = None,
                     roi: Iterable[str] | None = None, classification: str = "Tile") -> dict[str, Any]:
    """The tile grid as QuPath tile objects (squares in level-0 pixels) with measurements."""
    xs, ys = list(x), list(y)
    sizes = [size] * len(xs) if isinstance(size, (int, np.integer)) else list(size)
    tf = list(tissue_fraction) if tissue_fraction is not None else [None] * len(xs)
    names = list(roi) if roi is not None else [""] * len(xs)
    features = []
    for xi, yi, s, t, r in zip(xs, ys, sizes, tf, names):
        xi, yi, s = int(xi), int(yi), int(s)
        ring = [[xi, yi], [xi + s, yi], [xi + s, yi + s], [xi, yi + s], [xi, yi]]
        props: dict[str, Any] = {"objectType": "tile", "classification": {"name": classification, "color": [0, 120, 200]}}
        if r:
            props["name"] = str(r)
        if t is not None:
            props["measurements"] = {"tissue_fraction": round(float(t), 4)}
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props})
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    """Write GeoJSON atomically (temporary file, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(p)
    return p
