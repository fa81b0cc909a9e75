"""The paper's CNN + Self-Attention model (Task B) and its ablation without attention.

Four ConvBlocks (Conv3x3 -> BN -> ReLU -> MaxPool2) take 3 -> 64 -> 128 -> 256 -> 256
channels; a self-attention block mixes the resulting 14x14 (at 224 px) positions;
a global average pool and a linear head classify. With 50 classes this is exactly
1,238,834 parameters, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """Conv3x3 -> BatchNorm -> ReLU -> MaxPool2: halves the resolution.

    ``mask`` goes to the convolution: a band presence mask when it is a
    DynamicConv2D (the band-robust first block), otherwise ``None``.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        conv, *rest = self
        x = conv(x) if mask is None else conv(x, mask)
        for layer in rest:
            x = layer(x)
        return x


class Features(nn.Sequential):
    """The ConvBlocks in order; ``mask`` goes to the first (its convolution may be a DynamicConv2D)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        first, *rest = self
        x = first(x, mask)
        for block in rest:
            x = block(x)
        return x


class SelfAttention(nn.Module):
    """Multi-head self-attention over spatial positions, residual, then LayerNorm.

    Written out by hand rather than with ``nn.MultiheadAttention``: the module
    call dispatches to a fused fast-path op at inference that exporters either
    reject or leave outside the XNNPACK delegate. The weights are the same as
    ``nn.MultiheadAttention`` (one packed qkv projection and one output
    projection), so the parameter count matches the paper's model.

    The shapes are chosen so that ExecuTorch's XNNPACK delegate takes every op:
    q, k and v are slices of the qkv output along its last dim (indexing a
    stacked dim exports as ``select_copy``, which XNNPACK lacks), and the heads
    are folded into the batch so both products are 3-D ``bmm`` (a 4-D ``@``
    exports as ``expand_copy`` + ``bmm`` with the expands left outside).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n, d = h * w, c // self.heads
        t = x.flatten(2).transpose(1, 2)  # [B, N, C], one token per position
        qkv = self.qkv(t)

        def per_head(z: torch.Tensor) -> torch.Tensor:  # [B, N, C] -> [B * heads, N, C / heads]
            return z.reshape(b, n, self.heads, d).transpose(1, 2).reshape(b * self.heads, n, d)

        q, k, v = (per_head(qkv[..., i * c : (i + 1) * c]) for i in range(3))
        attn = torch.softmax(torch.bmm(q * self.scale, k.transpose(1, 2)), dim=-1)  # [B * heads, N, N]
        o = torch.bmm(attn, v).reshape(b, self.heads, n, d).transpose(1, 2).reshape(b, n, c)
        t = self.norm(t + self.proj(o))
        return t.transpose(1, 2).reshape(b, c, h, w)


class CNNAttention(nn.Module):
    """ConvBlocks, optional self-attention, global average pool, linear head.

    Args:
        num_classes: size of the head.
        in_chans: input bands.
        widths: output channels of each ConvBlock.
        heads: attention heads; ``0`` removes the attention block (the ablation).
        dropout: dropout before the head.
    """

    classifier = "head"  # the layer that gives the logits (timm's name for it): INT8 PTQ leaves it float

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 3,
        widths: tuple[int, ...] = (64, 128, 256, 256),
        heads: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        chans = (in_chans, *widths)
        self.features = Features(*[ConvBlock(a, b) for a, b in zip(chans, chans[1:])])
        self.attention = SelfAttention(widths[-1], heads) if heads else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; ``mask`` (band presence) only for a DynamicConv2D first block (``with_dynamic_stem``)."""
        x = self.attention(self.features(x, mask))
        return self.head(self.dropout(self.pool(x).flatten(1)))
