"""Benchmarks: each ``bench_*.py`` runs the competitor and ours in one process and prints ratios.

Contract: a module ``benchmarks/bench_<name>.py`` defines ``main(quick: bool = False) ->
list[dict]`` returning rows with the keys ``benchmark``, ``model``, ``method``, ``seconds``,
``baseline`` (what the ratio is relative to), ``ratio`` and ``target`` (``None`` or the
documented upper bound), and prints them as a table when run as ``python -m
benchmarks.bench_<name>``. ``make bench`` runs them all and writes ``benchmarks/RESULTS.md``.
"""
