"""Dataset evaluation: invariance to batch size and processes, resume, bad input, keyed seeds."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from captum.attr import Saliency  # noqa: E402

from captum_ext import SeededNoiseTunnel  # noqa: E402
from captum_ext.core.randomness import sample_seed  # noqa: E402
from quantus_metrics import SpectralComplexity  # noqa: E402
from quantus_metrics._dataset_specs import keyed_global_rng  # noqa: E402
from quantus_metrics.dataset import evaluate_dataset  # noqa: E402
from tests.dataset_fixtures import TinyData, tiny_data, tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["Saliency", "SmoothGrad", "tests.dataset_fixtures:captum_noise_tunnel"]
METRICS = ["SpectralComplexity", "RandomLogitSSIM", "CSC"]
OPTIONS = {"progress": False, "figures": False, "n_resamples": 200, "chunk_size": 10}


def _table(folder: Path):
    return pq.read_table(folder / "results.parquet").to_pydict()


def _run(folder: Path, **kwargs):
    options = {**OPTIONS, **kwargs}
    return evaluate_dataset(tiny_model(), tiny_data(), METHODS, METRICS, folder, **options)


def _assert_same_rows(a: dict, b: dict, exact: bool) -> None:
    for column in ("sample", "key", "target", "method", "metric", "layer", "error"):
        assert a[column] == b[column], column
    va, vb = np.array(a["value"]), np.array(b["value"])
    if exact:
        np.testing.assert_array_equal(va, vb)
    else:  # batched float32 kernels may sum in another order
        np.testing.assert_allclose(va, vb, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_batch_sizes_give_the_same_rows(tmp_path):
    one = _run(tmp_path / "b1", batch_size=1)
    seven = _run(tmp_path / "b7", batch_size=7)
    assert one.complete and seven.complete
    a, b = _table(tmp_path / "b1"), _table(tmp_path / "b7")
    n_pairs = len(METHODS) * len(METRICS)
    assert len(set(zip(a["sample"], a["method"], a["metric"]))) == 24 * n_pairs
    for method, metric, error, value in zip(a["method"], a["metric"], a["error"], a["value"]):
        # CSC cannot trace noise tunnels (no modified backward): NaN rows, as inside
        # quantus.evaluate, with one warning; every other pair scores
        refused = metric == "CSC" and method != "Saliency"
        assert error is None
        assert math.isnan(value) == refused
    _assert_same_rows(a, b, exact=False)


@pytest.mark.slow
def test_rows_match_a_direct_computation_with_the_sample_seed(tmp_path):
    _run(tmp_path / "r", batch_size=5, exact=True)
    rows = _table(tmp_path / "r")
    data, model = tiny_data(), tiny_model()

    def value(sample: int, method: str) -> float:
        hits = [
            v
            for s, m, k, v in zip(rows["sample"], rows["method"], rows["metric"], rows["value"])
            if s == sample and m == method and k == "SpectralComplexity"
        ]
        assert len(hits) == 1
        return hits[0]

    metric = SpectralComplexity()
    for i in (0, 1, 13):
        x, y = data.x[i : i + 1], data.y[i : i + 1]
        seed = sample_seed(0, i, "method:SmoothGrad")
        a = SeededNoiseTunnel(Saliency(model)).attribute(
            x, target=y, nt_samples=10, stdevs=0.15, abs=False, seed=seed
        )
        expected = metric(model, x.numpy(), y.numpy(), a_batch=a.detach().numpy())[0]
        assert value(i, "SmoothGrad") == expected
        torch_state = torch.get_rng_state()
        tunnel_seed = sample_seed(0, i, f"method:{METHODS[2]}")
        with keyed_global_rng(tunnel_seed):
            from captum.attr import NoiseTunnel

            a = NoiseTunnel(Saliency(model)).attribute(x, target=y)
        assert torch.equal(torch.get_rng_state(), torch_state)
        expected = metric(model, x.numpy(), y.numpy(), a_batch=a.detach().numpy())[0]
        assert value(i, "tests.dataset_fixtures:captum_noise_tunnel") == expected
    # samples 0 and 1 hold the same image: the draws are keyed to the id, not the content
    assert value(0, "Saliency") == value(1, "Saliency")
    assert value(0, "SmoothGrad") != value(1, "SmoothGrad")


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process(tmp_path):
    single = tmp_path / "single"
    _run(single, batch_size=1, exact=True)
    double = tmp_path / "double"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "quantus_metrics.evaluate",
        "--out",
        str(double),
        "--model",
        "tests.dataset_fixtures:tiny_model",
        "--data",
        "tests.dataset_fixtures:tiny_data",
        "--methods",
        ",".join(METHODS),
        "--metrics",
        ",".join(METRICS),
        "--exact",
        "--batch-size",
        "7",
        "--chunk-size",
        "10",
        "--n-resamples",
        "200",
        "--no-figures",
        "--no-progress",
    ]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = sorted(p.name for p in (double / "parts").iterdir())
    assert parts[0] == "part-0000000000-0000000007.parquet"  # rank 0's first batch
    assert "part-0000000010-0000000017.parquet" in parts  # rank 1's first batch
    _assert_same_rows(_table(single), _table(double), exact=True)
    assert (single / "results.parquet").read_bytes() == (double / "results.parquet").read_bytes()
    assert (single / "summary.csv").read_text() == (double / "summary.csv").read_text()


@pytest.mark.slow
def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    whole = tmp_path / "whole"
    _run(whole, batch_size=4)
    part = tmp_path / "part"
    first = _run(part, batch_size=4, max_batches=2)
    assert not first.complete and first.processed == 8
    assert not (part / "results.parquet").exists()
    model = tiny_model()
    with pytest.raises(KeyboardInterrupt):  # a kill in the middle of the next chunk
        evaluate_dataset(
            model, TinyData(crash_at=17), METHODS, METRICS, part, batch_size=4, **OPTIONS
        )
    # a process killed while writing leaves only a temporary file, which is not a part
    (part / "parts" / ".part-0000000016-0000000020.parquet.999.tmp").write_bytes(b"trunc")
    resumed = _run(part, batch_size=4)
    assert resumed.complete
    assert resumed.processed < 24 - 8  # the samples on disk were skipped
    assert (whole / "results.parquet").read_bytes() == (part / "results.parquet").read_bytes()
    assert (whole / "summary.csv").read_text() == (part / "summary.csv").read_text()


def test_quantus_metrics_are_keyed_and_the_global_rngs_untouched(tmp_path):
    import random

    import quantus
    from torch.utils.data import Subset

    metric = "quantus:FaithfulnessCorrelation(subset_size=8, nr_runs=20)"
    model, data = tiny_model(), Subset(tiny_data(), range(6))
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())  # noqa: NPY002
    for name, batch_size in (("b1", 1), ("b3", 3)):
        evaluate_dataset(
            model, data, ["Saliency"], ["quantus:Sparseness", metric], tmp_path / name,
            batch_size=batch_size, exact=True, **OPTIONS,
        )  # fmt: skip
    assert torch.equal(states[0], torch.get_rng_state())
    assert np.array_equal(states[1], np.random.get_state()[1])  # noqa: NPY002
    assert states[2] == random.getstate()
    a, b = _table(tmp_path / "b1"), _table(tmp_path / "b3")
    _assert_same_rows(a, b, exact=True)
    assert all(e is None for e in a["error"])
    x, y = tiny_data().x, tiny_data().y
    for i in (0, 1, 4):  # oracle: Quantus called alone with the sample's keyed global seed
        attribution = Saliency(model).attribute(x[i : i + 1], target=y[i : i + 1], abs=False)
        with keyed_global_rng(sample_seed(0, i, f"metric:{metric}:Saliency")):
            expected = quantus.FaithfulnessCorrelation(
                subset_size=8, nr_runs=20, disable_warnings=True, display_progressbar=False
            )(
                model, x[i : i + 1].numpy(), y[i : i + 1].numpy(),
                a_batch=attribution.detach().numpy(), channel_first=True, device="cpu",
            )[0]  # fmt: skip
        rows = [
            v for s, k, v in zip(a["sample"], a["metric"], a["value"]) if s == i and k == metric
        ]
        assert rows == [expected]
    scores = [v for k, v in zip(a["metric"], a["value"]) if k == metric]
    assert scores[0] != scores[1]  # same image, different sample ids: different subsets


def test_pattern_methods_are_fitted_once_per_rank_on_the_first_samples(tmp_path):
    from captum_ext import PatternAttribution

    model, data = tiny_model(), tiny_data()
    options = dict(OPTIONS, exact=True)
    evaluate_dataset(
        model, data, ["PatternAttribution"], ["SpectralComplexity"], tmp_path / "p", batch_size=5,
        **options,
    )  # fmt: skip
    rows = _table(tmp_path / "p")
    fitted = PatternAttribution(model).fit(data.x, progress=False)  # all 24 < 256 samples
    for i in (0, 7, 23):
        x, y = data.x[i : i + 1], data.y[i : i + 1]
        a = fitted.attribute(x, target=y).detach().numpy()
        expected = SpectralComplexity()(model, x.numpy(), y.numpy(), a_batch=a)[0]
        assert rows["value"][rows["sample"].index(i)] == expected


def test_another_configuration_is_refused(tmp_path):
    _run(tmp_path, batch_size=8, max_batches=1)
    with pytest.raises(ValueError, match="another configuration"):
        _run(tmp_path, batch_size=8, seed=1)


def _png(path: Path, value: float) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((8, 8, 3), int(value * 255), dtype=np.uint8)
    array[0, 0] = 0 if value > 0.5 else 255  # not constant: SSIM and spectra are defined
    Image.fromarray(array).save(path)


def test_bad_input_is_recorded_and_counted(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    from tests.dataset_fixtures import rgb_model

    folder = tmp_path / "images"
    (folder / "a").mkdir(parents=True)
    # the sample whose method raises comes first, so the others' maps must be re-indexed
    Image.fromarray(np.full((8, 8, 3), 255, dtype=np.uint8)).save(folder / "a" / "0.png")
    _png(folder / "a" / "1.png", 0.6)
    (folder / "a" / "2.png").write_bytes(b"not a png")  # unreadable
    _png(folder / "b" / "3.png", 0.2)
    _png(folder / "c" / "4.png", 0.4)  # class 2 of a 2-class model
    out = tmp_path / "out"
    model = rgb_model()
    result = evaluate_dataset(
        model,
        str(folder),
        ["tests.dataset_fixtures:fragile_method"],
        ["SpectralComplexity"],
        out,
        batch_size=8,
        image_size=8,
        progress=False,
        figures=False,
        n_resamples=200,
    )
    rows = _table(out)
    by_key = dict(zip(rows["key"], rows["error"]))
    assert by_key["a/1.png"] is None and by_key["b/3.png"] is None
    assert by_key["a/2.png"].startswith("load: ")
    assert by_key["a/0.png"] == "method: ValueError: white image"
    assert by_key["c/4.png"] == "label: 2 is outside the model's 2 classes"
    assert rows["target"][rows["key"].index("b/3.png")] == 1
    from quantus_metrics._dataset_io import ImageFolderDataset

    images = ImageFolderDataset(folder, image_size=8)
    for key, label in (("a/1.png", 0), ("b/3.png", 1)):
        x = images[images.files.index(folder / key)][0][None]
        a = Saliency(model).attribute(x, target=label, abs=False)
        expected = SpectralComplexity()(model, x.numpy(), np.array([label]), a_batch=a.numpy())
        np.testing.assert_allclose(rows["value"][rows["key"].index(key)], expected[0], rtol=1e-6)
    (summary,) = result.summary
    assert summary["n"] == 2 and summary["n_errors"] == 3
    assert result.extra["samples_with_errors"] == 3
    assert "| 2 | 3 |" in (out / "summary.md").read_text()


def test_bootstrap_interval_covers_the_mean_and_is_seeded(tmp_path):
    from quantus_metrics._dataset_io import bootstrap_mean_ci

    values = np.random.default_rng(3).normal(2.0, 1.0, size=400)
    low, high = bootstrap_mean_ci(values, 0.95, 4000, seed=5)
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))  # normal-theory oracle
    assert low < values.mean() < high
    assert abs((high - low) / 2 - half) < 0.1 * half
    assert (low, high) == bootstrap_mean_ci(values, 0.95, 4000, seed=5)
