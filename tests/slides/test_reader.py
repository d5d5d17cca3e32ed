"""Reader, metadata, MPP plausibility, hashing, bad input and `pathomics slides info`."""

from __future__ import annotations

import argparse
import hashlib
import json

import pytest

from pathomics_desktop.errors import UserError
from pathomics_desktop.slides import cli as slides_cli
from pathomics_desktop.slides.reader import (apply_mpp_override, check_mpp, read_slide_metadata, require_mpp,
                                             sha256_file)


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pathomics")
    sub = parser.add_subparsers()
    slides_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_metadata_of_synthetic_slide(slide_a):
    meta = read_slide_metadata(slide_a.path)
    assert meta.vendor == "aperio" and meta.scanner == "SYNTHETIC"
    assert (meta.width, meta.height) == (3072, 3072)
    assert meta.levels == len(meta.level_dimensions) == len(meta.level_downsamples) >= 2
    assert meta.mpp_x == meta.mpp_y == 0.25 and meta.objective_power == 40
    assert meta.mpp_status == "ok" and meta.effective_mpp == 0.25


def test_slides_info_json(slide_a, capsys):
    assert _run_cli(["slides", "info", slide_a.path, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("vendor", "width", "height", "levels", "mpp_x", "mpp_y", "objective_power"):
        assert key in out
    assert out["vendor"] == "aperio" and out["width"] == 3072 and out["mpp_x"] == 0.25


def test_slides_info_bad_file_exit_status(tmp_path, capsys):
    bad = tmp_path / "notes.svs"
    bad.write_text("not a slide")
    assert _run_cli(["slides", "info", str(bad), "--json"]) == 2
    assert "notes.svs" in capsys.readouterr().err


@pytest.mark.parametrize("mpp,power,status", [
    (0.25, 40, "ok"), (0.2527, 40, "ok"), (0.5, 20, "ok"), (0.23, 20, "implausible"),
    (0.5, 40, "implausible"), (None, 40, "missing"), (0.25, None, "ok"), (50.0, None, "implausible"),
])
def test_check_mpp(mpp, power, status):
    assert check_mpp(mpp, mpp, power)[0] == status


def test_nonsquare_pixels_flagged():
    assert check_mpp(0.25, 0.5, None)[0] == "implausible"


def test_mpp_override_is_used_and_validated(slide_dir):
    from pathomics_desktop.demo.synthetic_slides import write_synthetic_slide

    p = slide_dir / "implausible.svs"
    write_synthetic_slide(p, width=512, height=512, mpp=0.23, app_mag=20, seed=9)
    meta = read_slide_metadata(p)
    with pytest.raises(UserError, match="implausible"):
        require_mpp(meta)  # never silently assumed
    apply_mpp_override(meta, 0.25)
    assert meta.mpp_status == "override" and require_mpp(meta) == 0.25
    with pytest.raises(UserError, match="override"):
        apply_mpp_override(meta, -1)


def test_sha256_file_matches_hashlib(slide_a):
    data = open(slide_a.path, "rb").read()
    assert sha256_file(slide_a.path, chunk=1000) == hashlib.sha256(data).hexdigest()


def test_bad_inputs_name_the_file(tmp_path, slide_a):
    with pytest.raises(UserError, match="missing.svs.*not found"):
        read_slide_metadata(tmp_path / "missing.svs")
    text = tmp_path / "table.csv"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="table.csv"):
        read_slide_metadata(text)
    empty = tmp_path / "empty.svs"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="empty.svs.*empty"):
        read_slide_metadata(empty)
    data = open(slide_a.path, "rb").read()
    trunc = tmp_path / "truncated.svs"
    trunc.write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match="truncated.svs"):
        read_slide_metadata(trunc)
