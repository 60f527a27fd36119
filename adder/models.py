"""The adder network: digit embeddings -> a cell -> 10 logits per position.

The cell turns the embedded digit pairs, (B, T, 2E), into (B, T, H): a stacked recurrent cell
(``nn.RNN``, ``nn.LSTM``, ``nn.GRU``; cuDNN on a GPU) or a causal transformer
(``adder.transformer``). Every cell sees position t and the ones below it only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from adder.transformer import Transformer


@dataclass(frozen=True)
class ModelConfig:
    cell: str = "gru"
    nonlinearity: str = "tanh"  # rnn only
    layers: int = 2
    hidden: int = 32
    embed: int = 32
    dropout: float = 0.0
    heads: int = 4  # transformer only, as the next three
    ff_mult: int = 4
    pos: str = "alibi"
    sink: bool = True
    positions: int = 0  # length of a learned position table (pos learned); 0: none


class Recurrent(nn.Module):
    """A stacked fused recurrent cell: (B, T, 2E) -> (B, T, H)."""

    KINDS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
    GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # weight blocks per layer

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        kwargs = {"nonlinearity": cfg.nonlinearity} if cfg.cell == "rnn" else {}
        self.rnn = self.KINDS[cfg.cell](
            input_size=2 * cfg.embed,
            hidden_size=cfg.hidden,
            num_layers=cfg.layers,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,  # torch applies it between layers
            batch_first=True,
            **kwargs,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]

    def scores(self, T: int) -> int:
        return 0  # no attention

    @staticmethod
    def flops(cfg: ModelConfig, T: int) -> int:
        """Each layer's input and recurrent weights, and the head; the element-wise gate
        arithmetic is a few FLOPs per hidden unit, small beside H x H."""
        g, H = Recurrent.GATES[cfg.cell], cfg.hidden
        layers = sum(2 * g * H * ((2 * cfg.embed if i == 0 else H) + H) for i in range(cfg.layers))
        return T * (layers + 2 * H * 10)


# Name -> cell module. An unknown name is a ValueError listing these. adder.config.CELLS holds
# the same names, so that checking a setting needs no torch.
CELLS: dict[str, type[nn.Module]] = {
    "rnn": Recurrent,
    "lstm": Recurrent,
    "gru": Recurrent,
    "transformer": Transformer,
}


def cell_class(name: str) -> type[nn.Module]:
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
        self.cell = cell_class(cfg.cell)(cfg)
        self.head = nn.Linear(cfg.hidden, 10)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.embed(a), self.embed(b)], dim=-1)  # (B, T, 2E)
        return self.head(self.cell(x))  # (B, T, H) -> (B, T, 10)

    def scores(self, T: int) -> int:
        """Attention scores of one problem of ``T`` positions, per block (0 without attention):
        what bounds an evaluation chunk at long lengths, should a kernel hold them all."""
        return self.cell.scores(T)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(cfg: ModelConfig, positions: int) -> int:
    """FLOPs of one forward pass over one problem of ``positions`` digit positions.

    Analytic, machine-independent: the matrix products only (2 FLOPs per multiply-add), as
    each cell counts them (its ``flops``); embeddings are lookups.
    """
    return cell_class(cfg.cell).flops(cfg, positions)


def train_flops(cfg: ModelConfig, positions: int) -> int:
    """FLOPs of one training sample: forward plus backward, taken as 2x the forward."""
    return 3 * forward_flops(cfg, positions)
