"""Automatic canonization: LRP on any model torch.fx can trace, no hand-written canonizer.

Module hooks only see ``nn.Module`` calls. Everything a model does in its ``forward`` with plain
functions — a residual ``x + y``, ``torch.cat``, ``F.relu``, ``x.mean((2, 3))``, a gating
product ``x * torch.sigmoid(s)``, ``q @ k.transpose(-2, -1)`` — would pass relevance by its plain
gradient, which is not relevance propagation (a residual addition then counts its relevance
twice: captum #546). This module

1. traces the model with a :class:`torch.fx` tracer (``nn.MultiheadAttention`` and the
   ``nn.TransformerEncoder`` stack are re-expressed with traceable operations sharing the same
   weights, because their own forward calls a fused kernel),
2. turns every functional operation on the relevance path into a small module of one of the
   classes below (:class:`Addition`, :class:`Reduction`, :class:`Routing`, :class:`Product`,
   :class:`GatedProduct`, :class:`AttentionProduct`, :class:`Activation`, :class:`Softmax`,
   :class:`Normalization`, :class:`Unsupported`), so rule sets address them like any layer
   (by type in ``layer_map`` or by name, e.g. ``"fx.add_1"``, in ``name_map``),
3. refuses, before any relevance is computed, every operation on the relevance path that has no
   rule, naming the operation and its source line.

The user's model is never modified: the traced :class:`torch.fx.GraphModule` is a separate
module whose leaf layers *are* the model's layers (parameters shared, nothing copied). It is
cached per model (a weak reference), so only the first call pays for tracing; the cache entry
is rebuilt when the model's module structure or a train/eval flag changes.

Default rules of the new modules (a rule set's own entries win):

* :class:`Addition` (``+``, ``-``), :class:`Reduction` (means, sums, average pooling,
  interpolation, functional linear layers, products with a constant): the proportional rule
  ``R_k = x_k ⊙ J_kᵀ (R / stab(z))`` (``NormRule``'s split, Euler's theorem makes it
  conservative for every operation linear in its inputs).
* :class:`Routing` (reshape, view, permute, flatten, indexing, ``cat``/``stack``, chunk/split,
  max pooling, padding, dropout): the gradient, which routes relevance unchanged.
* :class:`GatedProduct`: ``x * g`` (or ``x / g``) where ``g`` comes from a sigmoid-type gate
  (squeeze-excitation, GLU) or a normaliser (``rsqrt``, ``sqrt``): the gate is treated as a
  constant and the whole relevance goes to ``x`` (as zennit and LXT do).
* :class:`AttentionProduct`: ``A @ V`` with ``A`` a softmax: CP-LRP by default (attention
  weights constant); :class:`~captum_ext.lrp.transformer.AttnLRP` replaces it by the uniform rule.
* :class:`Activation` (``F.relu``, ``F.gelu``, ``torch.sigmoid``, …): the rule set's activation
  rule (``nn.ReLU``'s entry: the identity for the LRP sets, the gradient for ExcitationBackprop).
* ``nn.LayerNorm``/``F.layer_norm`` (:class:`Normalization`): the normaliser as a constant
  scaling (CP-LRP / AttnLRP), see :class:`LayerNormRule`.
* :class:`Product` of two non-gate factors, :class:`Softmax` and :class:`Unsupported`: no rule —
  refused if relevance reaches them (the transformer rule sets give rules).

Layout: :mod:`~captum_ext.lrp.tracing.ops` (op modules and operation tables),
:mod:`~captum_ext.lrp.tracing.op_rules` (their rules), :mod:`~captum_ext.lrp.tracing.tracer`
(the fx tracer), :mod:`~captum_ext.lrp.tracing.rewrite` (graph rewriting, BatchNorm pairs),
:mod:`~captum_ext.lrp.tracing.cache` (tracing with the per-model cache) and
:mod:`~captum_ext.lrp.tracing.resolve` (rule resolution and refusals); every name is importable
from ``captum_ext.lrp.tracing`` as before.

Fallback when tracing fails (data-dependent control flow, unsupported Python): a model that is
a pure ``nn.Sequential`` composition of layers has no functional code for the hooks to miss, so
it is explained with module hooks; any other model is refused with the tracer's reason and the
way out (``canonizers=[...]`` selects the module-hook path explicitly).
"""

from captum_ext.lrp.tracing.cache import (
    _CACHE,
    batchnorm_pairs,
    hook_points,
    trace,
)
from captum_ext.lrp.tracing.op_rules import (
    LayerNormRule,
    OpRule,
    ProportionalRule,
    UnsupportedRule,
    _Adapted,
)
from captum_ext.lrp.tracing.ops import (
    Activation,
    Addition,
    AttentionProduct,
    FunctionalOp,
    GatedProduct,
    Normalization,
    Product,
    Reduction,
    Routing,
    Slot,
    Softmax,
    TracingError,
    Unsupported,
    _BoundCall,
)
from captum_ext.lrp.tracing.resolve import check_conservation, resolve_rules
from captum_ext.lrp.tracing.rewrite import GraphMergeBatchNorm
from captum_ext.lrp.tracing.tracer import HookBoundary, _LRPTracer

__all__ = [
    "Activation",
    "AttentionProduct",
    "Addition",
    "FunctionalOp",
    "GatedProduct",
    "GraphMergeBatchNorm",
    "HookBoundary",
    "LayerNormRule",
    "Normalization",
    "OpRule",
    "Product",
    "ProportionalRule",
    "Reduction",
    "Routing",
    "Slot",
    "Softmax",
    "TracingError",
    "Unsupported",
    "UnsupportedRule",
    "batchnorm_pairs",
    "check_conservation",
    "hook_points",
    "resolve_rules",
    "trace",
]

# Private names other modules of the package family (transformer rules, tests, benchmarks) use.
_PRIVATE = (_CACHE, _Adapted, _BoundCall, _LRPTracer)
