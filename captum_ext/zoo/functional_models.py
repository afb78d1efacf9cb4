"""Hand-written models whose forward uses functional operations (automatic canonization tests).

Module hooks cannot see what these models do between their layers: a residual ``+``,
``torch.cat``, ``F.relu``, a squeeze-excitation gate, reshapes, means. They are bias-free, so
LRP-0 must conserve relevance exactly on them; the LRP tests, the coverage benchmark and the
examples all use these definitions. Build them with :func:`functional_model`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConcatNet",
    "FUNCTIONAL_MODELS",
    "GLUNet",
    "GatedNet",
    "ReshapeNet",
    "ResidualNet",
    "TextTransformer",
    "functional_model",
]


class ResidualNet(nn.Module):
    """``relu(c2(relu(c1(x))) + x)``: a functional residual block, then a dense head."""

    def __init__(self, channels: int = 3, size: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.r = nn.ReLU()
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.fc = nn.Linear(channels * size * size, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.c2(self.r(self.c1(x))) + x).flatten(1))


class ConcatNet(nn.Module):
    """Two branches joined by ``torch.cat``, functional ReLU/max pooling, mean pooling."""

    def __init__(self, channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.a = nn.Conv2d(channels, 4, 3, padding=1, bias=False)
        self.b = nn.Conv2d(channels, 2, 1, bias=False)
        self.fc = nn.Linear(6, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], dim=1)
        return self.fc(F.max_pool2d(y, 2).mean((2, 3)))


class GatedNet(nn.Module):
    """A squeeze-excitation gate (``y * sigmoid(...)``) plus a residual.

    ``detach_gate = True`` detaches the gate in the forward, which reference computations use
    (LRP treats the gate as a constant).
    """

    def __init__(self, channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.fc1 = nn.Linear(channels, 2, bias=False)
        self.fc2 = nn.Linear(2, channels, bias=False)
        self.head = nn.Linear(channels, classes, bias=False)
        self.detach_gate = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(x))
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(y.mean((2, 3))))))
        if self.detach_gate:
            g = g.detach()
        y = y * g[:, :, None, None] + x
        return self.head(F.adaptive_avg_pool2d(y, 1).flatten(1))


class ReshapeNet(nn.Module):
    """view/permute/transpose/reshape, subtraction, constant scaling, stack and average pooling."""

    def __init__(self, channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1, bias=False)
        self.mix = nn.Linear(16, 16, bias=False)
        self.head = nn.Linear(4 * 16, classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(F.relu(self.conv(x)), 2)  # (B, 4, 4, 4) for 8×8 inputs
        b = y.shape[0]
        tokens = y.view(b, 4, 16)
        mixed = self.mix(tokens).permute(0, 2, 1).transpose(1, 2)
        z = 0.5 * mixed - tokens / 4.0
        z = torch.stack([z, tokens], 0).sum(0)
        return self.head(z.reshape(b, -1))


class GLUNet(nn.Module):
    """A gated linear unit MLP on flattened input: ``up(x) * sigmoid(gate(x))``, a residual.

    ``detach_gate`` as in :class:`GatedNet`.
    """

    def __init__(self, features: int = 3 * 8 * 8, hidden: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.up = nn.Linear(features, hidden, bias=False)
        self.gate = nn.Linear(features, hidden, bias=False)
        self.down = nn.Linear(hidden, features, bias=False)
        self.head = nn.Linear(features, classes, bias=False)
        self.detach_gate = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        g = torch.sigmoid(self.gate(h))
        if self.detach_gate:
            g = g.detach()
        h = h + self.down(self.up(h) * g)
        return self.head(h)


class TextTransformer(nn.Module):
    """An ``nn.TransformerEncoder`` text classifier (token ids → embeddings → mean → head)."""

    def __init__(
        self,
        vocab: int = 40,
        d: int = 16,
        heads: int = 2,
        layers: int = 2,
        classes: int = 3,
        norm_first: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(
            d,
            heads,
            dim_feedforward=2 * d,
            dropout=0.0,
            batch_first=True,
            bias=bias,
            norm_first=norm_first,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embedding(tokens)).mean(1))


FUNCTIONAL_MODELS = {
    "ResidualNet": ResidualNet,
    "ConcatNet": ConcatNet,
    "GatedNet": GatedNet,
    "ReshapeNet": ReshapeNet,
    "GLUNet": GLUNet,
}


def functional_model(name: str, seed: int = 0, scale: float = 0.5) -> nn.Module:
    """One of :data:`FUNCTIONAL_MODELS`, weights ~ N(0, scale²) from a private generator, float64.

    Inputs are ``(B, 3, 8, 8)``.
    """
    if name not in FUNCTIONAL_MODELS:
        raise ValueError(f"Unknown model {name!r}; choose one of {', '.join(FUNCTIONAL_MODELS)}.")
    model = FUNCTIONAL_MODELS[name]()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return model.double().eval()
