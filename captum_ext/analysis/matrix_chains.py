"""Products of back-propagation matrices: Appendix B and Figure 3 of Sixt et al. (2020).

Sixt, Granz and Landgraf, "When Explanations Lie: Why Many Modified BP Attributions Fail",
ICML 2020. A modified backward pass multiplies the relevance by one matrix per layer; Theorem 1
says a product of non-negative matrices (the z⁺ rule, eq. 5) converges to rank 1, so the
explanation stops depending on the later layers. Convergence is measured by the ratio of the
second to the first singular value of the product, ``σ₂/σ₁`` (0 for rank 1).

- :func:`simulate_chains` (Appendix B): random ReLU networks; the z⁺ matrices (eq. 5) and the
  gradient matrices ``WᵀM`` (eq. 2) of the same forward pass, plus i.i.d. positive and i.i.d.
  Gaussian matrices for which the rate is known; ``σ₂/σ₁`` of the product at every depth.
- :func:`decay_rate`: per-layer factor of an exponential fit ``σ₂/σ₁ ≈ c·ρᵏ``.
- :func:`predicted_rate`: rates known in closed form — i.i.d. positive entries with mean μ and
  standard deviation s: ``ρ ≈ s/(μ√n)`` (Perron root ``nμ`` vs the ``s√n`` growth of the
  centred part); i.i.d. Gaussian: ``ρ = exp(−½[ψ(n/2) − ψ((n−1)/2)])`` from the gap of the
  first two Lyapunov exponents of Gaussian products (Newman 1986), close to 1: no collapse.
- :func:`hilbert_diameter` / :func:`birkhoff_bound`: for strictly positive matrices the
  Birkhoff–Hopf theorem bounds the projective diameter of the product's columns by
  ``Δ(A_k) Πᵢ<ₖ tanh(Δ(Aᵢ)/4)`` — the rigorous exponential rate behind Theorem 1.
- :func:`pattern_spectra` (Figure 3): ``σ₁/σ₂`` of the PatternNet patterns ``A``, the weights
  ``W`` and ``W ⊙ A`` per layer, of their 1×1 kernel slices, and of the inter-layer chain
  members ``T_l = √Σ_l V_l U_{l+1} √Σ_{l+1}`` (with ``(·)ᵀ = UΣV`` per layer), computed from
  Gram-matrix eigendecompositions (ratios above 1e7 are not resolved and reported as ``inf``).

Derivations of the closed-form rates: ``docs/explanations_lie.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from captum_ext.core.validation import check_positive_int

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

KINDS = ("zplus", "gradient", "positive", "gaussian")


def singular_ratio(matrix: np.ndarray) -> float:
    """``σ₂/σ₁`` of a matrix (0 for rank ≤ 1, NaN for the zero matrix)."""
    s = np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)
    if s.size < 2:
        return 0.0
    return float(s[1] / s[0]) if s[0] > 0 else float("nan")


def hilbert_diameter(matrix: np.ndarray) -> float:
    """Hilbert projective diameter of the columns of a strictly positive matrix.

    ``max_{j,l} log max_i (a_ij/a_il) + log max_i (a_il/a_ij)``; ``inf`` with a zero entry.
    """
    a = np.asarray(matrix, dtype=np.float64)
    if (a <= 0).any():
        return float("inf")
    log = np.log(a)
    diff = log[:, :, None] - log[:, None, :]  # (rows, j, l)
    return float((diff.max(0) + (-diff).max(0)).max())


def birkhoff_bound(matrices: list[np.ndarray]) -> np.ndarray:
    """Upper bounds of :func:`hilbert_diameter` of ``A_1 ⋯ A_k`` for ``k = 1…len(matrices)``.

    The columns of ``A_1 ⋯ A_k`` are ``A_1 ⋯ A_{k−1}`` applied to the columns of ``A_k``; each
    positive ``A_i`` contracts the Hilbert metric by ``tanh(Δ(A_i)/4)`` (Birkhoff–Hopf).
    """
    diameters = [hilbert_diameter(a) for a in matrices]
    factors = np.tanh(np.asarray(diameters) / 4.0)
    return np.array([diameters[k] * np.prod(factors[:k]) for k in range(len(matrices))])


@dataclass
class ChainSimulation:
    """``σ₂/σ₁`` of products of random back-propagation matrices.

    Attributes
    ----------
    ratios : dict of str to np.ndarray
        ``(n_trials, depth)`` ratio of the product of the first ``k`` matrices, per kind.
    width : int
        Matrix size ``n``.
    hilbert : np.ndarray
        ``(n_trials, depth)`` Hilbert diameter of the ``"positive"`` products.
    bounds : np.ndarray
        ``(n_trials, depth)`` Birkhoff–Hopf bounds of ``hilbert``.
    low : float
        Lower end of the uniform entries of the ``"positive"`` matrices.
    """

    ratios: dict[str, np.ndarray] = field(default_factory=dict)
    width: int = 0
    hilbert: np.ndarray | None = None
    bounds: np.ndarray | None = None
    low: float = 0.0

    def median(self, kind: str) -> np.ndarray:
        """Median ratio over trials at every depth."""
        # no interpolation: two infinite (unresolved) ratios must not average to NaN
        return np.quantile(self.ratios[kind], 0.5, axis=0, method="inverted_cdf")


def _product_ratios(matrices: list[np.ndarray]) -> np.ndarray:
    product = np.eye(matrices[0].shape[0])
    out = []
    for matrix in matrices:
        product = product @ matrix
        product /= np.linalg.norm(product)  # the ratio is scale free; avoid under/overflow
        out.append(singular_ratio(product))
    return np.array(out)


def _relu_network_chains(
    rng: np.random.Generator, width: int, depth: int, stabilizer: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """z⁺ (eq. 5) and gradient (``WᵀM``, eq. 2) matrices of one random ReLU forward pass."""
    h = np.abs(rng.standard_normal(width))
    zplus, gradient = [], []
    for _ in range(depth):
        w = rng.standard_normal((width, width)) * np.sqrt(2.0 / width)  # He init
        positive = np.maximum(w * h[None, :], 0.0)  # [w_ij h_j]⁺, i output, j input
        zplus.append((positive / (positive.sum(1, keepdims=True) + stabilizer)).T)
        z = w @ h
        gradient.append(w.T * (z > 0)[None, :])
        h = np.maximum(z, 0.0)
    return zplus, gradient


def simulate_chains(
    width: int = 32,
    depth: int = 20,
    n_trials: int = 20,
    seed: int = 0,
    low: float = 0.0,
    stabilizer: float = 1e-12,
    progress: bool = False,
) -> ChainSimulation:
    """Appendix B: ``σ₂/σ₁`` of products of random matrices of growing depth.

    Parameters
    ----------
    width : int
        Matrix size ``n``.
    depth : int
        Longest product.
    n_trials : int
        Independent chains per kind.
    seed : int
        Seed of a private ``numpy`` generator (the global RNGs are untouched).
    low : float
        The ``"positive"`` matrices have i.i.d. ``U(low, 1)`` entries (``low > 0`` makes them
        strictly positive, which the Birkhoff–Hopf bound needs).
    stabilizer : float
        Added to the z⁺ denominators (a unit with no positive input passes nothing).
    progress : bool
        Show a progress bar over trials.

    Returns
    -------
    ChainSimulation
    """
    check_positive_int("width", width, minimum=2)
    check_positive_int("depth", depth)
    check_positive_int("n_trials", n_trials)
    if not 0.0 <= low < 1.0:
        raise ValueError(f"low must be in [0, 1), got {low}.")
    rng = np.random.default_rng(seed)
    ratios: dict[str, list[np.ndarray]] = {kind: [] for kind in KINDS}
    hilbert, bounds = [], []
    for _ in tqdm(range(n_trials), disable=not progress, desc="Appendix B chains"):
        zplus, gradient = _relu_network_chains(rng, width, depth, stabilizer)
        positive = [rng.uniform(low, 1.0, (width, width)) for _ in range(depth)]
        gaussian = [rng.standard_normal((width, width)) / np.sqrt(width) for _ in range(depth)]
        for kind, matrices in zip(KINDS, (zplus, gradient, positive, gaussian), strict=True):
            ratios[kind].append(_product_ratios(matrices))
        if low > 0:
            products, product = [], np.eye(width)
            for matrix in positive:
                product = product @ matrix
                product /= product.sum()
                products.append(hilbert_diameter(product))
            hilbert.append(products)
            bound = birkhoff_bound(positive)
            bounds.append(bound)
    return ChainSimulation(
        ratios={kind: np.array(values) for kind, values in ratios.items()},
        width=width,
        hilbert=np.array(hilbert) if hilbert else None,
        bounds=np.array(bounds) if bounds else None,
        low=low,
    )


def decay_rate(ratios: np.ndarray, floor: float = 1e-12) -> tuple[float, float]:
    """Per-layer factor ``ρ`` and ``R²`` of a least-squares fit ``log(σ₂/σ₁) ≈ a + k log ρ``.

    Depths whose ratio is at or below ``floor`` (float64 resolution) are left out.
    """
    values = np.asarray(ratios, dtype=np.float64)
    depth = np.arange(1, len(values) + 1)
    keep = (values > floor) & np.isfinite(values)
    if keep.sum() < 2:
        raise ValueError("need at least two depths above the floor to fit a rate.")
    x, y = depth[keep], np.log(values[keep])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (residual**2).sum() / total if total > 0 else 1.0
    return float(np.exp(slope)), float(r2)


def predicted_rate(kind: str, width: int, low: float = 0.0) -> float:
    """Closed-form per-layer factor for ``"positive"`` (U(low, 1)) or ``"gaussian"`` chains."""
    if kind == "positive":
        mean, std = (1.0 + low) / 2.0, (1.0 - low) / np.sqrt(12.0)
        return float(std / (mean * np.sqrt(width)))
    if kind == "gaussian":
        halves = torch.tensor([width / 2.0, (width - 1) / 2.0], dtype=torch.float64)
        psi = torch.special.digamma(halves)
        return float(torch.exp(-0.5 * (psi[0] - psi[1])))
    raise ValueError(f"no closed form for kind {kind!r}; use 'positive' or 'gaussian'.")


# --- Figure 3 --------------------------------------------------------------------------------


@dataclass
class PatternSpectra:
    """``σ₁/σ₂`` per layer for the patterns ``A``, the weights ``W`` and ``W ⊙ A``.

    Attributes
    ----------
    layers : list of str
        Layer names in forward order.
    full : dict of str to dict of str to float
        ``{"A"|"W"|"W*A": {layer: σ₁/σ₂ of the (out, in·k·k) matrix}}`` (Figure 3a).
    sliced : dict of str to dict of str to np.ndarray
        ``σ₁/σ₂`` of every 1×1 slice of a conv kernel (one value for dense layers) (Fig. 3b).
    inter_layer : dict of str to dict of str to float
        ``σ₁/σ₂`` of ``T_l = √Σ_l V_l U_{l+1} √Σ_{l+1}`` for consecutive layers whose sizes
        match (centre slices of conv kernels), keyed by ``"lower→upper"`` (Figure 3c).
    """

    layers: list[str] = field(default_factory=list)
    full: dict[str, dict[str, float]] = field(default_factory=dict)
    sliced: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    inter_layer: dict[str, dict[str, float]] = field(default_factory=dict)


_RESOLUTION = 1e-7  # σ₂/σ₁ below this is not resolved by the Gram eigenvalues: reported as inf


def _gram_eig(matrix: np.ndarray, left: bool) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero squared singular values (descending) of ``matrix`` and the matching left
    (``left=True``) or right singular vectors, as columns.

    Only the smaller Gram matrix is decomposed (an eigendecomposition is far faster than an SVD
    of the large dense layers on CPUs): a 1152-channel depthwise or expansion layer of rank ≤ 192
    costs a 192×192 problem, not a 1152×1152 one. The other side's vectors follow from
    ``u = M v / σ`` (or ``v = Mᵀ u / σ``); singular values below ``_RESOLUTION·σ₁`` are dropped,
    which removes only zero rows and columns from the products they enter.
    """
    rows, cols = matrix.shape
    small_is_left = rows <= cols
    gram = matrix @ matrix.T if small_is_left else matrix.T @ matrix
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
    sigma = np.sqrt(values)
    keep = sigma > _RESOLUTION * sigma[0] if sigma[0] > 0 else np.zeros_like(sigma, dtype=bool)
    values, vectors, sigma = values[keep], vectors[:, keep], sigma[keep]
    if small_is_left == left:
        return values, vectors
    other = (matrix @ vectors) if left else (matrix.T @ vectors)
    return values, other / sigma[None, :]


def _ratio_1_2(matrix: np.ndarray) -> float:
    """σ₁/σ₂ from the eigenvalues of the smaller Gram matrix (inf beyond 1/_RESOLUTION)."""
    if min(matrix.shape) < 2:
        return float("inf")
    gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    values = np.sort(np.clip(np.linalg.eigvalsh(gram), 0.0, None))[::-1]
    s1, s2 = np.sqrt(values[:2])
    return float(s1 / s2) if s2 > _RESOLUTION * s1 else float("inf")


def _slices(tensor: np.ndarray) -> np.ndarray:
    """``(taps, out, in)``: the 1×1 slices of a conv kernel (one slice for a dense matrix)."""
    if tensor.ndim == 2:
        return tensor[None]
    out_c, in_c = tensor.shape[:2]
    return tensor.reshape(out_c, in_c, -1).transpose(2, 0, 1)


def _centre(tensor: np.ndarray) -> np.ndarray:
    slices = _slices(tensor)
    return slices[len(slices) // 2]


def pattern_spectra(patterns: dict[str, torch.Tensor], model: nn.Module) -> PatternSpectra:
    """Figure 3 of Sixt et al. (2020) from fitted PatternNet/PatternAttribution patterns.

    Parameters
    ----------
    patterns : dict of str to Tensor
        ``PatternNet(model).fit(...).patterns_state_dict()`` (or PatternAttribution's).
    model : nn.Module
        The model the patterns belong to (its weights give ``W``).

    Returns
    -------
    PatternSpectra
    """
    modules = dict(model.named_modules())
    unknown = [name for name in patterns if name not in modules]
    if unknown:
        raise ValueError(f"patterns name layers the model does not have: {unknown}.")
    layers = [name for name in modules if name in patterns]
    matrices: dict[str, dict[str, np.ndarray]] = {"A": {}, "W": {}, "W*A": {}}
    for name in layers:
        a = patterns[name].detach().double().cpu().numpy()
        w = modules[name].weight.detach().double().cpu().numpy()
        if a.shape != w.shape:
            raise ValueError(f"pattern of {name!r} has shape {a.shape}, the weight {w.shape}.")
        matrices["A"][name], matrices["W"][name], matrices["W*A"][name] = a, w, w * a
    result = PatternSpectra(layers=layers)
    for kind, by_layer in matrices.items():
        result.full[kind] = {n: _ratio_1_2(m.reshape(m.shape[0], -1)) for n, m in by_layer.items()}
        result.sliced[kind] = {
            # a dense layer is its own single slice: reuse its ratio
            n: np.array([result.full[kind][n]])
            if m.ndim == 2
            else np.array([_ratio_1_2(s) for s in _slices(m)])
            for n, m in by_layer.items()
        }
        inter = {}
        for lower, upper in zip(layers[:-1], layers[1:]):
            low_m, up_m = _centre(by_layer[lower]), _centre(by_layer[upper])
            if low_m.shape[0] != up_m.shape[1]:
                continue  # e.g. conv → dense across a flatten: sizes differ
            # the backward uses the transposes: (M_l)ᵀ = U_l Σ_l V_l, so the rows of V_l are
            # the eigenvectors of M_l M_lᵀ and the columns of U_{l+1} those of M_{l+1}ᵀM_{l+1}
            s2_l, v_l = _gram_eig(low_m, left=True)
            s2_u, u_u = _gram_eig(up_m, left=False)
            t = np.sqrt(np.sqrt(s2_l))[:, None] * (v_l.T @ u_u) * np.sqrt(np.sqrt(s2_u))[None, :]
            inter[f"{lower}→{upper}"] = _ratio_1_2(t)
        result.inter_layer[kind] = inter
    return result
