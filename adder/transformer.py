"""The transformer cell: pre-LayerNorm blocks of causal self-attention over the digit pairs.

Position t attends to positions 0..t only (a digit of the sum depends on the lower digits alone),
so like the recurrent cells it writes every digit of the sum in one forward pass, no decoding.
How it knows where a digit sits is the ``pos`` scheme:

- ``none``: the causal mask alone (NoPE);
- ``learned``: a learned absolute position table, as long as the training sums (it cannot read a
  longer input, and says so);
- ``sinusoidal``: fixed absolute sinusoids added to the input (Vaswani et al. 2017);
- ``alibi``: a per-head penalty linear in the distance, added to the attention scores (Press et
  al. 2022); ``rope``: queries and keys rotated by their position (Su et al. 2021).

With ``sink`` (the default) a learned vector sits at a position below the lowest digit: every
position can attend to it, an attention sink (Xiao et al. 2024; a BOS token). Without it the lowest
digit pair is the only key every position shares, and the second digit's carry, which needs that
pair's content, is the one digit the model keeps getting wrong (docs/architectures.md).

Attention is ``F.scaled_dot_product_attention`` with ``is_causal``, which PyTorch runs in a fused
kernel (flash attention on the CPU; flash or memory-efficient attention on a GPU): its time is
quadratic in the length, its memory linear, no T x T scores held (on the CPU, scoring 10,000-digit
sums takes the memory 1000-digit ones do; docs/architectures.md).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from adder.errors import UserError

if TYPE_CHECKING:
    from adder.models import ModelConfig


def alibi_slopes(heads: int) -> torch.Tensor:
    """ALiBi's per-head distance penalties: 1, 1/2, 1/4, ... (one per head).

    The paper's slopes, 2^(-8/h) to 2^-8 over h heads, suit contexts of hundreds of words; a
    digit of the sum needs its nearest positions told apart sharply (the carry comes from the
    nearest pair whose digits do not add to 9), which slopes that small cannot do: trained on
    10-digit sums, they got no 100-digit sum right (docs/architectures.md).
    """
    return torch.tensor([2.0**-i for i in range(heads)])


def sinusoids(T: int, width: int, device: torch.device) -> torch.Tensor:
    """(T, width) absolute positions (Vaswani et al.): sin and cos at geometric frequencies."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, device=device) / width)
    code = torch.zeros(T, width, device=device)
    code[:, 0::2] = torch.sin(pos * freq)
    code[:, 1::2] = torch.cos(pos * freq[: width // 2])
    return code


def rotate(x: torch.Tensor) -> torch.Tensor:
    """RoPE (GPT-NeoX layout): the two halves of each head's channels are turned by position."""
    T, d = x.shape[-2], x.shape[-1]
    freq = 1.0 / 10000.0 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angle = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * freq  # (T, d/2)
    cos, sin = angle.cos().repeat(1, 2), angle.sin().repeat(1, 2)  # (T, d)
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) - slope (t - j)) v over keys j <= t for query t; (B, h, T, d).

    Always the fused causal kernel, which holds no T x T scores. ALiBi's -slope (t - j) is
    slope j up to a constant per query, which the softmax ignores: it rides in as extra
    channels, 1 on the queries and slope j sqrt(d) on the keys (0 on the values), padded to a
    multiple of 8 channels, the width the fused kernels take.
    """
    if slopes is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    B, h, T, d = q.shape
    pad = 8 - d % 8
    j = torch.arange(T, device=q.device, dtype=q.dtype)
    bias = (slopes[:, None] * j * math.sqrt(d)).expand(B, h, T)[..., None]  # (B, h, T, 1)
    zeros = q.new_zeros(B, h, T, pad - 1)
    q = torch.cat([q, torch.ones_like(bias), zeros], dim=-1)
    k = torch.cat([k, bias, zeros], dim=-1)
    v = torch.cat([v, zeros, zeros[..., :1]], dim=-1)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1 / math.sqrt(d))
    return out[..., :d]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.pos = cfg.heads, cfg.pos
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.pos == "alibi":
            self.register_buffer("slopes", alibi_slopes(cfg.heads), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        if self.pos == "rope":
            q, k = rotate(q), rotate(k)  # (B, h, T, d)
        y = causal_attention(q, k, v, self.slopes if self.pos == "alibi" else None)
        return self.drop(self.proj(y.transpose(1, 2).reshape(B, T, H)))


class Block(nn.Module):
    """Pre-LayerNorm: x + attention(norm(x)), then x + feed-forward(norm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.hidden), nn.LayerNorm(cfg.hidden)
        self.attn = Attention(cfg)
        self.ff = nn.Sequential(
            nn.Linear(cfg.hidden, cfg.ff_mult * cfg.hidden),
            nn.GELU(),
            nn.Linear(cfg.ff_mult * cfg.hidden, cfg.hidden),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ff(self.norm2(x))


class Transformer(nn.Module):
    """(B, T, 2E) embedded digit pairs -> (B, T, H): ``layers`` blocks of width ``hidden``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Linear(2 * cfg.embed, cfg.hidden)
        if cfg.pos == "learned":
            self.table = nn.Embedding(cfg.positions, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.hidden)
        if cfg.sink:
            self.sink = nn.Parameter(torch.zeros(cfg.hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        h = self.inp(x)  # (B, T, H)
        if self.cfg.pos == "learned":
            check_length(self.cfg, T)
            h = h + self.table(torch.arange(T, device=x.device))
        elif self.cfg.pos == "sinusoidal":
            h = h + sinusoids(T, self.cfg.hidden, x.device)
        if self.cfg.sink:  # below position 0; no position code: it is not a digit
            h = torch.cat([self.sink.expand(h.shape[0], 1, -1), h], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.norm(h[:, 1:] if self.cfg.sink else h)

    def scores(self, T: int) -> int:
        """Attention scores of one problem of ``T`` positions (per block): what a kernel that
        holds them all at once (PyTorch's math fallback) would hold."""
        T += self.cfg.sink
        return self.cfg.heads * T * T

    @staticmethod
    def flops(cfg: ModelConfig, T: int) -> int:
        """The input projection, each block's query/key/value, output and feed-forward weights,
        the head, and attention: position t scores t + 1 keys and averages t + 1 values, 4 H
        (t + 1) per block (causal: the masked half is not work). The sink is one more position
        through the blocks. Norms, softmax and positions are element-wise and left out."""
        H, P = cfg.hidden, T + cfg.sink
        block = 2 * (4 + 2 * cfg.ff_mult) * H * H
        ends = 2 * 2 * cfg.embed * H + 2 * H * 10  # input projection and head: digits only
        return T * ends + cfg.layers * (P * block + 2 * H * P * (P + 1))


def check_length(cfg: ModelConfig, T: int) -> None:
    """A learned table has no position past its end: a longer input is refused, not guessed."""
    if cfg.pos == "learned" and cfg.positions < T:
        raise UserError(
            f"{T - 1}-digit operands need {T} positions but this transformer's learned position "
            f"table has {cfg.positions} (trained on {cfg.positions - 1}-digit operands); "
            f"expected at most {cfg.positions - 1} digits"
        )
