"""Reference values from scikit-survival for Uno's C and the cumulative/dynamic AUC.

Run from the repository root:  .venv/bin/python tests/stats/r/markers_sksurv_reference.py
Writes tests/stats/reference/markers_sksurv.json (CI does not need scikit-survival).
"""

import json

import numpy as np
import pandas as pd
import sksurv
from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc

CASES = [
    # dataset, time, event column/rule, marker, tau, AUC times
    ("lung", "time", "status==2", "age", 700.0, [180.0, 365.0, 540.0]),
    ("lung", "time", "status==2", "ph.ecog", 500.0, [90.0, 365.0]),
    ("veteran", "time", "status", "karno", 300.0, [30.0, 90.0, 180.0]),
    ("pbc", "time", "status==2", "bili", 3650.0, [1000.0, 2000.0, 3000.0]),
    ("ovarian", "futime", "fustat", "age", 800.0, [365.0, 730.0]),
]


def load(name, time, rule, marker):
    d = pd.read_csv(f"tests/stats/data/{name}.csv").dropna(subset=[time, rule.split("==")[0], marker])
    col = rule.split("==")[0]
    e = (d[col] == int(rule.split("==")[1])) if "==" in rule else (d[col] == 1)
    return d[time].to_numpy(float), e.to_numpy(bool), d[marker].to_numpy(float)


out = {"sksurv_version": sksurv.__version__, "cases": []}
for name, time, rule, marker, tau, times in CASES:
    t, e, x = load(name, time, rule, marker)
    y = np.empty(t.size, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = e, t
    uno = concordance_index_ipcw(y, y, x, tau=tau)[0]
    uno_full = concordance_index_ipcw(y, y, x)[0]
    auc = cumulative_dynamic_auc(y, y, x, times)[0]
    out["cases"].append({"dataset": name, "time": time, "event": rule, "marker": marker, "n": int(t.size), "tau": tau,
                         "uno_c": float(uno), "uno_c_no_tau": float(uno_full), "times": times, "auc": [float(a) for a in auc]})
with open("tests/stats/reference/markers_sksurv.json", "w") as fh:
    json.dump(out, fh, indent=1)
print("written")
