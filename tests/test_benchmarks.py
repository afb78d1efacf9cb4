"""Every benchmark follows the contract and runs at quick size (speed is not asserted here)."""

from __future__ import annotations

import importlib

import pytest

from benchmarks.run_all import discover, render

REQUIRED = {"benchmark", "model", "method", "seconds", "baseline", "ratio", "target"}


@pytest.mark.slow
@pytest.mark.parametrize("name", discover())
def test_benchmark_quick_run_follows_contract(name):
    rows = importlib.import_module(f"benchmarks.{name}").main(quick=True)
    assert rows, f"{name} returned no rows"
    for row in rows:
        assert REQUIRED <= set(row), f"{name} row lacks {REQUIRED - set(row)}"
        assert row["seconds"] > 0 and row["ratio"] > 0
    assert name in render({name: rows}, 1.0, quick=True)
