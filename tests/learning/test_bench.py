"""``pathomics bench inference`` (tiny settings) and the end-to-end hook."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pathomics_desktop.errors import UserError
from pathomics_desktop.learning.bench import end_to_end, main, synthetic_tile_batches
from pathomics_desktop.learning.preprocess import tiles_to_tensor
from tests.learning.helpers import tiny_resnet


def test_bench_reports_throughput_and_ratio_to_baseline(capsys):
    argv = ["--models", "crossformer_s", "--device", "cpu", "--input-size", "64",
            "--batch-size", "1", "--iterations", "1", "--warmup", "0", "--end-to-end", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["model"], r["mode"][:10]) for r in rows] == [
        ("resnet18", "fp32"), ("resnet18", "end-to-end"),
        ("crossformer_s", "fp32"), ("crossformer_s", "end-to-end")]
    assert rows[0]["ratio_to_resnet18_fp32"] == 1.0
    assert all(r["images_per_s"] > 0 for r in rows)
    # end-to-end reads real slide tiles and Macenko-normalises them; ratio to model-only
    assert all(r["ratio_to_model_only"] > 0 for r in rows if r["mode"].startswith("end-to-end"))
    assert "Macenko" in rows[1]["mode"]


def test_bench_via_pathomics_command_and_errors(capsys):
    from pathomics_desktop.cli import main as pathomics

    assert pathomics(["bench", "inference", "--models", "resnet18", "--device", "cpu",
                      "--input-size", "32", "--batch-size", "1", "--iterations", "1"]) == 0
    assert "vs base" in capsys.readouterr().out
    with pytest.raises(UserError, match="unknown model"):
        main(["--models", "vgg16"])


def test_end_to_end_hook_runs_normaliser_on_every_batch():
    calls = []

    def normalise(tiles: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(tiles.shape))
        assert tiles.dtype == torch.uint8
        return tiles

    result = end_to_end(tiny_resnet(), synthetic_tile_batches(3, 2, 32), torch.device("cpu"),
                        normalise=normalise)
    assert result["tiles"] == 6 and calls == [(2, 32, 32, 3)] * 3
    assert result["tiles_per_s"] > 0


def test_tiles_to_tensor_standardises_per_channel():
    tiles = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    tiles[..., 0] = 255
    images = tiles_to_tensor(tiles, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    assert images.shape == (1, 3, 2, 2)
    torch.testing.assert_close(images[0, :, 0, 0], torch.tensor([1.0, -2.0, -1.0]))
    with pytest.raises(UserError, match="uint8"):
        tiles_to_tensor(np.zeros((1, 2, 2, 3), dtype=np.float32))


def test_predict_probabilities_and_cancel():
    from pathomics_desktop.learning.inference import predict_probabilities
    from pathomics_desktop.learning.training import CancelToken, Cancelled

    seen = []
    probs = predict_probabilities(tiny_resnet(3), synthetic_tile_batches(2, 4, 32), "cpu",
                                  total_tiles=8, progress=lambda f, m: seen.append(f))
    assert probs.shape == (8, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert seen == [0.5, 1.0]
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        predict_probabilities(tiny_resnet(), synthetic_tile_batches(1, 2, 32), "cpu", cancel=token)


def test_tile_dataset_with_augmentation_trains():
    from pathomics_desktop.learning.preprocess import RandomCropFlip, TileDataset

    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    data = TileDataset(tiles, [0, 1, 0, 1, 0, 1], transform=RandomCropFlip(0.75))
    image, label = data[1]
    assert image.shape == (3, 16, 16) and label == 1 and image.dtype == torch.float32
    plain = TileDataset(lambda i: tiles[i], [0] * 6)
    torch.testing.assert_close(plain[2][0], tiles_to_tensor(tiles[2:3])[0])
    flip_only = RandomCropFlip(1.0, flip_probability=1.0)
    torch.testing.assert_close(flip_only(plain[0][0]), plain[0][0].flip(-1).flip(-2))
    with pytest.raises(UserError, match="6 tiles but 2 labels"):
        TileDataset(tiles, [0, 1])
