"""The transformer cell: its attention, its FLOP count, its position schemes' limits."""

from __future__ import annotations

import pytest
import torch

from adder import config
from adder.models import Adder, ModelConfig
from adder.transformer import Transformer


@pytest.mark.parametrize("sink", [True, False])
@pytest.mark.parametrize("pos", config.POSITIONS)
@pytest.mark.parametrize("T", [1, 7, 40])
def test_transformer_flops_match_torchs_flop_counter(pos, T, sink):
    """torch's FlopCounterMode counts every matrix product of a real forward pass (attention in
    its math form: all T x T scores, the masked half included, 4 H T^2 per block, over the
    channels ALiBi adds to each head too). The analytic count is the model's: the masked half
    left out, 4 H t for position t, 2 H T (T + 1) per block."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from adder.models import forward_flops, train_flops

    cfg = ModelConfig(
        cell="transformer", layers=3, hidden=12, embed=5, heads=3, ff_mult=3, pos=pos,
        positions=64 if pos == "learned" else 0, sink=sink,
    )  # fmt: skip
    model = Adder(cfg)
    a = torch.randint(0, 10, (2, T))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(a, a)
    P = T + sink  # positions through the blocks
    masked = cfg.layers * 2 * cfg.hidden * P * (P - 1)  # the scores and values of k > t
    pad = 8 - cfg.hidden // cfg.heads % 8  # the channels ALiBi adds to each head
    alibi = cfg.layers * 4 * cfg.heads * pad * P * P if pos == "alibi" else 0
    assert counter.get_total_flops() == 2 * (forward_flops(cfg, T) + masked + alibi)
    assert train_flops(cfg, T) == 3 * forward_flops(cfg, T)


@pytest.mark.parametrize("d", [4, 7, 8, 13])
def test_alibi_in_the_fused_kernel_is_alibi(d):
    """ALiBi rides into the fused causal kernel as extra channels: the same attention as the
    paper's, written out with its T x T bias."""
    from adder.transformer import alibi_slopes, causal_attention

    g = torch.Generator().manual_seed(0)
    B, h, T = 3, 4, 37
    q, k, v = (torch.randn(B, h, T, d, generator=g) for _ in range(3))
    slopes = alibi_slopes(h)
    dist = torch.arange(T)[:, None] - torch.arange(T)  # t - j
    scores = q @ k.transpose(-1, -2) / d**0.5 - slopes[:, None, None] * dist
    want = scores.masked_fill(dist < 0, float("-inf")).softmax(-1) @ v
    torch.testing.assert_close(causal_attention(q, k, v, slopes), want, rtol=1e-4, atol=1e-5)
    plain = (q @ k.transpose(-1, -2) / d**0.5).masked_fill(dist < 0, float("-inf"))
    torch.testing.assert_close(causal_attention(q, k, v), plain.softmax(-1) @ v)


def test_transformer_heads_split_the_width():
    model = Adder(ModelConfig(cell="transformer", pos="rope", hidden=24, embed=8, heads=3))
    assert isinstance(model.cell, Transformer)
    assert model.cell.blocks[0].attn.heads == 3
    zeros = torch.zeros(2, 5, dtype=torch.long)
    assert model(zeros, zeros).shape == (2, 5, 10)


def test_learned_positions_refuse_a_longer_input_in_one_line():
    from adder.errors import UserError

    model = Adder(ModelConfig(cell="transformer", pos="learned", hidden=8, heads=2, positions=11))
    ok = torch.zeros(1, 11, dtype=torch.long)
    assert model(ok, ok).shape == (1, 11, 10)
    long = torch.zeros(1, 101, dtype=torch.long)
    with pytest.raises(UserError, match="100-digit.*table has 11.*at most 10 digits") as e:
        model(long, long)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def learned_ckpt(run_adder, tmp_path_factory):
    """A transformer with learned positions trained on 3-digit operands (a table of 4)."""
    out = tmp_path_factory.mktemp("learned") / "run"
    p = run_adder(
        "train", "--cell", "transformer", "--pos", "learned", "--hidden", "8", "--heads", "2",
        "--train-digits", "3", "--test-digits", "3", "--steps", "2", "--eval-every", "2",
        "--eval-size", "10", "--out", out, "--wandb", "disabled", cwd=out.parent,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return out / "checkpoint.pt"


def one_line_exit_2(p, *named: str) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for text in named:
        assert text in lines[0], lines[0]


def test_cli_eval_and_add_past_the_learned_table_are_one_line(run_cli, learned_ckpt):
    p = run_cli("eval", learned_ckpt, "--digits", "3", "--n", "20")
    assert p.returncode == 0, p.stderr
    p = run_cli("eval", learned_ckpt, "--digits", "100", "--n", "20")
    one_line_exit_2(p, "adder eval: error:", "table has 4", "at most 3 digits")
    p = run_cli("add", learned_ckpt, "12345", "1")
    one_line_exit_2(p, "adder add: error:", "table has 4")


@pytest.mark.parametrize(
    "flags,named",
    [
        (["--heads", "3"], "heads = 3"),  # does not divide hidden = 32
        (["--pos", "learned"], "test_digits = 100"),  # the default test length, past the table
        (["--pos", "xpos"], "pos = 'xpos'"),
    ],
)
def test_cli_train_refuses_a_transformer_it_cannot_build(run_cli, tmp_path, flags, named):
    p = run_cli("train", "--cell", "transformer", *flags, "--out", tmp_path / "t")
    one_line_exit_2(p, "adder train: error:", named)
    assert not (tmp_path / "t").exists()  # refused before any work
