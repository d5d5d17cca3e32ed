"""A patch model learns: trained with the project's ``train`` on SYNTHETIC tiles whose class
is visible (class 1 tiles carry a dark, haematoxylin-like blob), the tiny ResNet ranks
held-out tiles far above chance through the project's inference path; trained on the
opposite labels it ranks them the other way round, so the ranking comes from the labels,
not from the initial weights."""

from __future__ import annotations

import numpy as np

from pathomics_desktop.learning.inference import predict_probabilities
from pathomics_desktop.learning.preprocess import RandomCropFlip, TileDataset
from pathomics_desktop.learning.training import TrainConfig, seed_everything, train
from tests.learning.helpers import tiny_resnet

SIZE = 32  # px
BLOB_RADIUS = 5  # px


def synthetic_tiles(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SYNTHETIC (n, 32, 32, 3) uint8 tiles: eosin-pink noisy background; about half carry a
    dark purple disc (radius 5 px) at a random place, and those are class 1."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.5).astype(np.int64)
    pink = np.array([232.0, 170.0, 200.0])
    tiles = pink + rng.normal(0.0, 18.0, size=(n, SIZE, SIZE, 3))
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    for i in np.flatnonzero(labels):
        r, c = rng.integers(BLOB_RADIUS, SIZE - BLOB_RADIUS, size=2)
        disc = (rows - r) ** 2 + (cols - c) ** 2 <= BLOB_RADIUS ** 2
        tiles[i][disc] = np.array([90.0, 50.0, 130.0]) + rng.normal(0.0, 18.0, size=(disc.sum(), 3))
    return np.clip(tiles, 0, 255).astype(np.uint8), labels


def pairwise_auc(label: np.ndarray, score: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + 1/2 P(tie), over all pairs."""
    pos, neg = score[label == 1], score[label == 0]
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def trained_probabilities(tmp_path, labels_of) -> tuple[np.ndarray, np.ndarray]:
    """Train the tiny ResNet (seed 0) with ``labels_of(true labels)`` as targets; return the
    true held-out labels and P(class 1) from ``predict_probabilities``."""
    train_tiles, train_labels = synthetic_tiles(256, seed=1)
    val_tiles, val_labels = synthetic_tiles(64, seed=2)
    test_tiles, test_labels = synthetic_tiles(128, seed=3)
    config = TrainConfig(epochs=6, lr=0.05, batch_size=32, val_interval=8, seed=0,
                         device="cpu", progress_interval_s=0.0)
    seed_everything(0)
    model = tiny_resnet(num_classes=2)
    train(model, TileDataset(train_tiles, labels_of(train_labels), transform=RandomCropFlip()),
          TileDataset(val_tiles, labels_of(val_labels)), config, tmp_path, num_classes=2)
    batches = (test_tiles[i:i + 32] for i in range(0, len(test_tiles), 32))
    probs = predict_probabilities(model, batches, device="cpu")
    assert probs.shape == (128, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    return test_labels, probs[:, 1]


def test_pairwise_auc_on_known_rankings():
    assert pairwise_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert pairwise_auc(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 0.75
    assert pairwise_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


def test_tiny_model_learns_the_visible_class(tmp_path):
    labels, prob = trained_probabilities(tmp_path / "true", lambda y: y)
    assert 40 < labels.sum() < 88  # both classes well represented in the held-out tiles
    auc = pairwise_auc(labels, prob)
    assert auc > 0.9, auc
    accuracy = ((prob > 0.5) == labels).mean()
    assert accuracy > 0.8, accuracy


def test_opposite_labels_give_the_opposite_ranking(tmp_path):
    labels, prob = trained_probabilities(tmp_path / "flipped", lambda y: 1 - y)
    auc = pairwise_auc(labels, prob)
    assert auc < 0.1, auc
