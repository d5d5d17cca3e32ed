"""Backbone factory, local weight loading, MAC counting and the ``pathomics models`` CLI."""

from __future__ import annotations

import json

import pytest
import torch

from pathomics_desktop.errors import UserError
from pathomics_desktop.learning.backbones import (
    create_backbone,
    list_backbones,
    load_pretrained_weights,
)
from pathomics_desktop.learning.complexity import count_macs, count_parameters, model_info
from tests.learning.helpers import TINY_CROSSFORMER


def test_all_study_backbones_listed():
    assert list_backbones() == ["resnet18", "resnet50", "densenet121", "crossformer_t",
                                "crossformer_s", "crossformer_b", "crossformer_l"]


@pytest.mark.parametrize("name,head", [("resnet18", "fc"), ("resnet50", "fc"),
                                       ("densenet121", "classifier"), ("crossformer_s", "head")])
def test_create_backbone_builds_head_with_num_classes(name, head):
    with torch.device("meta"):
        model = create_backbone(name, 3)
    assert getattr(model, head).out_features == 3
    assert model.backbone_name == name and model.weight_report is None


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(UserError, match="unknown model 'vit_huge'"):
        create_backbone("vit_huge", 2)
    with pytest.raises(UserError, match="num_classes"):
        create_backbone("resnet18", 0)


def test_imagenet_weights_load_all_but_mismatched_head(tmp_path):
    torch.manual_seed(0)
    source = create_backbone("resnet18", 1000)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(source.state_dict(), path)
    model = create_backbone("resnet18", 2, pretrained_weights=path)
    report = model.weight_report
    assert sorted(report.skipped_head) == ["fc.bias", "fc.weight"]
    assert report.missing == []  # the skipped head is reported as such, not as missing
    assert report.unexpected == []
    assert report.loaded == len(source.state_dict()) - 2
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert model.fc.weight.shape == (2, 512)


def test_same_class_count_loads_head_too_from_safetensors(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = create_backbone("crossformer_t", 4, **TINY_CROSSFORMER)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    model = create_backbone("crossformer_t", 4, pretrained_weights=path, **TINY_CROSSFORMER)
    assert model.weight_report.skipped_head == [] and model.weight_report.missing == []
    images = torch.randn(1, 3, 64, 64)
    source.eval(), model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images), source(images))


def test_official_style_nested_checkpoint_with_other_head(tmp_path):
    torch.manual_seed(2)
    source = create_backbone("crossformer_t", 1000, **TINY_CROSSFORMER)
    path = tmp_path / "crossformer-t.pth"
    torch.save({"model": source.state_dict(), "epoch": 299}, path)
    model = create_backbone("crossformer_t", 2, pretrained_weights=path, **TINY_CROSSFORMER)
    assert sorted(model.weight_report.skipped_head) == ["head.bias", "head.weight"]
    assert torch.equal(model.patch_embed.projs[3].weight, source.patch_embed.projs[3].weight)


def test_wrong_architecture_and_bad_files_are_user_errors(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(create_backbone("resnet18", 2).state_dict(), path)
    with torch.device("meta"):
        resnet50 = create_backbone("resnet50", 2)
    with pytest.raises(UserError, match="does not fit model resnet50"):
        load_pretrained_weights(resnet50, path)
    with pytest.raises(UserError, match="not found"):
        create_backbone("resnet18", 2, pretrained_weights=tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read weight file"):
        create_backbone("resnet18", 2, pretrained_weights=garbage)
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, other)
    with pytest.raises(UserError, match="shares no tensor names"):
        create_backbone("resnet18", 2, pretrained_weights=other)


class _RunsCodeWhenUnpickled:
    """Unpickling calls pathlib.Path.touch(marker): a weights-only load must not run it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_config_objects_in_training_checkpoints_are_tolerated(tmp_path):
    import argparse

    torch.manual_seed(0)
    source = create_backbone("resnet18", 2)
    path = tmp_path / "training_checkpoint.pth"  # like an official training checkpoint
    torch.save({"model": source.state_dict(), "config": argparse.Namespace(lr=0.1),
                "epoch": 299}, path)
    model = create_backbone("resnet18", 2, pretrained_weights=path)
    assert model.weight_report.missing == [] and model.weight_report.skipped_head == []
    assert torch.equal(model.fc.weight, source.fc.weight)


def test_code_in_a_weight_file_is_never_executed(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"fc.bias": torch.zeros(2)}, "x": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(UserError, match="cannot read weight file"):
        create_backbone("resnet18", 2, pretrained_weights=path)
    assert not marker.exists()


def test_macs_match_published_values():
    info = model_info("resnet50", num_classes=1000, input_size=224)
    assert info["params"] == 25_557_032
    assert info["gmacs"] == pytest.approx(4.09, abs=0.02)  # He et al.: 3.8-4.1 G "FLOPs"
    assert model_info("crossformer_s", 1000, 224)["gmacs"] == pytest.approx(4.9, abs=0.05)
    assert model_info("crossformer_t", 1000, 224)["gmacs"] == pytest.approx(2.9, abs=0.05)
    assert model_info("resnet18", 1000, 224)["gmacs"] == pytest.approx(1.81, abs=0.02)


def test_macs_scale_with_input_size_and_real_models_are_not_moved():
    small = model_info("resnet18", 2, 224)["gmacs"]
    large = model_info("resnet18", 2, 448)["gmacs"]
    assert large == pytest.approx(4 * small, rel=0.01)
    model = create_backbone("crossformer_t", 2, **TINY_CROSSFORMER)
    macs = count_macs(model, 64)
    assert macs > 0 and next(model.parameters()).device.type == "cpu"
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


def test_cli_models_list_and_info(capsys):
    from pathomics_desktop.cli import main

    assert main(["models", "list", "--json"]) == 0
    names = [row["name"] for row in json.loads(capsys.readouterr().out)]
    assert "crossformer_s" in names and "densenet121" in names
    assert main(["models", "info", "resnet50", "--num-classes", "1000", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) >= {"name", "params", "gmacs", "input_size"}
    assert info["input_size"] == 224 and info["params"] == 25_557_032
    assert main(["models", "info", "crossformer_s", "--input-size", "512", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["input_size"] == 512 and info["gmacs"] > 20
    assert main(["models", "info", "resnet18", "--input-size", "8", "--json"]) == 2
    assert "input size" in capsys.readouterr().err


def test_cli_cam_writes_overlay_png(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from pathomics_desktop.cli import main

    torch.manual_seed(0)
    weights = tmp_path / "resnet18_trained.pt"
    torch.save(create_backbone("resnet18", 2).state_dict(), weights)
    tile = tmp_path / "tile.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tile)
    out = tmp_path / "cam.png"
    assert main(["models", "cam", "resnet18", str(tile), "--weights", str(weights),
                 "--class", "1", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["class"] == 1 and abs(sum(result["probabilities"]) - 1) < 1e-5
    with Image.open(out) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    imagenet = tmp_path / "imagenet.pt"
    torch.save(create_backbone("resnet18", 1000).state_dict(), imagenet)
    assert main(["models", "cam", "resnet18", str(tile), "--weights", str(imagenet),
                 "--out", str(out)]) == 2
    assert "do not hold a trained 2-class resnet18" in capsys.readouterr().err
    assert main(["models", "cam", "resnet18", str(tmp_path / "nope.png"), "--weights",
                 str(weights), "--out", str(out)]) == 2
