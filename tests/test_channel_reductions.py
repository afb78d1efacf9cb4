"""One spelling of the channel reductions across visualisation, SSIM and spectral metrics.

``"max_abs"`` is the spelling everywhere; the spectral metrics' earlier ``"maxabs"`` keeps
working with a ``DeprecationWarning`` and gives the same numbers. Oracle: numpy in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from captum_ext.core.channels import CHANNEL_REDUCTIONS, channel_reduction, reduce_over_channels
from captum_ext.visualization import reduce_channels as visual_reduce
from quantus_metrics.spectral import ExpectedFrequency, check_reduction, expected_frequency
from quantus_metrics.spectral import reduce_channels as spectral_reduce
from quantus_metrics.ssim import reduce_channels as ssim_reduce

ORACLES = {
    "sum": lambda a: a.sum(1),
    "abs_sum": lambda a: np.abs(a).sum(1),
    "max_abs": lambda a: np.abs(a).max(1),
    "l2": lambda a: np.sqrt((a**2).sum(1)),
}


@pytest.fixture
def maps() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("how", CHANNEL_REDUCTIONS)
def test_every_helper_matches_numpy(maps, how):
    want = ORACLES[how](maps.numpy())
    np.testing.assert_allclose(reduce_over_channels(maps, how).numpy(), want, rtol=1e-14)
    np.testing.assert_allclose(visual_reduce(maps, how)[:, 0].numpy(), want, rtol=1e-14)
    np.testing.assert_allclose(ssim_reduce(maps, how).numpy(), want, rtol=1e-14)
    if how != "l2":  # the spectral metrics offer sum, abs_sum and max_abs
        np.testing.assert_allclose(spectral_reduce(maps, how).numpy(), want, rtol=1e-14)


def test_the_canonical_spelling_does_not_warn(maps):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_reduction("max_abs") == "max_abs"
        spectral_reduce(maps, "max_abs")
        ssim_reduce(maps, "max_abs")
        visual_reduce(maps, "max_abs")
        ExpectedFrequency(reduce="max_abs", disable_warnings=True)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: spectral_reduce(m, "maxabs"),
        lambda m: ssim_reduce(m, "maxabs"),
        lambda m: visual_reduce(m, "maxabs")[:, 0],
        lambda m: reduce_over_channels(m, "maxabs"),
    ],
    ids=["spectral", "ssim", "visualization", "core"],
)
def test_the_old_spelling_warns_and_gives_the_same_maps(maps, call):
    with pytest.warns(DeprecationWarning, match="max_abs"):
        got = call(maps)
    np.testing.assert_allclose(got.numpy(), np.abs(maps.numpy()).max(1), rtol=1e-14)


def test_metrics_store_the_canonical_spelling_and_score_alike(maps):
    new = ExpectedFrequency(reduce="max_abs", disable_warnings=True)
    with pytest.warns(DeprecationWarning, match="reduce='max_abs'"):
        old = ExpectedFrequency(reduce="maxabs", disable_warnings=True)
    assert old.reduce == new.reduce == "max_abs"
    with pytest.warns(DeprecationWarning):
        before = expected_frequency(maps, reduce="maxabs")
    torch.testing.assert_close(before, expected_frequency(maps, reduce="max_abs"), rtol=0, atol=0)


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="max_abs"):
        channel_reduction("max")
    with pytest.raises(ValueError, match="reduce must be one of"):
        check_reduction("l2")  # not a spectral reduction
    with pytest.raises(ValueError, match="how must be one of"):
        ssim_reduce(torch.zeros(1, 2, 4, 4), "mean")


def test_convention_names_say_what_they_compute_and_old_names_still_work():
    maps = np.random.default_rng(2).normal(size=(2, 1, 16, 16))
    y = np.zeros(2, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        rings = ExpectedFrequency(convention="normalised_rings", disable_warnings=True)
        integer = ExpectedFrequency(convention="integer_rings", disable_warnings=True)
    for old, metric in (("project", rings), ("paper", integer)):
        with pytest.warns(DeprecationWarning, match=metric.convention):
            before = ExpectedFrequency(convention=old, disable_warnings=True)
        assert before.convention == metric.convention
        assert before(None, maps, y, a_batch=maps) == metric(None, maps, y, a_batch=maps)
    # the integer-ring convention is the EF of Mehrpanah et al. (oracle: expected_frequency)
    want = expected_frequency(torch.from_numpy(maps)).tolist()
    assert integer(None, maps, y, a_batch=maps) == pytest.approx(want, rel=1e-12)
