"""Data in, rows out: image folders, fault-tolerant loading, Parquet parts, merge and summary.

Results are Parquet (Apache Arrow's columnar file format through ``pyarrow``): typed columns,
compressed, appendable by row group, and read by pandas, polars, DuckDB and Spark alike. Each
finished run of contiguous samples becomes one part file, written to a temporary name and renamed
(atomic on POSIX), so an interrupted run leaves only complete parts. The merge streams the parts
in sample order into fixed-size row groups, so the merged file does not depend on how the work
was split (batch size, processes, interruptions).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from captum_ext.core.optional import require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ROW_GROUP = 65_536
_PART = re.compile(r"^part-(\d{10})-(\d{10})\.parquet$")


def _pa():
    purpose = "The dataset evaluation (Parquet output)"
    return require("pyarrow", purpose, "dataset"), require("pyarrow.parquet", purpose, "dataset")


def schema():
    pa, _ = _pa()
    return pa.schema(
        [
            ("sample", pa.int64()),
            ("key", pa.string()),
            ("target", pa.int64()),
            ("method", pa.string()),
            ("metric", pa.string()),
            ("layer", pa.string()),
            ("value", pa.float64()),
            ("error", pa.string()),
        ]
    )


# ------------------------------------------------------------------------------------ image folder


class ImageFolderDataset(Dataset):
    """Images under ``root`` read with PIL, as ``(C, H, W)`` float tensors in [0, 1].

    With one sub-folder per class (as torchvision's ``ImageFolder``), labels are the indices of
    the sorted class names; a flat folder has no labels (the model's prediction is explained).
    A file that cannot be read raises in ``__getitem__``; the evaluation records it in its row.

    Parameters
    ----------
    root : str or Path
        The folder.
    image_size : int
        Square resize (bilinear) so images batch together.
    mean, std : sequence of float, optional
        Per-channel normalisation after scaling to [0, 1].
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int = 224,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root} is not a folder of images.")
        if image_size < 1:
            raise ValueError(f"image_size must be ≥ 1, got {image_size}.")
        files = sorted(
            p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise ValueError(f"{self.root} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
        nested = all(len(p.relative_to(self.root).parts) >= 2 for p in files)
        self.classes = sorted({p.relative_to(self.root).parts[0] for p in files}) if nested else []
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        self.files = files
        self.image_size = image_size
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.files)

    def key(self, index: int) -> str:
        """The file's path relative to ``root`` (the ``key`` column)."""
        return self.files[index].relative_to(self.root).as_posix()

    def __getitem__(self, index: int) -> Any:
        from PIL import Image

        path = self.files[index]
        with Image.open(path) as image:
            image = image.convert("RGB").resize(
                (self.image_size, self.image_size), Image.Resampling.BILINEAR
            )
            array = np.asarray(image, dtype=np.float32) / 255.0
        x = torch.from_numpy(array.copy()).permute(2, 0, 1)
        if self.mean is not None:
            x = x - self.mean
        if self.std is not None:
            x = x / self.std
        if not self.classes:
            return x
        return x, self._class_index[path.relative_to(self.root).parts[0]]


# ---------------------------------------------------------------------------- fault-tolerant load


@dataclass
class Item:
    """One loaded sample, or the error that loading it raised."""

    index: int
    key: str
    x: torch.Tensor | None
    label: int | None
    error: str | None


class KeyedDataset(Dataset):
    """Wraps a dataset so that a sample that fails to load becomes an :class:`Item` with an error
    instead of killing the batch (and the DataLoader worker)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._key = getattr(dataset, "key", None)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Item:
        key = str(self._key(index)) if callable(self._key) else str(index)
        try:
            sample = self.dataset[index]
            x, label = _split_sample(sample)
            return Item(index, key, x, label, None)
        except Exception as err:  # recorded in the row; the run continues
            return Item(index, key, None, None, f"load: {type(err).__name__}: {err}")


def _split_sample(sample: Any) -> tuple[torch.Tensor, int | None]:
    if isinstance(sample, (tuple, list)):
        if not sample:
            raise ValueError("the dataset returned an empty sample.")
        x, label = sample[0], (sample[1] if len(sample) > 1 else None)
    else:
        x, label = sample, None
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        raise TypeError(f"inputs must be floating point, got {x.dtype}.")
    if label is not None:
        label = torch.as_tensor(label)
        if label.numel() != 1 or label.is_floating_point():
            raise ValueError(f"a label must be one integer, got {label!r}.")
        label = int(label)
    return x, label


def collate(items: list[Item]) -> list[Item]:
    """Keep the items as they are (stacking happens after the bad ones are set aside)."""
    return items


def stack_valid(items: list[Item]) -> tuple[list[Item], torch.Tensor | None]:
    """Items that loaded with the first good item's shape, and their stacked inputs.

    Items of another shape get an error (the batch cannot hold them)."""
    good = [it for it in items if it.error is None]
    if not good:
        return [], None
    shape = good[0].x.shape  # type: ignore[union-attr]
    for it in good:
        if it.x.shape != shape:  # type: ignore[union-attr]
            it.error = f"load: shape {tuple(it.x.shape)} differs from {tuple(shape)} in the batch"
            it.x = None
    good = [it for it in good if it.error is None]
    return good, torch.stack([it.x for it in good])  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ parts


def part_name(start: int, stop: int) -> str:
    return f"part-{start:010d}-{stop:010d}.parquet"


def done_ranges(parts_dir: Path) -> list[tuple[int, int]]:
    """``[start, stop)`` sample ranges of the complete part files, sorted."""
    if not parts_dir.is_dir():
        return []
    found = []
    for entry in parts_dir.iterdir():
        match = _PART.match(entry.name)
        if match:
            found.append((int(match.group(1)), int(match.group(2))))
    return sorted(found)


def write_part(parts_dir: Path, start: int, stop: int, rows: dict[str, list]) -> None:
    """Write one part atomically (temporary name, then rename)."""
    pa, pq = _pa()
    table = pa.Table.from_pydict(rows, schema=schema())
    final = parts_dir / part_name(start, stop)
    tmp = parts_dir / f".{final.name}.{os.getpid()}.tmp"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, final)


def missing_runs(start: int, stop: int, done: Sequence[tuple[int, int]]) -> list[range]:
    """Contiguous runs of ``[start, stop)`` not covered by ``done``."""
    covered = np.zeros(stop - start, dtype=bool)
    for lo, hi in done:
        lo, hi = max(lo, start), min(hi, stop)
        if lo < hi:
            covered[lo - start : hi - start] = True
    runs, i = [], 0
    while i < len(covered):
        if covered[i]:
            i += 1
            continue
        j = i
        while j < len(covered) and not covered[j]:
            j += 1
        runs.append(range(start + i, start + j))
        i = j
    return runs


# ------------------------------------------------------------------------------- merge, summary


def merge_parts(parts_dir: Path, n_samples: int, out_file: Path) -> dict[tuple, Any]:
    """Stream the parts in sample order into ``out_file``; return the values per group.

    Returns ``{(method, metric, layer): float64 array}`` and, under ``("errors", method,
    metric)``, the sorted sample ids with an error.
    """
    pa, pq = _pa()
    ranges = done_ranges(parts_dir)
    position = 0
    for lo, hi in ranges:
        if lo != position:
            raise RuntimeError(
                f"results for samples {position}…{lo - 1} are missing; run the command again."
            )
        position = hi
    if position != n_samples:
        raise RuntimeError(f"results for samples {position}…{n_samples - 1} are missing.")
    groups: dict[tuple, list[np.ndarray]] = {}
    errors: dict[tuple, set[int]] = {}
    tmp = out_file.with_name(f".{out_file.name}.{os.getpid()}.tmp")
    pending: list[Any] = []
    n_pending = 0
    with pq.ParquetWriter(tmp, schema(), compression="zstd") as writer:
        for lo, hi in ranges:
            table = pq.read_table(parts_dir / part_name(lo, hi), schema=schema())
            _collect(table, groups, errors)
            pending.append(table)
            n_pending += table.num_rows
            while n_pending >= ROW_GROUP:  # fixed row groups: the file ignores part boundaries
                merged = pa.concat_tables(pending)
                writer.write_table(merged.slice(0, ROW_GROUP), row_group_size=ROW_GROUP)
                rest = merged.slice(ROW_GROUP)
                pending, n_pending = [rest], rest.num_rows
        if n_pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
    os.replace(tmp, out_file)
    values: dict[tuple, Any] = {k: np.concatenate(v) for k, v in groups.items()}
    for k, ids in errors.items():
        values[("errors", *k)] = np.array(sorted(ids), dtype=np.int64)
    return values


def _collect(table: Any, groups: dict, errors: dict) -> None:
    cols = table.to_pydict()
    keyed: dict[tuple, list[float]] = {}
    for sample, method, metric, layer, value, error in zip(
        cols["sample"], cols["method"], cols["metric"], cols["layer"], cols["value"], cols["error"]
    ):
        if error is not None:
            errors.setdefault((method, metric), set()).add(sample)
        else:
            keyed.setdefault((method, metric, layer), []).append(value)
    for k, v in keyed.items():
        groups.setdefault(k, []).append(np.asarray(v, dtype=np.float64))


def bootstrap_mean_ci(
    values: np.ndarray, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean with memory bounded by ~10⁶ draws at a time
    (the dataset can be large; ``quantus_metrics._bootstrap`` holds ``2048 × n`` counts)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    step = max(1, 1_000_000 // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, step):
        size = min(step, n_resamples - start)
        means[start : start + size] = values[rng.integers(0, n, size=(size, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


SUMMARY_COLUMNS = (
    "method",
    "metric",
    "layer",
    "n",
    "n_errors",
    "mean",
    "std",
    "median",
    "ci_low",
    "ci_high",
)


def summary_rows(
    values: dict[tuple, Any],
    order: list[tuple[str, str]],
    confidence: float,
    n_resamples: int,
    seed_of: Any,
) -> list[dict[str, Any]]:
    """One row per (method, metric, layer) in run order: finite-value statistics, bootstrap CI
    of the mean, and the number of samples whose row holds an error."""
    rows = []
    for method, metric in order:
        layers = [k[2] for k in values if k[0] == method and k[1] == metric]
        n_errors = len(values.get(("errors", method, metric), ()))
        if not layers:
            layers = [""]
        for layer in layers:
            v = values.get((method, metric, layer), np.empty(0))
            finite = v[np.isfinite(v)]
            low, high = bootstrap_mean_ci(
                finite, confidence, n_resamples, seed_of(method, metric, layer)
            )
            rows.append(
                {
                    "method": method,
                    "metric": metric,
                    "layer": layer,
                    "n": int(len(finite)),
                    "n_errors": int(n_errors),
                    "mean": float(finite.mean()) if len(finite) else math.nan,
                    "std": float(finite.std(ddof=1)) if len(finite) > 1 else math.nan,
                    "median": float(np.median(finite)) if len(finite) else math.nan,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return rows


def write_summary(rows: list[dict[str, Any]], folder: Path, confidence: float) -> None:
    """``summary.csv`` (machine-readable) and ``summary.md`` (a table to read)."""
    import csv

    with open(folder / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    pct = f"{100 * confidence:g} %"
    lines = [
        f"| method | metric | layer | n | errors | mean | {pct} CI | median |",
        "|---|---|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['metric']} | {r['layer']} | {r['n']} | {r['n_errors']} | "
            f"{r['mean']:.4g} | [{r['ci_low']:.4g}, {r['ci_high']:.4g}] | {r['median']:.4g} |"
        )
    (folder / "summary.md").write_text("\n".join(lines) + "\n")


def iter_batches(runs: Sequence[range], batch_size: int) -> Iterator[range]:
    """Batches of at most ``batch_size`` consecutive samples within each run."""
    for run in runs:
        for start in range(run.start, run.stop, batch_size):
            yield range(start, min(start + batch_size, run.stop))
