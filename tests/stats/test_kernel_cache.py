"""The compiled kernels load from numba's on-disk cache in a new process instead of being
compiled again (a kernel that calls another compiled closure is recompiled every time)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json
import numpy as np
from pathomics_desktop.stats import cox, cox_kernel, cutpoint_kernel, tdroc, tdroc_kernel

rng = np.random.default_rng(0)
t = rng.integers(1, 20, 80).astype(float)
e = rng.random(80) < 0.6
x = rng.normal(size=(80, 2))
cox.fit_cox_arrays(t, e, x)
order = np.lexsort((e, -t, (x[:, 0] > 0).astype(int)))
cox.fit_cox_stratum_slopes(t[order], e[order], x[order, 1], (x[order, 0] > 0).astype(int), names=["x", "x"])
tdroc.cumulative_dynamic_auc(t, e, x[:, 0], [5.0, 10.0])
cutpoint_kernel.prefix_statistics(t, e, x[:, 0])
kernels = {"efron": cox_kernel.efron_kernel()[1], "linear_predictor": cox_kernel.efron_kernel()[0],
           "slopes": cox_kernel.stratum_slopes_kernel(), "cholesky": cox_kernel.cholesky_solve(),
           "auc": tdroc_kernel._kernel(), "cutpoint": cutpoint_kernel._kernel()}
print(json.dumps({name: [sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values())]
                  for name, k in kernels.items()}))
"""


def _run() -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_kernel_is_loaded_from_the_cache_in_a_second_process():
    _run()  # compiles (and caches) whatever is not cached yet
    second = _run()
    assert {name: hits_misses[1] for name, hits_misses in second.items()} == dict.fromkeys(second, 0)
    assert all(hits >= 1 for hits, _ in second.values())
