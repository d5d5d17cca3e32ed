"""Job forms: every form names a registered job type, and its values become typed params."""

from __future__ import annotations

import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.jobs.core import job_types
from pathomics_desktop.jobs.listing import build_params, job_forms


def test_every_form_is_a_registered_job_type():
    assert set(job_forms()) <= set(job_types())
    assert {"tiling", "training", "inference", "gradcam", "signature", "signature-apply",
            "demo-pipeline"} <= set(job_forms())


def test_signature_forms_build_the_params_the_jobs_read():
    assert build_params("signature-apply", {"name": "cf_os", "all": True, "center": ""}) == {"name": "cf_os",
                                                                                           "all": True}
    assert build_params("signature-apply", {"name": "cf_os", "center": " B "}) == {"name": "cf_os", "center": "B"}
    assert build_params("signature", {"run": "cf", "replace": True, "folds": "5"}) == {
        "run": "cf", "folds": 5, "replace": True}
    with pytest.raises(UserError, match="'Signature name' is required"):
        build_params("signature-apply", {"all": True})
    assert build_params("demo-pipeline", {}) == {}
