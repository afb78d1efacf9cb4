"""The Sixt et al. (2020) sections (Figure 3, Appendix B, |cos| histograms, residual CSC) in a
quick run."""

from __future__ import annotations

import json

import pytest

from captum_ext_report.__main__ import main

KEYS = ("figure3", "appendix_b", "cos_histograms", "residual_csc")


@pytest.mark.slow
def test_explanations_lie_sections_write_figures_and_verdicts(tmp_path, trained_cnn):
    out = tmp_path / "report"
    args = ["--quick", "--no-progress", "--sections", ",".join(KEYS), "--out", str(out)]
    assert main(args) == 0
    sections = json.loads((out / "results.json").read_text())["sections"]
    assert list(sections) == list(KEYS)
    for key, section in sections.items():
        assert section["error"] is None, f"{key}: {section['error']}"
        assert isinstance(section["confirmed"], bool), key  # every one states a verdict
        assert "Verdict" in section["claim"], key
        for figure in section["figures"]:
            assert (out / figure).stat().st_size > 1000
    chains = sections["appendix_b"]["numbers"]
    assert chains["birkhoff_holds"] is True
    assert chains["rate"]["zplus"] < chains["rate"]["gradient"]
