"""``pathomics bench import``: validating and importing N synthetic patients, against a plain
pandas read of the same file, measured in the same run.

Prints rows per second for: the pandas baseline (``read_csv``), codebook validation (read +
every cell parsed + cross-field checks, no database) and the full import (validation plus the
all-or-nothing write with the audit trail into a fresh SQLite registry), with ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def make_patient_file(path: Path, n: int, seed: int = 1) -> Path:
    """N synthetic patients in the canonical layout (the demo generator, repeated)."""
    import pandas as pd

    from pathomics_desktop.demo.cohort import simulate, to_spreadsheets

    base, _ = to_spreadsheets(simulate(seed=seed))
    reps = -(-n // len(base))
    frames = []
    for r in range(reps):
        chunk = base.copy()
        chunk["study_id"] = [f"SYN-B{r:02d}-{i:05d}" for i in range(len(chunk))]
        frames.append(chunk)
    frame = pd.concat(frames, ignore_index=True).iloc[:n]
    frame.to_csv(path, index=False)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pathomics bench import")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="baseline/validation repetitions (best of)")
    args = parser.parse_args(argv)

    import pandas as pd

    from pathomics_desktop.registry.codebook import Codebook
    from pathomics_desktop.registry.importer import ImportReport, _validate_patients, import_file, read_spreadsheet
    from pathomics_desktop.registry.service import init_project, open_project_registry

    with tempfile.TemporaryDirectory(prefix="pathomics-bench-") as tmp:
        tmp = Path(tmp)
        csv = make_patient_file(tmp / "patients.csv", args.patients)
        n = args.patients

        def best(fn):
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        t_pandas = best(lambda: pd.read_csv(csv))
        book = Codebook.builtin()

        def validate():
            report = ImportReport(file=csv.name, kind="patients")
            _validate_patients(read_spreadsheet(csv), report, book)
            assert not report.errors, report.errors[:3]

        t_validate = best(validate)
        registry = open_project_registry(init_project(tmp / "project", development_center="A"))
        try:
            t0 = time.perf_counter()
            report = import_file(registry, csv, development_center="A")
            t_import = time.perf_counter() - t0
        finally:
            registry.dispose()
        assert report.committed and report.created == n, report.summary()

    print(f"bench import: {n} synthetic patients (SQLite registry, audit on)")
    rows = [("pandas read_csv (baseline)", t_pandas), ("validate (codebook, all checks)", t_validate),
            ("import (validate + write + audit)", t_import)]
    for label, seconds in rows:
        print(f"  {label:<36} {seconds:8.3f} s  {n / seconds:12,.0f} rows/s  "
              f"ratio to baseline {t_pandas / seconds:8.4f}")
    return 0
