"""Analyses of Sixt, Granz and Landgraf (2020), "When Explanations Lie", as plain functions.

- :mod:`~captum_ext.analysis.matrix_chains`: Appendix B (random matrix chains, Theorem 1's
  rank-1 convergence and its rate) and Figure 3 (singular values of PatternNet and
  PatternAttribution matrices).
- :mod:`~captum_ext.analysis.csc_views`: per-layer ``|cos|`` histograms (Figure 5 e–g) and CSC
  on a residual network with and without its skip connections.

No plotting here; the report (``captum_ext_report``) draws the figures.
"""

from captum_ext.analysis.csc_views import TinyResNet, abs_cos_histograms, csc_with_and_without_skips
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
    "TinyResNet",
    "abs_cos_histograms",
    "birkhoff_bound",
    "csc_with_and_without_skips",
    "decay_rate",
    "hilbert_diameter",
    "pattern_spectra",
    "predicted_rate",
    "simulate_chains",
    "singular_ratio",
]
