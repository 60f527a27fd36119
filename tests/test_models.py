"""The contract every cell of adder.models.CELLS keeps."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adder import config
from adder.data import sample
from adder.models import CELLS, Adder, ModelConfig, cell_class, count_params

VARIANTS = [(cell, "tanh") for cell in CELLS] + [("rnn", "relu")]
IDS = [f"{c}-{n}" for c, n in VARIANTS]
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per layer


def make(cell: str, nonlinearity: str, **kw) -> Adder:
    torch.manual_seed(0)
    base = dict(layers=2, hidden=16, embed=8)
    return Adder(ModelConfig(cell=cell, nonlinearity=nonlinearity, **{**base, **kw}))


def test_cells_are_fused_torch_modules():
    assert set(CELLS) >= {"rnn", "lstm", "gru"}
    assert tuple(CELLS) == config.CELLS  # the names settings are checked against, torch-free
    for name, cls in CELLS.items():
        assert issubclass(cls, nn.RNNBase)
        assert cell_class(name) is cls


def test_unknown_cell_is_a_value_error_listing_the_cells():
    with pytest.raises(ValueError, match="'cnn'.*rnn"):
        cell_class("cnn")
    with pytest.raises(ValueError):
        Adder(ModelConfig(cell="cnn"))


@pytest.mark.parametrize("cell,nonlinearity", VARIANTS, ids=IDS)
class TestCellContract:
    def test_output_shape(self, cell, nonlinearity):
        model = make(cell, nonlinearity)
        assert isinstance(model.rnn, CELLS[cell])
        if cell == "rnn":
            assert model.rnn.nonlinearity == nonlinearity
        for B, T in [(5, 7), (1, 1), (3, 60)]:
            a = torch.randint(0, 10, (B, T))
            b = torch.randint(0, 10, (B, T))
            out = model(a, b)
            assert out.shape == (B, T, 10)
            assert out.dtype == torch.float32
            assert torch.isfinite(out).all()

    def test_gradients_reach_every_parameter(self, cell, nonlinearity):
        model = make(cell, nonlinearity)
        batch = sample(32, 6, generator=torch.Generator().manual_seed(0))
        logits = model(batch.a, batch.b)
        F.cross_entropy(logits.flatten(0, 1), batch.s.flatten()).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name

    def test_parameter_count(self, cell, nonlinearity):
        layers, H, E = 3, 12, 5
        model = make(cell, nonlinearity, layers=layers, hidden=H, embed=E)
        assert count_params(model) == sum(p.numel() for p in model.parameters())
        g = GATES[cell]
        rnn = sum(g * H * ((2 * E if i == 0 else H) + H) + 2 * g * H for i in range(layers))
        assert count_params(model) == 10 * E + rnn + (10 * H + 10)

    def test_dropout_between_layers(self, cell, nonlinearity):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warns about dropout with one layer
            deep = make(cell, nonlinearity, layers=2, dropout=0.5)
            shallow = make(cell, nonlinearity, layers=1, dropout=0.5)
        assert deep.rnn.dropout == 0.5
        assert shallow.rnn.dropout == 0.0
        a, b = torch.randint(0, 10, (8, 10)), torch.randint(0, 10, (8, 10))
        deep.train()
        assert not torch.equal(deep(a, b), deep(a, b))  # dropout is active in training
        deep.eval()
        assert torch.equal(deep(a, b), deep(a, b))

    def test_a_few_steps_reduce_the_loss(self, cell, nonlinearity):
        model = make(cell, nonlinearity, layers=1, hidden=24, embed=8)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        batch = sample(64, 5, generator=torch.Generator().manual_seed(0))

        def loss() -> torch.Tensor:
            return F.cross_entropy(model(batch.a, batch.b).flatten(0, 1), batch.s.flatten())

        with torch.no_grad():
            first = loss().item()
        for _ in range(40):
            opt.zero_grad()
            loss().backward()
            opt.step()
        with torch.no_grad():
            last = loss().item()
        assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("cell", list(config.CELLS))
def test_flops_count_every_weight_once_per_position(cell):
    """Each weight matrix is one multiply-add per position (2 FLOPs): the analytic count must
    equal twice the weights the model actually holds (biases and embedding tables excluded)."""
    from adder.models import forward_flops, train_flops

    cfg = ModelConfig(cell=cell, layers=3, hidden=12, embed=5)
    model = Adder(cfg)
    weights = sum(
        p.numel() for n, p in model.named_parameters() if "weight" in n and "embed" not in n
    )
    assert forward_flops(cfg, 7) == 7 * 2 * weights
    assert train_flops(cfg, 7) == 3 * forward_flops(cfg, 7)
