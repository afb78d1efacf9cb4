"""Pre-registered verdicts: a claim, its criteria written in code, and one of three outcomes.

A section states the paper's claim and, *before* looking at the numbers, the criteria that
decide it: one :class:`Criterion` per method or setting the paper names (a threshold, optionally
on a bootstrap confidence interval when the number is noisy), plus negative controls where one
exists (a random baseline that must *not* pass, a test that must be able to fail).
:func:`decide` then turns the evaluated criteria into

* ``confirmed`` -- every criterion holds;
* ``partly confirmed`` -- the core criteria hold but some others do not (or their CI straddles
  the threshold); the deviating methods/settings are named with their numbers;
* ``not confirmed`` -- a core criterion fails, or a negative control fails (then the test
  could not tell the claim from its negation);
* ``not tested`` -- nothing could be evaluated on this model (every criterion skipped).

Criteria are data, so tests can reach every outcome with synthetic numbers, and the report prints
them next to the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Outcome = Literal["confirmed", "partly confirmed", "not confirmed", "not tested"]
Status = Literal["pass", "fail", "inconclusive", "skipped"]

CONFIRMED: Outcome = "confirmed"
PARTLY: Outcome = "partly confirmed"
NOT_CONFIRMED: Outcome = "not confirmed"
NOT_TESTED: Outcome = "not tested"


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: str = "median",
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ``median`` or ``mean`` of ``values``.

    Uses a private ``numpy`` generator (the global RNG is untouched). A single value gives a
    degenerate interval ``(v, v)``; an empty input raises ``ValueError``.
    """
    data = np.asarray(values, dtype=np.float64).ravel()
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one value.")
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', got {statistic!r}.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    draws = data[rng.integers(0, data.size, size=(n_resamples, data.size))]
    stats = np.median(draws, axis=1) if statistic == "median" else draws.mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


@dataclass
class Criterion:
    """One pre-registered test: ``subject``'s ``quantity`` compared with ``threshold``.

    Parameters
    ----------
    subject : str
        The method or setting judged (named in a "partly" verdict).
    quantity : str
        What is measured, e.g. ``"median |cos| at the first layer"``.
    op : {">=", "<=", ">", "<", "true"}
        Direction of the test; ``"true"`` takes ``value`` as a boolean fact.
    threshold : float
        The pre-registered threshold (ignored for ``"true"``).
    core : bool
        A failing core criterion makes the claim "not confirmed"; a failing non-core one
        "partly confirmed".
    control : bool
        A negative control (a baseline that must not look like the effect). A failing control
        invalidates the test: "not confirmed".
    """

    subject: str
    quantity: str
    op: str
    threshold: float = math.nan
    core: bool = False
    control: bool = False
    value: float | None = None
    ci: tuple[float, float] | None = None
    skipped: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=", ">", "<", "true"):
            raise ValueError(f"op must be one of >=, <=, >, <, true; got {self.op!r}.")

    def _holds(self, v: float) -> bool:
        t = self.threshold
        return {">=": v >= t, "<=": v <= t, ">": v > t, "<": v < t}[self.op]

    @property
    def status(self) -> Status:
        if self.skipped is not None or self.value is None:
            return "skipped"
        if self.op == "true":
            return "pass" if bool(self.value) else "fail"
        if not math.isfinite(float(self.value)):
            return "fail"  # a non-finite measurement never supports a claim
        if self.ci is not None:
            low, high = self.ci
            both = self._holds(low), self._holds(high)
            if all(both):
                return "pass"
            if not any(both):
                return "fail"
            return "inconclusive"
        return "pass" if self._holds(float(self.value)) else "fail"

    def rule(self) -> str:
        """The criterion as text, e.g. ``"LRP-α1β0: median |cos| ≥ 0.99 (95 % CI)"``."""
        if self.op == "true":
            text = f"{self.subject}: {self.quantity}"
        else:
            sym = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}[self.op]
            text = f"{self.subject}: {self.quantity} {sym} {self.threshold:g}"
        if self.ci is not None:
            text += " (whole CI)"
        tags = [t for t, on in (("core", self.core), ("negative control", self.control)) if on]
        return text + (f" [{', '.join(tags)}]" if tags else "")

    def measured(self) -> str:
        if self.skipped is not None:
            return f"skipped: {self.skipped}"
        if self.value is None:
            return "not measured"
        if self.op == "true":
            return "yes" if bool(self.value) else "no"
        text = f"{float(self.value):.4g}"
        if self.ci is not None:
            text += f" [{self.ci[0]:.4g}, {self.ci[1]:.4g}]"
        return text


@dataclass
class Verdict:
    """The outcome of a :class:`Claim`, with the reason and the deviating criteria."""

    outcome: Outcome
    reason: str
    deviations: list[Criterion] = field(default_factory=list)

    @property
    def confirmed(self) -> bool | None:
        """``True`` / ``False`` for confirmed / not confirmed, ``None`` otherwise."""
        return {CONFIRMED: True, NOT_CONFIRMED: False}.get(self.outcome)


@dataclass
class Claim:
    """A paper's claim and the criteria that decide it (fill ``value`` after measuring)."""

    text: str
    criteria: list[Criterion] = field(default_factory=list)

    def add(self, criterion: Criterion) -> Criterion:
        self.criteria.append(criterion)
        return criterion

    def decide(self) -> Verdict:
        return decide(self.criteria)

    def criteria_table(self) -> str:
        """A Markdown table: criterion, measured value, status."""
        from captum_ext_report.plotting import markdown_table

        rows = [[c.rule(), c.measured(), c.status] for c in self.criteria]
        return markdown_table(["pre-registered criterion", "measured", "status"], rows)


def _describe(criteria: Sequence[Criterion]) -> str:
    return "; ".join(f"{c.subject} {c.quantity} = {c.measured()} ({c.status})" for c in criteria)


def decide(criteria: Sequence[Criterion]) -> Verdict:
    """Turn evaluated criteria into one of the outcomes (see the module docstring)."""
    live = [c for c in criteria if c.status != "skipped"]
    if not live:
        return Verdict(NOT_TESTED, "no criterion could be evaluated on this model")
    controls = [c for c in live if c.control and c.status != "pass"]
    if controls:
        return Verdict(
            NOT_CONFIRMED, "negative control failed, the test cannot tell: " + _describe(controls),
            controls,
        )  # fmt: skip
    core = [c for c in live if c.core and c.status != "pass"]
    if core:
        return Verdict(NOT_CONFIRMED, "core criterion not met: " + _describe(core), core)
    rest = [c for c in live if c.status != "pass"]
    if rest:
        return Verdict(PARTLY, "deviating: " + _describe(rest), rest)
    skipped = [c for c in criteria if c.status == "skipped"]
    note = f" ({len(skipped)} criterion/criteria skipped)" if skipped else ""
    return Verdict(CONFIRMED, f"all {len(live)} criteria hold{note}")


def combine_outcomes(*outcomes: str) -> str:
    """One outcome for a claim tested in parts: confirmed when every part is, not confirmed
    when any part is not, partly confirmed otherwise."""
    if all(o == CONFIRMED for o in outcomes):
        return CONFIRMED
    return NOT_CONFIRMED if NOT_CONFIRMED in outcomes else PARTLY


def outcome_flag(outcome: str) -> bool | None:
    """``Section.confirmed`` for an outcome: True, False, or None for a partial one."""
    return True if outcome == CONFIRMED else False if outcome == NOT_CONFIRMED else None
