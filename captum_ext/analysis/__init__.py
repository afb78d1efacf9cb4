"""Analyses of Sixt, Granz and Landgraf (2020), "When Explanations Lie", as plain functions.

- :mod:`~captum_ext.analysis.matrix_chains`: Appendix B (random matrix chains, Theorem 1's
  rank-1 convergence and its rate) and Figure 3 (singular values of PatternNet and
  PatternAttribution matrices).
The CSC views (per-layer ``|cos|`` histograms, Figure 5 e–g, and CSC with and without skip
connections) use the metric and live beside it, in :mod:`quantus_metrics.csc_analysis`.

No plotting here; the report (``captum_ext_report``) draws the figures.
"""

from captum_ext.analysis.matrix_chains import (
    ChainSimulation,
    PatternSpectra,
    birkhoff_bound,
    decay_rate,
    hilbert_diameter,
    pattern_spectra,
    predicted_rate,
    simulate_chains,
    singular_ratio,
)

__all__ = [
    "ChainSimulation",
    "PatternSpectra",
    "birkhoff_bound",
    "decay_rate",
    "hilbert_diameter",
    "pattern_spectra",
    "predicted_rate",
    "simulate_chains",
    "singular_ratio",
]
