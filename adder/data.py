"""Addition problems as digit sequences, least significant digit first.

A problem of ``d`` digits is two operands drawn uniformly from [0, 10^d) and their sum, each
written as ``d + 1`` digits (room for the final carry); training may draw more digit pairs that
add to 9 (``nines``), held-out sets never do. Everything here is vectorized on the
target device: an operand uniform in [0, 10^d) is ``d`` independent uniform digits, and the carry
chain is a scan (``cummax``), not a Python loop, so 10,000-digit problems cost what their size
says and no Python big integer is ever built on the hot path.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import torch

# The held-out seeds, here where held_out uses them; kept in adder.config, which the CLI reads
# without torch (their docs are there).
from adder.config import EVAL_SEED, HELD_OUT_SEED  # noqa: F401
from adder.errors import UserError


class Batch(NamedTuple):
    a: torch.Tensor  # (B, T) digits of the first operand, LSD first, int64
    b: torch.Tensor  # (B, T) digits of the second operand
    s: torch.Tensor  # (B, T) digits of the sum


def add_digits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact digit-wise sum of two (B, T) LSD-first digit tensors, carry included.

    A carry leaves position i when a_i + b_i >= 10 (generate) or when a_i + b_i == 9 and a carry
    arrives (propagate). So the carry into i + 1 is the "generate" bit of the last position <= i
    that does not propagate: one ``cummax`` over positions finds it. The carry out of the last
    position is dropped; callers leave a zero position at the top for it.
    """
    t = a + b  # (B, T) in 0..18
    T = t.shape[-1]
    pos = torch.arange(T, device=t.device).expand_as(t)
    stops = torch.where(t != 9, pos, torch.full_like(pos, -1))
    last_stop = stops.cummax(dim=-1).values  # (B, T): last non-propagating position <= i
    gen = t >= 10
    carry_out = torch.where(last_stop >= 0, gen.gather(-1, last_stop.clamp(min=0)), False)
    carry_in = torch.zeros_like(carry_out)
    carry_in[..., 1:] = carry_out[..., :-1]
    return (t + carry_in.long()) % 10


def sample(
    n: int,
    digits: int,
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    nines: float = 0.0,
) -> Batch:
    """``n`` problems with operands uniform in [0, 10^digits), as (n, digits + 1) digit tensors.

    With ``nines``, each digit pair is instead drawn among the ten that add to 9 with that
    probability: uniform operands make one pair in 10 do so, and a carry handed on through a run
    of k of them is seen about 10^-k as often. ``nines`` 0 draws exactly what it always drew.
    """
    shape = (n, digits)
    a = torch.randint(0, 10, shape, generator=generator, device=device)
    b = torch.randint(0, 10, shape, generator=generator, device=device)
    if nines:
        nine = torch.rand(shape, generator=generator, device=device) < nines
        b = torch.where(nine, 9 - a, b)
    pad = torch.zeros((n, 1), dtype=a.dtype, device=device)
    a, b = torch.cat([a, pad], dim=1), torch.cat([b, pad], dim=1)
    return Batch(a, b, add_digits(a, b))


def held_out(n: int, digits: int, device: torch.device | str = "cpu", seed: int | None = None):
    """The fixed held-out set of ``n`` problems of ``digits`` digits.

    Drawn on the CPU from its own generator, never from a training stream, so the same seed gives
    the same problems on every device; then moved to ``device``.
    """
    g = torch.Generator().manual_seed((HELD_OUT_SEED if seed is None else seed) + digits)
    return Batch(*(x.to(device) for x in sample(n, digits, generator=g)))


def make_generator(seed: int, device: torch.device | str) -> torch.Generator:
    """A training-stream generator living on ``device`` (CUDA draws need a CUDA generator)."""
    return torch.Generator(device=device).manual_seed(seed)


# -- digits <-> integers: for people and for tests, never on the hot path ---------------------


def _allow_long_ints() -> None:
    # Python refuses str <-> int of more than 4300 digits by default; sums here may be longer.
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)


def parse_operand(text: str) -> str:
    """Validate a non-negative decimal integer; returns it without leading zeros.

    Raises:
        UserError: naming the bad value, when ``text`` is not made of decimal digits alone.
    """
    s = text.strip()
    if not s or not s.isascii() or not s.isdigit():
        raise UserError(f"operand {text!r} is not a non-negative integer (expected digits 0-9)")
    return s.lstrip("0") or "0"


def to_digits(numbers: list[str] | list[int], width: int) -> torch.Tensor:
    """Integers (or their decimal strings) -> (B, width) LSD-first digit tensor."""
    _allow_long_ints()
    rows = []
    for x in numbers:
        s = str(x)
        if len(s) > width:
            raise ValueError(f"{s[:20]}... has {len(s)} digits, more than width {width}")
        rows.append([int(c) for c in reversed(s.rjust(width, "0"))])
    return torch.tensor(rows, dtype=torch.long)


def from_digits(digits: torch.Tensor) -> list[str]:
    """(B, T) LSD-first digit tensor -> decimal strings without leading zeros."""
    out = []
    for row in digits.tolist():
        s = "".join(str(d) for d in reversed(row)).lstrip("0")
        out.append(s or "0")
    return out
