"""Dataset evaluation: throughput for 1 and 2 processes, streaming overhead, flat peak memory.

- throughput: ``python -m quantus_metrics.evaluate`` under ``torchrun --standalone
  --nproc-per-node 1`` and ``2`` (gloo, ``OMP_NUM_THREADS=1`` in both) on the digits CNN's test
  split, Saliency and LRP scored by SpectralComplexity; seconds are rank 0's loop time, best of
  three alternating runs;
- overhead: loop time not spent explaining and scoring (loading, rows, Parquet parts), as a
  fraction of the explain + metric time, in one process (target ≤ 5 %);
- memory: peak resident memory of a whole run (loop, merge, summary) at 1 000 and 10 000
  synthetic samples, each in a fresh process (target: ratio ≤ 1.10);
- per-sample cost: a sample-seeded metric (RandomLogitSSIM) called per sample, as the evaluation
  does to key its draws, against one batched call;
- EfficientNet-Lite0 (``captum_ext.zoo.efficientnet_lite0``) 1 vs 2 processes where it exists.

Run ``python -m benchmarks.bench_dataset`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from benchmarks._timing import row

ROOT = Path(__file__).resolve().parents[1]
BENCH = "dataset"


class SyntheticDigits(Dataset):
    """``n`` seeded 1×32×32 images made on the fly from their index (nothing held in memory)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        generator = torch.Generator().manual_seed(index)
        return torch.rand(1, 32, 32, generator=generator), index % 10


def synthetic_1000() -> SyntheticDigits:
    return SyntheticDigits(1_000)


def synthetic_10000() -> SyntheticDigits:
    return SyntheticDigits(10_000)


def synthetic_100() -> SyntheticDigits:
    return SyntheticDigits(100)


def digits_model() -> torch.nn.Module:
    from captum_ext.zoo import train_digits_cnn

    return train_digits_cnn(progress=False).model


def digits_all():
    from captum_ext.zoo import DigitsDataset

    return DigitsDataset("all")


def digits_test():
    from captum_ext.zoo import DigitsDataset

    return DigitsDataset("test")


def _torchrun(nproc: int, out: Path, data: str, model: str, extra: list[str]) -> float:
    # One thread per process for 1 and 2 processes alike (torchrun sets it only for N > 1):
    # on a loaded machine two OpenMP threads per process wait on each other and hide the scaling.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(nproc), "-m", "quantus_metrics.evaluate", "--out", str(out),
        "--model", model, "--data", data, "--batch-size", "32", "--no-progress", "--no-figures",
        *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads((out / "summary.json").read_text())["last_call_seconds_rank0"]


def _best_of(repeats: int, model: str, data: str, extra: list[str], tmp: Path):
    """Best loop time of 1 and of 2 processes, alternating runs (the machine is shared)."""
    best = {1: float("inf"), 2: float("inf")}
    for r in range(repeats):
        for nproc in (1, 2):
            out = tmp / f"run-{nproc}-{r}"
            best[nproc] = min(best[nproc], _torchrun(nproc, out, data, model, extra))
            shutil.rmtree(out, ignore_errors=True)
    return best[1], best[2]


def _peak_rss_mb(n: int, out: Path) -> tuple[float, float]:
    code = (
        "import resource, time, torch; torch.set_num_threads(1)\n"
        "from quantus_metrics.dataset import evaluate_dataset\n"
        "from benchmarks.bench_dataset import SyntheticDigits, digits_model\n"
        "t = time.perf_counter()\n"
        f"evaluate_dataset(digits_model(), SyntheticDigits({n}), ['Saliency'],\n"
        f"    ['SpectralComplexity'], {str(out)!r}, batch_size=64, progress=False,\n"
        "    figures=False)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
        " time.perf_counter() - t)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    mb, seconds = (float(v) for v in done.stdout.split()[-2:])
    return mb, seconds


def _per_sample_cost(n: int) -> tuple[float, float]:
    import numpy as np

    from quantus_metrics import RandomLogitSSIM, explain_func_from

    model = digits_model()
    x, y = digits_test().tensors()
    x, y = x[:n].numpy(), y[:n].numpy()
    from captum.attr import Saliency

    explain = explain_func_from(Saliency, abs=False)

    def call(xs: np.ndarray, ys: np.ndarray, seed: int) -> None:
        RandomLogitSSIM(seed=seed)(model, xs, ys, explain_func=explain, explain_func_kwargs={})

    call(x[:2], y[:2], 0)
    start = time.perf_counter()
    call(x, y, 0)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(n):
        call(x[i : i + 1], y[i : i + 1], i)
    return time.perf_counter() - start, batched


def main(quick: bool = False) -> list[dict[str, Any]]:
    from quantus_metrics.dataset import evaluate_dataset

    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_dataset_"))
    try:
        # streaming overhead, in this process
        data = digits_test()
        if quick:
            data = Subset(data, range(64))
        result = evaluate_dataset(
            digits_model(), data, ["Saliency", "LRP"], ["SpectralComplexity"], tmp / "overhead",
            batch_size=32, progress=False, figures=False,
        )  # fmt: skip
        n = result.n_samples
        overhead = result.seconds - result.compute_seconds
        rows.append(
            row(BENCH, f"digits CNN, {n} samples", "streaming + Parquet overhead", overhead,
                f"explain + metric {result.compute_seconds:.2f} s", result.compute_seconds, 0.05)
        )  # fmt: skip
        # per-sample calls of a sample-seeded metric
        per_sample, batched = _per_sample_cost(4 if quick else 16)
        rows.append(
            row(BENCH, "digits CNN", "RandomLogitSSIM per sample (keyed seeds)", per_sample,
                "one batched call", batched)
        )  # fmt: skip
        if quick:
            mb_small, _ = _peak_rss_mb(100, tmp / "m1")
            rows.append(row(BENCH, "synthetic 100", f"peak RSS {mb_small:.0f} MB", 1.0, "-", 1.0))
            return rows
        # throughput, 1 vs 2 processes
        model = "benchmarks.bench_dataset:digits_model"
        spec = "benchmarks.bench_dataset:digits_test"
        extra = ["--methods", "Saliency,LRP", "--metrics", "SpectralComplexity"]
        one, two = _best_of(3, model, spec, extra, tmp)
        rows.append(row(BENCH, "digits CNN", f"1 process: {n / one:.0f} samples/s", one,
                        "1 process", one))  # fmt: skip
        rows.append(row(BENCH, "digits CNN", f"2 processes: {n / two:.0f} samples/s", two,
                        "1 process", one))  # fmt: skip
        import captum_ext.zoo as zoo

        if hasattr(zoo, "efficientnet_lite0"):
            model = "captum_ext.zoo:efficientnet_lite0"
            data = "benchmarks.bench_dataset:synthetic_rgb_64"
            extra = ["--methods", "Saliency", "--metrics", "SpectralComplexity"]
            one, two = _best_of(2, model, data, extra, tmp)
            rows.append(row(BENCH, "EfficientNet-Lite0", f"1 process: {64 / one:.1f} samples/s",
                            one, "1 process", one))  # fmt: skip
            rows.append(row(BENCH, "EfficientNet-Lite0", f"2 processes: {64 / two:.1f} samples/s",
                            two, "1 process", one))  # fmt: skip
        # flat memory
        mb_small, s_small = _peak_rss_mb(1_000, tmp / "m1")
        mb_large, s_large = _peak_rss_mb(10_000, tmp / "m2")
        rows.append(
            row(BENCH, "digits CNN, synthetic", f"peak RSS 10 000 samples: {mb_large:.0f} MB",
                s_large, f"1 000 samples: {mb_small:.0f} MB", s_small)
        )  # fmt: skip
        rows[-1]["ratio"] = mb_large / mb_small  # the memory ratio, not the time ratio
        rows[-1]["target"] = 1.10
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def synthetic_rgb_64():
    """64 seeded 3×224×224 images (EfficientNet-Lite0 throughput)."""

    class _RGB(Dataset):
        def __len__(self) -> int:
            return 64

        def __getitem__(self, index: int):
            generator = torch.Generator().manual_seed(index)
            return torch.rand(3, 224, 224, generator=generator), index % 1000

    return _RGB()


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for r in main(quick=quick):
        print(f"{r['model']} | {r['method']} | {r['seconds']:.3f} s | {r['ratio']:.3f} | "
              f"{r['baseline']} | target {r['target']}")  # fmt: skip
