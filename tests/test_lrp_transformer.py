"""Transformer rules and rule sets (captum_ext.lrp.transformer) against LXT and conservation.

Oracles: LXT (Achtibat et al. 2024, the AttnLRP authors' package ``lxt``, test extra):
``lxt.efficient``'s CP-LRP patches of torchvision's ViT / ``nn.MultiheadAttention`` /
``nn.LayerNorm`` (gradient × input with stopped gradients), and ``lxt.explicit.functional``'s
AttnLRP rules (softmax, uniform matmul, LayerNorm, ε) on a hand-written transformer block; plus
conservation Σ R = f_c of CP-LRP on bias-free models in float64.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from captum_ext.core import ModelSnapshot
from captum_ext.lrp import LRP, EpsilonPlus, LayerLRP
from captum_ext.lrp.transformer import CPLRP, AttnLRP
from tests.oracles import lxt_cp_lrp

lxt = pytest.importorskip("lxt")


def _small_vit(seed: int = 0, bias_free: bool = True) -> nn.Module:
    from torchvision.models import VisionTransformer

    gen = torch.Generator().manual_seed(seed)
    vit = VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    ).double()
    with torch.no_grad():
        for name, p in vit.named_parameters():
            constant = name.endswith(("bias", "class_token", "pos_embedding"))
            if bias_free and constant:
                p.zero_()
                continue
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
            if "ln" in name and name.endswith("weight"):
                p.add_(1.0)
    return vit.eval()


def test_cplrp_on_small_vit_matches_lxt_and_conserves():
    vit = _small_vit()
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    snapshot = ModelSnapshot.of(vit)
    ours = LRP(vit, rule_set=CPLRP(1e-12, 1e-12), check_conservation=1e-6).attribute(x, target=3)
    assert not snapshot.diff(ModelSnapshot.of(vit))
    with lxt_cp_lrp():
        leaf = x.clone().requires_grad_()
        out = vit(leaf)[:, 3]
        (grad,) = torch.autograd.grad(out.sum(), leaf)
    reference = leaf.detach() * grad
    assert (reference.sum((1, 2, 3)) - out.detach()).abs().max() < 1e-8  # lxt conserves too
    # lxt's identity rule divides by (x + 1e-10): agreement to that order.
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-9)


class _Block(nn.Module):
    """One pre-norm attention block + MLP + mean pooling, bias-free, in torch or lxt ops."""

    def __init__(self, d: int = 8, classes: int = 3, use_lxt: bool = False) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.up, self.down = nn.Linear(d, 2 * d, bias=False), nn.Linear(2 * d, d, bias=False)
        self.head = nn.Linear(d, classes, bias=False)
        self.use_lxt = use_lxt

    def forward(self, x):
        if self.use_lxt:
            return self._lxt(x)
        h = self.ln1(x)
        a = torch.softmax(self.q(h) @ self.k(h).transpose(-1, -2), dim=-1)
        x = x + self.o(a @ self.v(h))
        x = x + self.down(torch.relu(self.up(self.ln2(x))))
        return self.head(x.mean(1))

    def _lxt(self, x):
        import lxt.explicit.functional as lf

        eps = 1e-12

        def lin(layer, t):
            return lf.linear_epsilon(t, layer.weight, None, eps)

        # The Function, not lf.layer_norm: the wrapper fixes the rule's ε at 1e-6.
        h = lf.layer_norm_grad_fn.apply(x, self.ln1.weight, None, self.ln1.eps, eps)
        scores = lf.matmul(lin(self.q, h), lin(self.k, h).transpose(-1, -2), False, eps)
        a = lf.softmax(scores, -1)
        x = lf.add2(x, lin(self.o, lf.matmul(a, lin(self.v, h), False, eps)), False, eps)
        h = lf.layer_norm_grad_fn.apply(x, self.ln2.weight, None, self.ln2.eps, eps)
        x = lf.add2(x, lin(self.down, torch.relu(lin(self.up, h))), False, eps)
        return lin(self.head, lf.mean(x, 1, False, eps))


def test_attnlrp_matches_lxt_explicit_rules():
    torch.manual_seed(0)
    block = _Block().double().eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)
    x = torch.randn(2, 5, 8, dtype=torch.float64, generator=gen)
    ours = LRP(block, rule_set=AttnLRP(1e-12, 1e-12)).attribute(x, target=1)
    block.use_lxt = True
    leaf = x.clone().requires_grad_()
    out = block(leaf)[:, 1]
    out.backward(out.detach())
    block.use_lxt = False
    torch.testing.assert_close(ours, leaf.grad, rtol=1e-7, atol=1e-9)
    # AttnLRP is not conservative (the softmax rule absorbs a bias term), CP-LRP is.
    cp = LRP(block, rule_set=CPLRP(1e-12, 1e-12)).attribute(x, target=1)
    torch.testing.assert_close(cp.sum((1, 2)), out.detach(), rtol=1e-9, atol=0)
    assert (ours.sum((1, 2)) - out.detach()).abs().max() > 1e-3


class _TextClassifier(nn.Module):
    def __init__(self, norm_first: bool, vocab: int = 40, d: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(
            d,
            2,
            dim_feedforward=32,
            dropout=0.0,
            batch_first=True,
            bias=False,
            norm_first=norm_first,
        )
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes, bias=False)

    def forward(self, tokens):
        return self.head(self.encoder(self.embedding(tokens)).mean(1))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_text_classifier_at_embeddings(norm_first):
    gen = torch.Generator().manual_seed(4)
    model = _TextClassifier(norm_first).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.4)
    model.eval()
    tokens = torch.randint(0, 40, (3, 7), generator=gen)
    snapshot = ModelSnapshot.of(model)
    ours = LayerLRP(model, model.embedding, rule_set=CPLRP(1e-12, 1e-12)).attribute(
        tokens, target=2
    )
    assert not snapshot.diff(ModelSnapshot.of(model))
    captured = {}
    handle = model.embedding.register_forward_hook(lambda m, a, out: captured.setdefault("e", out))
    try:
        with lxt_cp_lrp():
            out = model(tokens)[:, 2]
            (grad,) = torch.autograd.grad(out.sum(), captured["e"])
    finally:
        handle.remove()
    reference = captured["e"].detach() * grad
    torch.testing.assert_close(ours.sum((1, 2)), out.detach(), rtol=1e-8, atol=0)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-9)
    # AttnLRP runs on the same model (relevance also through the attention scores).
    attn = LayerLRP(model, model.embedding, rule_set=AttnLRP()).attribute(tokens, target=2)
    assert attn.shape == ours.shape and torch.isfinite(attn).all()


def test_vit_with_biases_runs_under_every_transformer_set_and_epsilon_plus():
    vit = _small_vit(bias_free=False)
    with torch.no_grad():
        for name, p in vit.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.1, 0.1, generator=torch.Generator().manual_seed(5))
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    for rule_set in (CPLRP(), AttnLRP(), EpsilonPlus()):
        relevance = LRP(vit, rule_set=rule_set).attribute(x, target=0)
        assert relevance.shape == x.shape and torch.isfinite(relevance).all()


@pytest.mark.slow
def test_torchvision_vit_b_16_at_224():
    from torchvision.models import vit_b_16

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = vit_b_16(weights=None, num_classes=10).eval()
        nn.init.normal_(vit.heads.head.weight, std=0.1)  # torchvision initialises it to zero
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for rule_set in (CPLRP(), AttnLRP()):
        relevance = LRP(vit, rule_set=rule_set).attribute(x, target=0)
        assert relevance.shape == x.shape and torch.isfinite(relevance).all()
        assert relevance.abs().sum() > 0
