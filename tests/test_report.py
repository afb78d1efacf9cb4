"""The main job: ``python -m captum_ext_report --quick`` writes a complete report."""

from __future__ import annotations

import json

import pytest

from captum_ext_report.__main__ import main, parse_args
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
