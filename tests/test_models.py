"""The contract every cell of adder.models.CELLS keeps, recurrent or transformer."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adder import config
from adder.data import sample
from adder.models import CELLS, Adder, ModelConfig, cell_class, count_params

# Every kind of model: each cell, the rnn's second nonlinearity, and each of the transformer's
# position schemes.
VARIANTS = (
    [dict(cell=cell) for cell in CELLS if cell != "transformer"]
    + [dict(cell="rnn", nonlinearity="relu")]
    + [dict(cell="transformer", pos=pos) for pos in config.POSITIONS]
    + [dict(cell="transformer", pos="alibi", sink=False)]
)
IDS = ["-".join(v if isinstance(v, str) else f"{k}={v}" for k, v in d.items()) for d in VARIANTS]
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight blocks per layer


def make(variant: dict, **kw) -> Adder:
    torch.manual_seed(0)
    base = dict(layers=2, hidden=16, embed=8, heads=2, ff_mult=2, positions=64)
    cfg = ModelConfig(**{**base, **variant, **kw})
    if cfg.pos != "learned" or cfg.cell != "transformer":
        cfg = dataclasses.replace(cfg, positions=0)
    return Adder(cfg)


def test_cells_registry_matches_the_names_settings_are_checked_against():
    assert set(CELLS) >= {"rnn", "lstm", "gru", "transformer"}
    assert tuple(CELLS) == config.CELLS  # the names settings are checked against, torch-free
    for name, cls in CELLS.items():
        assert cell_class(name) is cls
        assert issubclass(cls, nn.Module)
    assert set(config.CELL_FIELDS) <= {f.name for f in dataclasses.fields(ModelConfig)}
    for name, cells in config.CELL_FIELDS.items():
        assert set(cells) <= set(CELLS), name


def test_unknown_cell_is_a_value_error_listing_the_cells():
    with pytest.raises(ValueError, match="'cnn'.*rnn.*transformer"):
        cell_class("cnn")
    with pytest.raises(ValueError):
        Adder(ModelConfig(cell="cnn"))


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
class TestCellContract:
    def test_output_shape(self, variant):
        model = make(variant)
        if variant["cell"] == "rnn":
            assert model.cell.rnn.nonlinearity == variant.get("nonlinearity", "tanh")
        for B, T in [(5, 7), (1, 1), (3, 60)]:
            a = torch.randint(0, 10, (B, T))
            b = torch.randint(0, 10, (B, T))
            out = model(a, b)
            assert out.shape == (B, T, 10)
            assert out.dtype == torch.float32
            assert torch.isfinite(out).all()

    def test_causal_a_higher_digit_never_changes_a_lower_output(self, variant):
        model = make(variant).eval()
        g = torch.Generator().manual_seed(1)
        a, b = (
            torch.randint(0, 10, (8, 12), generator=g),
            torch.randint(0, 10, (8, 12), generator=g),
        )
        with torch.no_grad():
            out = model(a, b)
            for k in (0, 5, 11):
                a2, b2 = a.clone(), b.clone()
                a2[:, k], b2[:, k] = (a[:, k] + 3) % 10, (b[:, k] + 7) % 10
                out2 = model(a2, b2)
                assert torch.equal(out2[:, :k], out[:, :k]), k  # bit for bit
                assert not torch.allclose(out2[:, k], out[:, k]), k  # position k itself did see

    def test_gradients_reach_every_parameter(self, variant):
        model = make(variant)
        batch = sample(32, 6, generator=torch.Generator().manual_seed(0))
        logits = model(batch.a, batch.b)
        F.cross_entropy(logits.flatten(0, 1), batch.s.flatten()).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            g = p.grad[:7] if name == "cell.table.weight" else p.grad  # the 7 positions used
            assert torch.isfinite(g).all(), name
            assert g.abs().sum() > 0, name

    def test_parameter_count(self, variant):
        layers, H, E = 3, 12, 5
        model = make(variant, layers=layers, hidden=H, embed=E)
        assert count_params(model) == sum(p.numel() for p in model.parameters())
        if variant["cell"] == "transformer":
            f = 2  # ff_mult
            block = 2 * 2 * H + (3 * H * H + 3 * H) + (H * H + H) + (2 * f * H * H + f * H + H)
            cell = (2 * E * H + H) + layers * block + 2 * H
            cell += 64 * H if variant["pos"] == "learned" else 0
            cell += H if variant.get("sink", True) else 0  # the sink's vector
        else:
            g = GATES[variant["cell"]]
            cell = sum(g * H * ((2 * E if i == 0 else H) + H) + 2 * g * H for i in range(layers))
        assert count_params(model) == 10 * E + cell + (10 * H + 10)

    def test_dropout(self, variant):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warns about dropout with one layer
            deep = make(variant, layers=2, dropout=0.5)
            shallow = make(variant, layers=1, dropout=0.5)
        if variant["cell"] != "transformer":  # between recurrent layers only
            assert deep.cell.rnn.dropout == 0.5
            assert shallow.cell.rnn.dropout == 0.0
        a, b = torch.randint(0, 10, (8, 10)), torch.randint(0, 10, (8, 10))
        deep.train()
        assert not torch.equal(deep(a, b), deep(a, b))  # dropout is active in training
        deep.eval()
        assert torch.equal(deep(a, b), deep(a, b))

    def test_a_few_steps_reduce_the_loss(self, variant):
        model = make(variant, layers=1, hidden=24, embed=8)
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


@pytest.mark.parametrize("cell", [c for c in config.CELLS if c != "transformer"])
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
