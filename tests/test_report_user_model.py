"""The report on a user's model and image folder: every section completes (or says skipped)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from captum_ext_report.__main__ import main
from captum_ext_report.sections import discover

MODEL_MODULE = """
import torch
import torchvision


def build():
    # random-init torchvision resnet18 with 10 classes, seeded without touching global RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None, num_classes=10)
"""


@pytest.fixture
def photo_folder(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        image = np.asarray(getattr(skimage_data, name)())
        Image.fromarray(image).save(folder / f"{name}.png")
    return folder


@pytest.mark.slow
def test_resnet18_on_an_image_folder_completes_every_section(tmp_path, photo_folder, monkeypatch):
    (tmp_path / "user_model_for_report.py").write_text(MODEL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "report"
    args = [
        "--quick",
        "--no-progress",
        "--model",
        "user_model_for_report:build",
        "--data",
        str(photo_folder),
        "--image-size",
        "32",
        "--normalize",
        "imagenet",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["sections"]) == [m.KEY for m in discover()]
    assert results["header"]["images"] == 4
    for key, section in results["sections"].items():
        assert section["error"] is None, f"section {key} failed: {section['error']}"
        text = (section["claim"] + section["finding"]).lower()
        assert "digit" not in text, f"section {key} speaks of digits on a photo workload"
    html = (out / "index.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
