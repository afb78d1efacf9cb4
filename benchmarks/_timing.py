"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def best_time(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Best wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def row(
    benchmark: str,
    model: str,
    method: str,
    seconds: float,
    baseline: str,
    baseline_seconds: float,
    target: float | None = None,
) -> dict[str, Any]:
    """One result row in the benchmark contract (see ``benchmarks/__init__.py``)."""
    return {
        "benchmark": benchmark,
        "model": model,
        "method": method,
        "seconds": seconds,
        "baseline": baseline,
        "ratio": seconds / baseline_seconds,
        "target": target,
    }


def print_rows(rows: Sequence[dict[str, Any]]) -> None:
    """Print rows as a Markdown table (ratio = seconds / baseline seconds)."""
    print("| benchmark | model | method | seconds | ratio | baseline | target | ok |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        target = "" if r["target"] is None else f"≤ {r['target']:g}"
        ok = "" if r["target"] is None else ("yes" if r["ratio"] <= r["target"] else "NO")
        print(
            f"| {r['benchmark']} | {r['model']} | {r['method']} | {r['seconds']:.4f} | "
            f"{r['ratio']:.2f}× | {r['baseline']} | {target} | {ok} |"
        )
