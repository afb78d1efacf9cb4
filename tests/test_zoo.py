"""The shared models, data and training routine do what they claim."""

from __future__ import annotations

import pytest
import torch

from captum_ext.zoo import (
    DigitsDataset,
    SmallCNN,
    SmallMLP,
    SmallVGG,
    digits_split,
    imagenet_bounds,
    natural_image_batch,
    torchvision_model,
    train_digits_cnn,
)
from captum_ext.zoo.training import evaluate_accuracy


def test_model_shapes(mlp, cnn, vgg_bn, resnet18, dtype):
    assert mlp(torch.randn(5, 64, dtype=dtype)).shape == (5, 10)
    assert cnn(torch.randn(2, 1, 32, 32, dtype=dtype)).shape == (2, 10)
    assert vgg_bn(torch.randn(2, 3, 32, 32, dtype=dtype)).shape == (2, 10)
    assert resnet18(torch.randn(2, 3, 32, 32, dtype=dtype)).shape == (2, 10)
    assert next(cnn.parameters()).dtype == dtype


def test_small_cnn_architecture_matches_the_paper():
    model = SmallCNN()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [d.out_features for d in dense] == [1024, 10]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 2


def test_torchvision_models_are_seeded_and_leave_global_rng():
    state = torch.random.get_rng_state()
    a = torchvision_model("resnet18", n_classes=10, seed=3)
    b = torchvision_model("resnet18", n_classes=10, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not a.training


@pytest.mark.parametrize(
    "factory",
    [
        lambda: SmallMLP(0),
        lambda: SmallMLP(8, (4, -1)),
        lambda: SmallCNN(in_channels=2),
        lambda: SmallVGG(in_channels=4),
        lambda: torchvision_model("alexnet"),
        lambda: DigitsDataset(channels=2),
        lambda: DigitsDataset(size=-4),
        lambda: DigitsDataset(split="valid"),
        lambda: natural_image_batch(("nope",)),
        lambda: natural_image_batch(size=0),
        lambda: train_digits_cnn(epochs=0),
        lambda: train_digits_cnn(lr=-1.0),
    ],
)
def test_nonsense_is_rejected(factory):
    with pytest.raises(ValueError):
        factory()


def test_cache_path_that_is_a_file_is_rejected(tmp_path):
    file = tmp_path / "cache"
    file.write_text("not a folder")
    with pytest.raises(ValueError, match="is a file"):
        train_digits_cnn(cache_dir=file, progress=False)


@pytest.mark.parametrize("channels", [1, 3])
def test_digits_dataset(channels):
    train, test = DigitsDataset("train", channels), DigitsDataset("test", channels)
    assert len(train) + len(test) == 1797
    assert len(test) == 359
    x, y = test[0]
    assert x.shape == (channels, 32, 32) and y.dtype == torch.long
    low, high = test.bounds
    assert low.shape == (channels,) and torch.all(test.images >= low.view(1, -1, 1, 1))
    assert torch.all(test.images <= high.view(1, -1, 1, 1))
    assert test.images.max() > 0.9 and test.images.min() == 0.0
    assert set(test.labels.tolist()) == set(range(10))


def test_split_is_fixed_and_disjoint():
    state = torch.random.get_rng_state()
    train, test = digits_split(1797)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert len(set(train.tolist()) & set(test.tolist())) == 0
    assert len(train) + len(test) == 1797
    assert torch.equal(digits_split(1797)[1], test)


def test_natural_images_and_bounds():
    images = natural_image_batch(size=64)
    low, high = imagenet_bounds()
    assert images.shape == (4, 3, 64, 64)
    assert torch.all(images >= low.view(1, 3, 1, 1) - 1e-5)
    assert torch.all(images <= high.view(1, 3, 1, 1) + 1e-5)
    raw = natural_image_batch(("coffee",), size=32, normalize=False)
    assert 0.0 <= raw.min() and raw.max() <= 1.0


@pytest.mark.slow
def test_training_reaches_accuracy_and_caches(trained_cnn, digits_test):
    assert trained_cnn.test_accuracy >= 0.95
    assert evaluate_accuracy(trained_cnn.model, digits_test) == pytest.approx(
        trained_cnn.test_accuracy
    )
    assert trained_cnn.path.exists()


@pytest.mark.slow
def test_corrupted_cache_is_retrained(tmp_path, trained_cnn):
    # Use a 1-epoch configuration so retraining is cheap; corrupt the file after the first save.
    first = train_digits_cnn(epochs=1, cache_dir=tmp_path, progress=False)
    assert not first.from_cache
    again = train_digits_cnn(epochs=1, cache_dir=tmp_path, progress=False)
    assert again.from_cache
    assert all(
        torch.equal(p, q) for p, q in zip(first.model.parameters(), again.model.parameters())
    )
    payload = torch.load(first.path, weights_only=True)
    payload["state_dict"]["features.0.weight"].add_(1.0)  # flipped bits / tampering
    torch.save(payload, first.path)
    with pytest.warns(UserWarning, match="corrupted"):
        retrained = train_digits_cnn(epochs=1, cache_dir=tmp_path, progress=False)
    assert not retrained.from_cache
    first.path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="corrupted"):
        assert not train_digits_cnn(epochs=1, cache_dir=tmp_path, progress=False).from_cache
