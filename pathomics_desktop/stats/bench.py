"""``pathomics bench stats``: our survival statistics against lifelines / scikit-survival.

Each line times our implementation and the peer on the same synthetic data in the same run and
prints ``ratio = peer time / our time`` plus the largest absolute difference between the two
results (they must agree). Items: Kaplan-Meier + log-rank (n = 100,000), Cox (n = 100,000,
10 covariates), Harrell's C (n = 1,000,000), 1,000 bootstrap C-indices (n = 1,000) and
td-AUC at 3 times (n = 100,000). ``--quick`` uses small sizes (for tests).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

LINE_FORMAT = "{name:<34} ours {ours:9.3f} s | {peer_name:<30} {peer:9.3f} s | ratio {ratio:7.1f}x | max|diff| {diff:.1e}"


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _synthetic(n: int, p: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    beta = np.linspace(0.5, -0.5, p)
    t_event = rng.exponential(scale=np.exp(-(x @ beta)))
    t_cens = rng.exponential(scale=1.5, size=n)
    time_ = np.round(np.minimum(t_event, t_cens), 4) + 1e-4
    event = t_event <= t_cens
    return time_, event, x


def _line(name, ours, peer_name, peer, diff) -> dict:
    ratio = peer / ours if ours > 0 else float("inf")
    print(LINE_FORMAT.format(name=name, ours=ours, peer_name=peer_name, peer=peer, ratio=ratio, diff=diff), flush=True)
    return {"name": name, "ours": ours, "peer": peer, "ratio": ratio, "diff": diff}


def bench_km(n: int, seed: int):
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test as ll_logrank

    from pathomics_desktop.stats import km
    t, e, x = _synthetic(n, 1, seed)
    group = (x[:, 0] > 0).astype(int)

    def ours():
        fit = km.kaplan_meier(t, e)
        lr = km.logrank_test(t, e, group)
        return fit, lr

    def peer():
        kmf = KaplanMeierFitter().fit(t, e)
        lr = ll_logrank(t[group == 0], t[group == 1], e[group == 0], e[group == 1])
        return kmf, lr

    (fit, lr), t_ours = _timed(ours)
    (kmf, lr2), t_peer = _timed(peer)
    probe = np.quantile(t, [0.1, 0.3, 0.5, 0.7])
    surv_ours = np.array([np.asarray(fit.survival)[np.searchsorted(fit.time, q, side="right") - 1] for q in probe])
    surv_peer = kmf.survival_function_at_times(probe).to_numpy()
    diff = max(float(np.max(np.abs(surv_ours - surv_peer))), abs(lr.chisq - lr2.test_statistic) / max(1.0, lr2.test_statistic))
    return _line(f"KM + log-rank (n={n:,})", t_ours, "lifelines KMF+logrank_test", t_peer, diff)


def bench_cox(n: int, p: int, seed: int):
    from lifelines import CoxPHFitter
    import pandas as pd

    from pathomics_desktop.stats import cox
    t, e, x = _synthetic(n, p, seed)
    names = [f"x{j}" for j in range(p)]
    df = pd.DataFrame(x, columns=names)
    df["T"], df["E"] = t, e.astype(int)
    fit, t_ours = _timed(lambda: cox.fit_cox_arrays(t, e, x, names=names))
    cph, t_peer = _timed(lambda: CoxPHFitter().fit(df, "T", "E"))
    diff = float(np.max(np.abs(np.asarray(fit.coef) - cph.params_.to_numpy())))
    return _line(f"Cox (n={n:,}, p={p})", t_ours, "lifelines CoxPHFitter", t_peer, diff)


def bench_harrell(n: int, seed: int):
    from lifelines.utils import concordance_index

    from pathomics_desktop.stats.concordance import harrell_c

    t, e, x = _synthetic(n, 1, seed)
    marker = x[:, 0]
    res, t_ours = _timed(lambda: harrell_c(t, e, marker, influence=False))
    c_peer, t_peer = _timed(lambda: concordance_index(t, -marker, e))
    return _line(f"Harrell's C (n={n:,})", t_ours, "lifelines concordance_index", t_peer, abs(res.c - c_peer))


def bench_bootstrap(n: int, n_boot: int, seed: int):
    from lifelines.utils import concordance_index

    from pathomics_desktop.stats.concordance import bootstrap_c

    t, e, x = _synthetic(n, 1, seed)
    marker = x[:, 0]
    res, t_ours = _timed(lambda: bootstrap_c(t, e, marker, n_boot=n_boot, seed=seed))
    # the peer evaluates exactly the same resamples (same generator call as bootstrap_c)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))

    def peer():
        return np.array([concordance_index(t[i], -marker[i], e[i]) for i in idx])

    c_peer, t_peer = _timed(peer)
    diff = float(np.max(np.abs(np.sort(res.samples) - np.sort(c_peer))))
    return _line(f"{n_boot:,} bootstrap C (n={n:,})", t_ours, "lifelines in a loop", t_peer, diff)


def bench_tdauc(n: int, seed: int):
    from sksurv.metrics import cumulative_dynamic_auc as sk_auc

    from pathomics_desktop.stats.tdroc import cumulative_dynamic_auc

    t, e, x = _synthetic(n, 1, seed)
    marker = x[:, 0]
    times = np.quantile(t[e], [0.25, 0.5, 0.75])
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = e, t
    res, t_ours = _timed(lambda: cumulative_dynamic_auc(t, e, marker, times))
    (auc_peer, _), t_peer = _timed(lambda: sk_auc(y, y, marker, times))
    return _line(f"td-AUC at 3 times (n={n:,})", t_ours, "sksurv cumulative_dynamic_auc", t_peer, float(np.max(np.abs(res.auc - auc_peer))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pathomics bench stats", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds), for tests")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv or [])
    if args.quick:
        sizes = {"km": 5_000, "cox": (3_000, 5), "harrell": 20_000, "boot": (300, 50), "tdauc": 5_000}
    else:
        sizes = {"km": 100_000, "cox": (100_000, 10), "harrell": 1_000_000, "boot": (1_000, 1_000), "tdauc": 100_000}
    print("pathomics bench stats: ratio = peer time / our time (same data, same run)", flush=True)
    bench_km(sizes["km"], args.seed)
    bench_cox(*sizes["cox"], args.seed)
    bench_harrell(sizes["harrell"], args.seed)
    bench_bootstrap(*sizes["boot"], args.seed)
    bench_tdauc(sizes["tdauc"], args.seed)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
