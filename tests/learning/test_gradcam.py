"""Grad-CAM (CNN localisation on a learnt toy problem, CrossFormer token maps), overlays and
slide-level probability maps."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from pathomics_desktop.errors import UserError
from pathomics_desktop.learning.gradcam import (
    default_cam_layer,
    grad_cam,
    jet_colormap,
    render_cam_overlay,
    render_slide_map,
    slide_probability_map,
)
from tests.learning.helpers import tiny_crossformer, tiny_resnet

SIZE, SQUARE = 128, 32


def square_images(n: int, generator: torch.Generator, colour=(1.0, 1.0, 1.0)):
    """Dim noise; class 1 images carry a bright 32-px square on the 4 x 4 grid of 32-px cells."""
    images = torch.rand(n, 3, SIZE, SIZE, generator=generator) * 0.4
    labels = torch.randint(0, 2, (n,), generator=generator)
    corners = torch.randint(0, SIZE // SQUARE, (n, 2), generator=generator) * SQUARE
    for i in range(n):
        if labels[i] == 1:
            r, c = corners[i].tolist()
            images[i, :, r:r + SQUARE, c:c + SQUARE] = torch.tensor(colour)[:, None, None]
    return images, labels, corners


def train_toy(model, steps: int, seed: int = 0, lr: float = 3e-3):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        images, labels, _ = square_images(16, generator)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model


def test_cnn_grad_cam_peaks_inside_the_square_that_drives_the_class():
    torch.manual_seed(0)
    model = train_toy(tiny_resnet(), steps=30)
    images, labels, corners = square_images(32, torch.Generator().manual_seed(123))
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.7  # the toy model has learnt that the square means class 1
    positives = torch.nonzero(labels == 1).flatten()
    cams = grad_cam(model, images[positives], target_class=1)
    assert cams.shape == (len(positives), SIZE, SIZE) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    inside = []
    for cam, (r, c) in zip(cams, corners[positives].tolist()):
        peak_r, peak_c = np.unravel_index(cam.argmax(), cam.shape)
        inside.append(r <= peak_r < r + SQUARE and c <= peak_c < c + SQUARE)
    assert np.mean(inside) >= 0.9, inside


def test_crossformer_cam_peaks_inside_the_square_that_drives_the_class():
    """CrossFormer with a frozen (random) backbone and a head fitted on its pooled features
    (a linear probe): the class evidence is the square, and its CAM must peak inside it."""
    torch.manual_seed(1)
    model = tiny_crossformer(num_classes=2).eval()  # 128 px -> 4 x 4 last-stage grid
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images, labels, _ = square_images(96, torch.Generator().manual_seed(1), colour=(1, 0, 0))
    with torch.no_grad():
        pooled = model.forward_features(images).mean(dim=(2, 3))
    head = model.head
    head.weight.requires_grad_(True), head.bias.requires_grad_(True)
    optimiser = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(head(pooled), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    images, labels, corners = square_images(48, torch.Generator().manual_seed(101),
                                            colour=(1, 0, 0))
    with torch.no_grad():
        assert (model(images).argmax(1) == labels).float().mean() >= 0.8
    positives = torch.nonzero(labels == 1).flatten()
    for method in ("gradcam", "hirescam"):
        cams = grad_cam(model, images[positives], target_class=1, method=method)
        inside = [r <= np.unravel_index(cam.argmax(), cam.shape)[0] < r + SQUARE and
                  c <= np.unravel_index(cam.argmax(), cam.shape)[1] < c + SQUARE
                  for cam, (r, c) in zip(cams, corners[positives].tolist())]
        assert np.mean(inside) >= 0.9, (method, inside)


def test_grad_cam_leaves_parameter_gradients_and_mode_alone():
    torch.manual_seed(0)
    model = tiny_resnet().train()
    grad_cam(model, torch.randn(2, 3, 64, 64))
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_default_layers():
    from pathomics_desktop.learning.backbones import create_backbone

    with torch.device("meta"):
        resnet, densenet = create_backbone("resnet18", 2), create_backbone("densenet121", 2)
    assert default_cam_layer(resnet) is resnet.layer4
    assert default_cam_layer(densenet) is densenet.features
    crossformer = tiny_crossformer()
    assert default_cam_layer(crossformer) is crossformer.feature_map


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_crossformer_cam_on_last_stage_token_grid(method):
    torch.manual_seed(0)
    model = tiny_crossformer(num_classes=3)
    images = torch.randn(2, 3, 64, 96)  # last stage 2 x 3: a transposed grid would not fit
    cams = grad_cam(model, images, target_class=[0, 2], method=method)
    assert cams.shape == (2, 64, 96)
    assert np.isfinite(cams).all() and cams.min() >= 0 and cams.max() <= 1
    assert model.last_grid == (2, 3)
    tokens = grad_cam(model, images, method=method, target_layer=model.layers[-1].blocks[-1].norm1)
    assert tokens.shape == (2, 64, 96)
    small = grad_cam(model, images, target_class=1, method=method, output_size=(16, 24))
    assert small.shape == (2, 16, 24)


def test_crossformer_token_layout_matches_the_stage_grid():
    """Token-shaped target layers are laid out by ``last_grid``: the last block's norm1
    tokens equal LayerNorm over channels of the last stage's input map (which the model
    builds itself), for a non-square input."""
    from pathomics_desktop.learning.gradcam import _token_grid, tokens_to_map

    torch.manual_seed(0)
    model = tiny_crossformer().eval()
    seen = {}
    model.last_stage_input.register_forward_hook(lambda m, i, o: seen.__setitem__("map", o))
    norm1 = model.layers[-1].blocks[-1].norm1  # a token-shaped (B, h*w, C) layer
    norm1.register_forward_hook(lambda m, i, o: seen.__setitem__("tokens", o))
    with torch.no_grad():
        model(torch.randn(1, 3, 96, 160))
    grid = _token_grid(model, seen["tokens"].shape[1])
    assert grid == (3, 5)
    expected = torch.nn.functional.layer_norm(
        seen["map"].permute(0, 2, 3, 1), (seen["map"].shape[1],), norm1.weight, norm1.bias
    ).permute(0, 3, 1, 2)
    torch.testing.assert_close(tokens_to_map(seen["tokens"], grid), expected)


def test_bad_target_class_is_user_error():
    model = tiny_resnet()
    with pytest.raises(UserError, match="target class"):
        grad_cam(model, torch.randn(1, 3, 64, 64), target_class=5)
    with pytest.raises(UserError, match="method"):
        grad_cam(model, torch.randn(1, 3, 64, 64), method="guided")


def test_jet_colormap_ends():
    colours = jet_colormap(np.array([0.0, 0.5, 1.0]))
    assert colours[0].tolist() == [0, 0, 128]  # dark blue
    assert colours[1].tolist() == [128, 255, 128]
    assert colours[2].tolist() == [128, 0, 0]  # dark red


def test_overlay_png(tmp_path):
    tile = np.full((32, 48, 3), 200, dtype=np.uint8)
    heat = np.zeros((32, 48), dtype=np.float32)
    heat[:, 24:] = 1.0
    path = tmp_path / "cam.png"
    data = render_cam_overlay(tile, heat, alpha=0.5, path=path)
    assert path.read_bytes() == data
    image = np.asarray(Image.open(io.BytesIO(data)))
    assert image.shape == (32, 48, 3)
    assert image[0, 0].tolist() == [100, 100, 164]  # 0.5 * 200 + 0.5 * (0, 0, 128)
    assert image[0, 47].tolist() == [164, 100, 100]
    with pytest.raises(UserError, match="differs from the tile"):
        render_cam_overlay(tile, heat[:, :10])
    with pytest.raises(UserError, match="NaN"):
        render_cam_overlay(tile, np.full((32, 48), np.nan))


def test_slide_probability_map_and_png(tmp_path):
    import pandas as pd

    table = pd.DataFrame({"x": [1000, 1512, 1000, 2024], "y": [512, 512, 1024, 1024],
                          "prob": [0.1, 0.9, 0.5, 1.0]})
    slide_map = slide_probability_map(table, tile_size=512)
    assert (slide_map.x0, slide_map.y0) == (1000, 512)
    expected = np.array([[0.1, 0.9, np.nan], [0.5, np.nan, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(slide_map.values, expected)
    data = render_slide_map(slide_map, pixels_per_tile=2, path=tmp_path / "slide.png")
    image = np.asarray(Image.open(io.BytesIO(data)))
    assert image.shape == (4, 6, 4)
    assert image[0, 4, 3] == 0 and image[0, 0, 3] == 255  # no tile -> transparent
    assert image[2, 4, :3].tolist() == [128, 0, 0]  # prob 1 -> dark red


def test_slide_map_rejects_bad_tables():
    good = {"x": np.array([0, 256]), "y": np.array([0, 0])}
    with pytest.raises(UserError, match="no column 'prob'"):
        slide_probability_map(good, 256)
    with pytest.raises(UserError, match=r"row 1 \(x=256, y=0\): prob=1.5"):
        slide_probability_map({**good, "prob": np.array([0.2, 1.5])}, 256)
    with pytest.raises(UserError, match="not on the 256-px tile grid"):
        slide_probability_map({"x": np.array([0, 100]), "y": np.array([0, 0]),
                               "prob": np.array([0.2, 0.3])}, 256)
    with pytest.raises(UserError, match="more than one tile at"):
        slide_probability_map({"x": np.array([0, 0]), "y": np.array([0, 0]),
                               "prob": np.array([0.2, 0.3])}, 256)
    with pytest.raises(UserError, match="empty"):
        slide_probability_map({"x": np.array([]), "y": np.array([]), "prob": np.array([])}, 256)
