"""The verdict logic: every outcome reachable with synthetic numbers, rendering keeps tables."""

from __future__ import annotations

import numpy as np
import pytest

from captum_ext_report.context import Section
from captum_ext_report.render import _table_html, write_html
from captum_ext_report.verdicts import (
    CONFIRMED,
    NOT_CONFIRMED,
    NOT_TESTED,
    PARTLY,
    Claim,
    Criterion,
    bootstrap_ci,
    decide,
)


def _csc_like(alpha: float, guided: float, baseline: float, gradient: float) -> Claim:
    claim = Claim("modified BP converges, the gradient does not")
    claim.add(Criterion("LRP-α1β0", "median |cos|", ">=", 0.99, core=True, value=alpha))
    claim.add(Criterion("GuidedBackprop", "median |cos|", ">=", 0.99, value=guided))
    claim.add(Criterion("Gradient", "median |cos|", "<", 0.99, core=True, value=gradient))
    claim.add(Criterion("random vectors", "median |cos|", "<", 0.5, control=True, value=baseline))
    return claim


def test_all_criteria_hold_is_confirmed():
    verdict = _csc_like(0.999, 0.995, 0.1, 0.5).decide()
    assert verdict.outcome == CONFIRMED and verdict.confirmed is True
    assert verdict.deviations == []


def test_non_core_deviation_is_partly_and_named_with_number():
    verdict = _csc_like(0.999, 0.968, 0.1, 0.5).decide()
    assert verdict.outcome == PARTLY and verdict.confirmed is None
    assert [c.subject for c in verdict.deviations] == ["GuidedBackprop"]
    assert "GuidedBackprop" in verdict.reason and "0.968" in verdict.reason


def test_core_failure_is_not_confirmed():
    verdict = _csc_like(0.95, 0.995, 0.1, 0.5).decide()
    assert verdict.outcome == NOT_CONFIRMED and verdict.confirmed is False
    assert "LRP-α1β0" in verdict.reason


def test_failed_negative_control_is_not_confirmed_even_if_the_rest_passes():
    verdict = _csc_like(0.999, 0.995, 0.995, 0.5).decide()
    assert verdict.outcome == NOT_CONFIRMED
    assert "negative control" in verdict.reason and "random vectors" in verdict.reason


def test_all_skipped_is_not_tested_and_skips_do_not_count():
    claim = Claim("x")
    claim.add(Criterion("A", "q", ">=", 1.0, skipped="not applicable to a residual net"))
    assert claim.decide().outcome == NOT_TESTED
    claim.add(Criterion("B", "q", ">=", 1.0, value=2.0))
    verdict = claim.decide()
    assert verdict.outcome == CONFIRMED and "skipped" in verdict.reason


def test_ci_straddling_threshold_is_inconclusive_and_gives_partly():
    c = Criterion("SG", "SSIM", ">", 0.9, value=0.92, ci=(0.85, 0.97))
    assert c.status == "inconclusive"
    assert Criterion("SG", "SSIM", ">", 0.9, value=0.95, ci=(0.91, 0.97)).status == "pass"
    assert Criterion("SG", "SSIM", ">", 0.9, value=0.5, ci=(0.4, 0.6)).status == "fail"
    core = Criterion("core", "q", ">=", 0.0, core=True, value=1.0)
    assert decide([core, c]).outcome == PARTLY


def test_non_finite_value_fails_and_boolean_facts():
    assert Criterion("A", "q", "<", 1.0, value=float("nan")).status == "fail"
    assert Criterion("A", "differs", "true", value=True).status == "pass"
    assert Criterion("A", "differs", "true", value=False).status == "fail"
    with pytest.raises(ValueError, match="op must be"):
        Criterion("A", "q", "=>", 1.0)


def test_bootstrap_ci_covers_the_median_and_is_seeded():
    values = np.random.default_rng(3).normal(loc=2.0, scale=1.0, size=400)
    low, high = bootstrap_ci(values, seed=1)
    assert low < np.median(values) < high and high - low < 0.4
    assert (low, high) == bootstrap_ci(values, seed=1)
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    with pytest.raises(ValueError):
        bootstrap_ci([])


def test_section_takes_its_confirmed_flag_from_the_verdict():
    section = Section("k", "t", "c", "f", confirmed=True, verdict=_csc_like(0.95, 1, 0.1, 0.5))
    assert section.confirmed is False


def test_html_has_doctype_summary_anchors_and_escaped_bar_headers(tmp_path):
    from captum_ext_report.plotting import markdown_table

    table = markdown_table(["rule", "mean |Σ R − f_c| / |f_c|", "cos"], [["ε", 0.001, 0.3]])
    html_table = _table_html(table)
    assert html_table.count("<th>") == 3 and html_table.count("<td>") == 3
    assert "<th>mean |Σ R − f_c| / |f_c|</th>" in html_table
    section = Section("csc", "CSC", "claim", "finding", tables=[table])
    section.verdict = _csc_like(0.999, 0.968, 0.1, 0.5)
    write_html(tmp_path / "index.html", [section], {"model": "m"})
    page = (tmp_path / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "href='#sec-csc'" in page and "id='sec-csc'" in page
    assert "partly confirmed" in page and "pre-registered criterion" in page


def _csc_medians(**changes: float) -> dict[str, float]:
    from captum_ext_report.sections import csc

    medians = {name: 0.999 for name in csc.CONVERGING}
    medians.update({name: 0.5 for name in csc.NOT_CONVERGING})
    medians.update(changes)
    return medians


def test_csc_claim_judges_every_converging_method():
    from captum_ext_report.sections.csc import build_claim

    baselines = {"Gradient": 0.12}
    assert build_claim(_csc_medians(), baselines, {}).decide().outcome == CONFIRMED
    partly = build_claim(_csc_medians(GuidedBackprop=0.968), baselines, {}).decide()
    assert partly.outcome == PARTLY and [c.subject for c in partly.deviations] == ["GuidedBackprop"]
    worse = build_claim(_csc_medians(**{"LRP-α1β0": 0.95}), baselines, {}).decide()
    assert worse.outcome == NOT_CONFIRMED
    chance = build_claim(_csc_medians(), {"Gradient": 0.7}, {}).decide()
    assert chance.outcome == NOT_CONFIRMED and "negative control" in chance.reason
    skipped = build_claim({"Gradient": 0.5}, baselines, {"LRP-α1β0": "no rule for Add"})
    assert skipped.decide().outcome == CONFIRMED  # only what ran is judged, skips are listed
    assert any(c.skipped == "no rule for Add" for c in skipped.criteria)


def test_convergence_claim_reads_the_measured_constants():
    from captum_ext_report.sections.convergence import EPSILON, build_claim

    eps = f"LRP-ε (ε={EPSILON})"
    scaling = {
        "scale/Gradient": [10.0, 1.0, 10.0, 1.0],
        "per-neuron/Gradient": [1.0, 1.0, 3.0, 3.0],
        f"scale/{eps}": [9.0, 0.9, 5.0, 0.5],
        f"per-neuron/{eps}": [1.0, 1.0, 2.0, 2.0],
        "scale/LRP-α2β1": [10.0, 1.0, 10.0, 1.0],
        "per-neuron/LRP-α2β1": [1.0, 1.0, 1.0, 1.0],
    }
    ratios = {"Gradient": 1e-3, eps: 1e-6, "LRP-α2β1": 1e-2}
    verdict = build_claim(ratios, {"scaling": scaling}, None).decide()
    # the gradient's measured constant cannot move under a function-preserving rescaling
    assert verdict.outcome == PARTLY
    assert [c.subject for c in verdict.deviations] == ["Gradient"]
    scaling["per-neuron/LRP-α2β1"] = [1.0, 1.3, 1.0, 1.0]
    assert build_claim(ratios, {"scaling": scaling}, None).decide().outcome == NOT_CONFIRMED
    assert build_claim({"Gradient": 2.0}, {"scaling": {}}, "n/a").decide().outcome == (
        NOT_CONFIRMED
    )


def test_sanity_refits_patterns_on_a_randomised_model():
    """Reused patterns make PatternNet blind to a randomised last layer; re-fitted ones do not."""
    import copy

    import torch

    from captum_ext.zoo import SmallCNN
    from captum_ext_report.context import ReportContext
    from captum_ext_report.sections.csc import method_factories

    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallCNN().eval()
    images = torch.rand((32, 1, 32, 32), generator=gen)
    ctx = ReportContext(
        out_dir=None, model=model, images=images, labels=torch.zeros(32, dtype=torch.long),
        bounds=(torch.zeros(1), torch.ones(1)), quick=True, methods=["PatternNet"],
    )  # fmt: skip
    randomised = copy.deepcopy(model)
    with torch.no_grad():
        last = randomised.classifier[-1]
        last.weight.copy_(torch.randn(last.weight.shape, generator=gen))
    x, target = images[:4], torch.tensor([1, 2, 3, 4])

    def maps(refit: bool, net: torch.nn.Module) -> torch.Tensor:
        factory = method_factories(ctx, refit=refit)["PatternNet"][0]
        return factory(net).attribute(x, target=target).detach()

    original = maps(False, model)
    assert torch.equal(maps(False, randomised), original)  # the test that could not fail
    assert not torch.allclose(maps(True, randomised), original, atol=1e-6)


def test_outcomes_of_a_claim_tested_in_parts():
    from captum_ext_report.verdicts import combine_outcomes, outcome_flag

    assert combine_outcomes("confirmed", "confirmed") == "confirmed"
    assert combine_outcomes("confirmed", "partly confirmed") == "partly confirmed"
    assert combine_outcomes("partly confirmed", "not confirmed") == "not confirmed"
    assert [outcome_flag(o) for o in ("confirmed", "partly confirmed", "not confirmed")] == [
        True,
        None,
        False,
    ]
