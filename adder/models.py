"""The adder network: digit embeddings -> stacked recurrent cell -> 10 logits per position."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# Name -> fused PyTorch module (cuDNN on a GPU). An unknown name is a ValueError listing these.
# adder.config.CELLS holds the same names, so that checking a setting needs no torch.
CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # weight blocks per recurrent layer


@dataclass(frozen=True)
class ModelConfig:
    cell: str = "gru"
    nonlinearity: str = "tanh"  # rnn only
    layers: int = 2
    hidden: int = 32
    embed: int = 32
    dropout: float = 0.0


def cell_class(name: str) -> type[nn.RNNBase]:
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; expected one of {', '.join(CELLS)}") from None


class Adder(nn.Module):
    """Reads two LSD-first digit sequences in step and writes the digits of their sum."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(10, cfg.embed)
        kwargs = {"nonlinearity": cfg.nonlinearity} if cfg.cell == "rnn" else {}
        self.rnn = cell_class(cfg.cell)(
            input_size=2 * cfg.embed,
            hidden_size=cfg.hidden,
            num_layers=cfg.layers,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,  # torch applies it between layers
            batch_first=True,
            **kwargs,
        )
        self.head = nn.Linear(cfg.hidden, 10)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.embed(a), self.embed(b)], dim=-1)  # (B, T, 2E)
        h, _ = self.rnn(x)  # (B, T, H)
        return self.head(h)  # (B, T, 10)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(cfg: ModelConfig, positions: int) -> int:
    """FLOPs of one forward pass over one problem of ``positions`` digit positions.

    Analytic, machine-independent: the matrix products only (2 FLOPs per multiply-add), that is
    each layer's input and recurrent weights and the head; embeddings are lookups, and the
    element-wise gate arithmetic is a few FLOPs per hidden unit, small beside H x H.
    """
    g, H = GATES[cfg.cell], cfg.hidden
    layers = sum(2 * g * H * ((2 * cfg.embed if i == 0 else H) + H) for i in range(cfg.layers))
    return positions * (layers + 2 * H * 10)


def train_flops(cfg: ModelConfig, positions: int) -> int:
    """FLOPs of one training sample: forward plus backward, taken as 2x the forward."""
    return 3 * forward_flops(cfg, positions)
