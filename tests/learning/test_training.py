"""Training engine: resume equals an uninterrupted run, cancellation, early stopping, class
imbalance, cosine schedule, checkpoints, presets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from pathomics_desktop.errors import UserError
from pathomics_desktop.learning.training import (
    BEST_WEIGHTS_NAME,
    CHECKPOINT_NAME,
    CancelToken,
    Cancelled,
    TrainConfig,
    balanced_class_weights,
    data_loader_options,
    study_preset,
    train,
)
from tests.learning.helpers import tiny_crossformer


def toy_data(n: int = 40, size: int = 32, seed: int = 0, minority: float = 0.3):
    """Images whose red channel is shifted for class 1 (a minority class)."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=gen)
    labels = (torch.rand(n, generator=gen) < minority).long()
    images[labels == 1, 0] += 1.0
    data = TensorDataset(images, labels)
    data.labels = labels.numpy()
    return data


class TinyNet(torch.nn.Module):
    """Conv + pool + linear; ``get_classifier`` like the real backbones."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.drop = torch.nn.Dropout(0.2)  # consumes the RNG: resume must restore it
        self.fc = torch.nn.Linear(4, num_classes)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.conv(x)).mean(dim=(2, 3))))


def tiny_model():
    torch.manual_seed(0)
    return tiny_crossformer(num_classes=2, drop_path_rate=0.2)


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    train_data, val_data = toy_data(), toy_data(12, seed=1)
    config = TrainConfig(epochs=3, lr=0.01, batch_size=8, val_interval=3, seed=7,
                         progress_interval_s=0.0)
    reference = tiny_model()
    full = train(reference, train_data, val_data, config, tmp_path / "full")
    assert full.epochs_completed == 3 and full.steps == 15 and full.resumed_from_epoch == 0

    token, calls = CancelToken(), []

    def progress(fraction, message):
        calls.append(fraction)
        if len(calls) == 8:  # in the middle of epoch 2
            token.cancel()

    with pytest.raises(Cancelled):
        train(tiny_model(), train_data, val_data, config, tmp_path / "cut",
              progress=progress, cancel=token)
    checkpoint = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["step"] == 5
    assert {"model", "optimizer", "scheduler", "rng", "best_val_loss"} <= set(checkpoint)

    resumed_model = tiny_model()
    resumed = train(resumed_model, train_data, val_data, config, tmp_path / "cut")
    assert resumed.resumed_from_epoch == 1 and resumed.steps == 15
    assert resumed.history == full.history
    assert resumed.best_val_loss == full.best_val_loss
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    assert not list((tmp_path / "cut").glob("*.tmp"))


def test_finished_run_resumes_to_the_same_result(tmp_path):
    data = toy_data(16)
    config = TrainConfig(epochs=1, lr=0.01, batch_size=8, seed=1)
    first = train(TinyNet(), data, None, config, tmp_path)
    again = train(TinyNet(), data, None, config, tmp_path)
    assert again.resumed_from_epoch == 1 and again.steps == first.steps
    with pytest.raises(UserError, match="other settings"):
        train(TinyNet(), data, None, TrainConfig(epochs=1, lr=0.02, batch_size=8), tmp_path)
    with pytest.raises(UserError, match="another training set"):
        train(TinyNet(), toy_data(24), None, config, tmp_path)


def test_cancel_before_first_iteration(tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        train(TinyNet(), toy_data(16), None, TrainConfig(epochs=1, batch_size=8), tmp_path,
              cancel=token)
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_cosine_decay_per_iteration_and_progress(tmp_path):
    seen = []
    config = TrainConfig(epochs=4, lr=0.1, batch_size=10, seed=0, progress_interval_s=0.0)
    result = train(TinyNet(), toy_data(40), None, config, tmp_path,
                   progress=lambda f, m: seen.append((f, m)))
    total = 16  # 4 iterations per epoch x 4 epochs
    for row in result.history:
        expected = 0.1 * (1 + math.cos(math.pi * row["step"] / total)) / 2
        assert row["lr"] == pytest.approx(expected, abs=1e-12)
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("epoch 4/4 done" in m for _, m in seen)


def test_early_stopping_after_patience_and_best_weights_restored(tmp_path):
    train_data = toy_data(40)
    # validation labels are the opposite of the rule learnt: val loss rises as training works
    val = toy_data(12, seed=3)
    val = TensorDataset(val.tensors[0], 1 - val.tensors[1])
    config = TrainConfig(epochs=20, lr=0.05, batch_size=8, val_interval=1,
                         early_stopping_patience=6, seed=0)
    model = TinyNet()
    result = train(model, train_data, val, config, tmp_path)
    assert result.stopped_early
    assert result.steps - result.best_step == 6 and result.steps < 100
    best = torch.load(tmp_path / BEST_WEIGHTS_NAME, weights_only=True)
    for key, value in best.items():
        assert torch.equal(model.state_dict()[key], value)


def test_class_weights_and_weighted_sampler(tmp_path):
    np.testing.assert_allclose(balanced_class_weights(np.array([30, 10])), [40 / 60, 40 / 20])

    class Recording(Dataset):
        def __init__(self, base):
            self.base, self.labels, self.fetched = base, base.labels, []

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            self.fetched.append(int(self.labels[i]))
            return self.base[i]

    data = Recording(toy_data(200, size=8, minority=0.1))
    config = TrainConfig(epochs=2, batch_size=50, imbalance="weighted_sampler", seed=0)
    train(TinyNet(), data, None, config, tmp_path / "sampler")
    assert 0.35 < np.mean(data.fetched) < 0.65  # minority (10 %) drawn about half the time
    data.fetched.clear()
    train(TinyNet(), data, None, TrainConfig(epochs=1, batch_size=50, imbalance="class_weights"),
          tmp_path / "weights")
    assert np.mean(data.fetched) < 0.2  # plain shuffling


def test_user_errors_for_bad_data_and_settings(tmp_path):
    one_class = toy_data(10, minority=0.0)
    with pytest.raises(UserError, match="class 1 has no training samples"):
        train(TinyNet(), one_class, None, TrainConfig(epochs=1), tmp_path)
    with pytest.raises(UserError, match="outside 0..1"):
        bad = toy_data(10)
        bad.labels = np.array([0, 1, 2] + [0] * 7)
        train(TinyNet(), bad, None, TrainConfig(epochs=1), tmp_path)
    with pytest.raises(UserError, match="learning rate"):
        train(TinyNet(), toy_data(10), None, TrainConfig(lr=-1.0), tmp_path)
    with pytest.raises(UserError, match="optimizer"):
        train(TinyNet(), toy_data(10), None, TrainConfig(optimizer="lbfgs"), tmp_path)


def test_adamw_runs_and_loss_falls(tmp_path):
    config = TrainConfig(epochs=5, lr=0.05, batch_size=10, optimizer="adamw", weight_decay=0.01)
    result = train(TinyNet(), toy_data(40), toy_data(20, seed=2), config, tmp_path)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_study_presets_and_gui_safe_loading():
    cnn, crossformer = study_preset("resnet50"), study_preset("crossformer_s")
    assert (cnn.lr, cnn.epochs, cnn.early_stopping_patience) == (0.01, 8, None)
    assert (crossformer.lr, crossformer.epochs, crossformer.early_stopping_patience) == \
        (0.001, 16, 128)
    assert data_loader_options(TrainConfig(), on_cuda=False)["num_workers"] == 0
    workers = data_loader_options(TrainConfig(num_workers=2), on_cuda=False)
    assert workers["multiprocessing_context"] == "spawn"


def test_labels_read_through_subset_without_loading_images():
    from torch.utils.data import Subset

    from pathomics_desktop.learning.training import dataset_labels

    class NoImages(Dataset):
        labels = np.array([0, 1, 1, 0, 1])

        def __len__(self):
            return 5

        def __getitem__(self, i):
            raise AssertionError("labels must not need image reads")

    np.testing.assert_array_equal(dataset_labels(Subset(NoImages(), [4, 0, 2])), [1, 0, 1])
    np.testing.assert_array_equal(dataset_labels(TensorDataset(torch.zeros(2, 1),
                                                               torch.tensor([1, 0]))), [1, 0])
