"""The main job: ``python -m captum_ext_report --quick`` writes a complete report."""

from __future__ import annotations

import json

import pytest
import torch

from captum_ext_report.__main__ import build_context, main, parse_args
from captum_ext_report.sections import discover


@pytest.mark.slow
def test_quick_report_writes_every_section(tmp_path, trained_cnn):
    out = tmp_path / "report"
    assert main(["--quick", "--no-progress", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    keys = [module.KEY for module in discover()]
    assert list(results["sections"]) == keys
    for key, section in results["sections"].items():
        assert section["error"] is None, f"section {key} failed: {section['error']}"
        assert section["claim"] and section["finding"], f"section {key} states no claim/finding"
        for figure in section["figures"]:
            assert (out / figure).stat().st_size > 1000
    # the cascade really randomises: the gradient's map changes once the logits are random
    gradient = results["sections"]["sanity"]["numbers"]["cascading"]["Gradient"]
    assert max(high for _, high in gradient.values()) < 0.99, gradient
    html = (out / "index.html").read_text()
    assert html.count("<h2>") == len(keys) and "data:image/png;base64" in html
    assert (out / "report.md").read_text().startswith("# captum-ext sanity report")


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(SystemExit):
        parse_args(["--n-images", "0"])
    with pytest.raises(SystemExit, match="Unknown section"):
        main(["--quick", "--no-progress", "--sections", "nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="module:callable"):
        main(["--model", "no_colon_here", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="needs --data"):
        main(["--model", "captum_ext.zoo:SmallMLP", "--out", str(tmp_path)])


def test_own_model_and_data(tmp_path):
    # A user's model and data given as module:callable, restricted to the overview section.
    out = tmp_path / "own"
    code = main(
        [
            "--model",
            "captum_ext.zoo:SmallCNN",
            "--data",
            "tests.report_fixtures:digit_images",
            "--bounds",
            "0,1",
            "--sections",
            "overview",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["header"]["model"] == "captum_ext.zoo:SmallCNN"


def test_default_workload_is_the_pretrained_network_and_quick_the_digits(tmp_path):
    # `make demo` (no arguments) studies the ImageNet-pretrained EfficientNet-Lite0 on the 20
    # labelled ImageNet photos and two photos; `--quick` the digits CNN.
    ctx = build_context(parse_args(["--no-progress", "--out", str(tmp_path / "a")]))
    assert ctx.workload == "efficientnet-lite0" and ctx.is_default_model and not ctx.is_digits
    assert tuple(ctx.images.shape) == (22, 3, 224, 224) and ctx.large_inputs
    low, high = ctx.bounds
    assert bool((ctx.images >= low.view(1, 3, 1, 1) - 1e-6).all())
    assert bool((ctx.images <= high.view(1, 3, 1, 1) + 1e-6).all())
    assert ctx.accuracy is not None and ctx.accuracy >= 0.8  # 17 of the 20 labelled photos
    with torch.no_grad():
        predicted = ctx.model(ctx.images[20:]).argmax(1)
    assert torch.equal(ctx.labels[20:], predicted)  # unlabelled photos: the model's prediction
    assert ctx.size(8, 2, large=3) == 3
    quick = build_context(parse_args(["--quick", "--no-progress", "--out", str(tmp_path / "b")]))
    assert quick.workload == "digits" and quick.is_digits and not quick.large_inputs
    assert quick.size(8, 2, large=3) == 2 and len(quick.images) == 16
    with pytest.raises(SystemExit, match="preset"):
        main(["--model", "digits", "--data", str(tmp_path), "--out", str(tmp_path / "c")])
