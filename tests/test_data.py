"""adder.data against Python's own integers (and a schoolbook adder where ints get too long)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adder.config import VERIFY_SEED
from adder.data import (
    EVAL_SEED,
    HELD_OUT_SEED,
    add_digits,
    from_digits,
    held_out,
    make_generator,
    parse_operand,
    sample,
    to_digits,
)
from adder.errors import UserError


def schoolbook(a: list[int], b: list[int]) -> list[int]:
    """Digit-by-digit addition of two LSD-first rows of equal length, final carry dropped."""
    out, carry = [], 0
    for x, y in zip(a, b, strict=True):
        carry, d = divmod(x + y + carry, 10)
        out.append(d)
    return out


def add_via_digits(pairs: list[tuple[int, int]]) -> list[str]:
    """Add each pair with add_digits, in one batch, wide enough for the final carry."""
    width = max(len(str(x)) for pair in pairs for x in pair) + 1
    a = to_digits([x for x, _ in pairs], width)
    b = to_digits([y for _, y in pairs], width)
    return from_digits(add_digits(a, b))


# -- sample ----------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [1, 2, 10, 100, 1000])
def test_sample_sums_match_python_ints(digits):
    n = 64
    batch = sample(n, digits, generator=torch.Generator().manual_seed(digits))
    for x in batch:
        assert x.shape == (n, digits + 1)
        assert x.dtype == torch.int64
        assert int(x.min()) >= 0 and int(x.max()) <= 9
    # room for the final carry: the operands' top position is always 0
    assert (batch.a[:, -1] == 0).all() and (batch.b[:, -1] == 0).all()
    for a, b, s in zip(
        from_digits(batch.a), from_digits(batch.b), from_digits(batch.s), strict=True
    ):
        assert int(a) < 10**digits and int(b) < 10**digits
        assert int(a) + int(b) == int(s)


@pytest.mark.parametrize("nines", [0.25, 0.9])
def test_sample_with_nines_draws_that_share_of_pairs_adding_to_9_and_adds_exactly(nines):
    batch = sample(4000, 10, generator=torch.Generator().manual_seed(1), nines=nines)
    pairs = (batch.a + batch.b)[:, :-1]
    # each pair adds to 9 with nines, else with 1/10 as a uniform pair: 40,000 pairs
    assert (pairs == 9).double().mean().item() == pytest.approx(nines + (1 - nines) / 10, abs=0.01)
    assert set(batch.a[:, 0].tolist()) == set(range(10))  # the first operand stays uniform
    for a, b, s in zip(*(from_digits(x[:50]) for x in batch), strict=True):
        assert int(a) + int(b) == int(s)


def test_sample_without_nines_draws_what_it_always_drew():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = torch.randint(0, 10, (8, 5), generator=g1), torch.randint(0, 10, (8, 5), generator=g1)
    batch = sample(8, 5, generator=g2, nines=0.0)
    assert torch.equal(batch.a[:, :5], a) and torch.equal(batch.b[:, :5], b)
    assert torch.equal(g1.get_state(), g2.get_state())  # and no more: the stream goes on alike


def test_sample_operands_cover_all_digits():
    batch = sample(2000, 1, generator=torch.Generator().manual_seed(0))
    assert set(batch.a[:, 0].tolist()) == set(range(10))
    assert set(batch.b[:, 0].tolist()) == set(range(10))
    assert set(batch.s[:, 1].tolist()) == {0, 1}  # a carry happens, and not always


def test_sample_10000_digits():
    digits = 10_000
    batch = sample(3, digits, generator=torch.Generator().manual_seed(1))
    assert batch.s.shape == (3, digits + 1)
    for a, b, s in zip(batch.a.tolist(), batch.b.tolist(), batch.s.tolist(), strict=True):
        assert a[-1] == 0 and b[-1] == 0
        assert s == schoolbook(a, b)


def test_same_seed_same_problems():
    one = sample(32, 12, generator=torch.Generator().manual_seed(7))
    two = sample(32, 12, generator=torch.Generator().manual_seed(7))
    other = sample(32, 12, generator=torch.Generator().manual_seed(8))
    for x, y in zip(one, two, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(one.a, other.a)


def test_make_generator_is_seeded():
    one = sample(16, 8, generator=make_generator(3, "cpu"))
    two = sample(16, 8, generator=make_generator(3, "cpu"))
    assert all(torch.equal(x, y) for x, y in zip(one, two, strict=True))


def test_training_stream_moves_on():
    g = torch.Generator().manual_seed(0)
    first, second = sample(16, 8, generator=g), sample(16, 8, generator=g)
    assert not torch.equal(first.a, second.a)


# -- held_out --------------------------------------------------------------------------------


def test_held_out_is_fixed_and_independent_of_training_streams():
    first = held_out(50, 15)
    rng_before = torch.get_rng_state()
    again = held_out(50, 15)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is not touched
    # drawing from a training generator and the global RNG in between changes nothing
    g = torch.Generator().manual_seed(HELD_OUT_SEED + 15)
    sample(50, 15, generator=g)
    torch.manual_seed(123)
    torch.rand(100)
    later = held_out(50, 15)
    for x, y, z in zip(first, again, later, strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)


def test_held_out_is_correct_and_seedable():
    batch = held_out(40, 25)
    assert batch.s.shape == (40, 26)
    for a, b, s in zip(
        from_digits(batch.a), from_digits(batch.b), from_digits(batch.s), strict=True
    ):
        assert int(a) + int(b) == int(s)
    assert torch.equal(held_out(40, 25, seed=5).a, held_out(40, 25, seed=5).a)
    assert not torch.equal(held_out(40, 25, seed=5).a, batch.a)
    assert not torch.equal(held_out(40, 24).a[:, :24], batch.a[:, :24])  # per digit count


def pairs(batch) -> set[tuple[int, int]]:
    """The problems of a batch as pairs of Python integers."""
    return set(zip(map(int, from_digits(batch.a)), map(int, from_digits(batch.b)), strict=True))


@pytest.mark.parametrize("seed", [0, 7, HELD_OUT_SEED])
def test_held_out_differs_from_a_training_stream_with_the_same_seed(seed):
    # held_out(seed=s) and a run seeded s draw from generators seeded apart (s + digits and s):
    # the two share no problem (10^20 possible ones; 40 drawn each)
    train = sample(40, 10, generator=make_generator(seed, "cpu"))
    assert not pairs(held_out(40, 10, seed=seed)) & pairs(train)


def test_eval_seed_is_apart_from_every_other_held_out_seed():
    """held_out draws with seed + digits: `adder eval`'s sets meet the training runs' (and the
    search's selection) sets or verify's only if two seeds are closer than the longest sums."""
    for other in (HELD_OUT_SEED, VERIFY_SEED):
        assert abs(EVAL_SEED - other) > 10**6, other
    assert len({EVAL_SEED, HELD_OUT_SEED, VERIFY_SEED}) == 3


@pytest.mark.parametrize("digits", [5, 10, 100])
def test_eval_sums_are_not_the_training_runs_held_out_sums(digits):
    fresh = pairs(held_out(1000, digits, seed=EVAL_SEED))
    assert fresh == pairs(held_out(1000, digits, seed=EVAL_SEED))  # the same on every call
    assert len(fresh) == 1000
    for seed in (None, VERIFY_SEED):  # training's and the search's, then verify's
        assert not fresh & pairs(held_out(1000, digits, seed=seed)), seed


# -- add_digits / to_digits / from_digits ------------------------------------------------------

EDGE_CASES = [
    (0, 0),
    (0, 7),
    (3, 4),  # single digits, no carry
    (5, 5),  # single digits, carry
    (9, 9),
    (1, 0),
    (9, 1),
    (99, 1),
    (10**50 - 1, 1),  # all 9s + 1: a carry through every position
    (1, 10**50 - 1),
    (10**50 - 1, 10**50 - 1),  # all 9s + all 9s
    (5555555555, 4444444445),  # generate at the bottom, propagate the rest
    (4545454545, 5454545455),
    (10**30, 10**30),
    (10**30 - 1, 0),
    (123456789, 987654321),
    (1, 10**40 + 10**20 - 1),  # a carry that stops in the middle
    (0, 10**60),  # very different lengths
]


@pytest.mark.parametrize("a,b", EDGE_CASES)
def test_add_digits_edge_cases(a, b):
    assert add_via_digits([(a, b)]) == [str(a + b)]


def test_add_digits_rows_are_independent():
    # one batch with every edge case: a carry chain in one row never leaks into another
    assert add_via_digits(EDGE_CASES) == [str(a + b) for a, b in EDGE_CASES]


def test_add_digits_drops_the_carry_out_of_the_top_position():
    a, b = to_digits([999], 3), to_digits([1], 3)
    assert from_digits(add_digits(a, b)) == ["0"]


def test_to_digits_and_from_digits():
    d = to_digits([123, "45", 0], 5)
    assert d.tolist() == [[3, 2, 1, 0, 0], [5, 4, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert from_digits(d) == ["123", "45", "0"]
    with pytest.raises(ValueError):
        to_digits([12345], 4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**300), st.integers(0, 10**300)), min_size=1))
def test_add_digits_matches_python_ints(pairs):
    assert add_via_digits(pairs) == [str(a + b) for a, b in pairs]


# Long runs of 9s (propagate) and of 0s/1s/8s make the carry chains that random ints rarely have.
carry_heavy = st.text(alphabet="01899999", min_size=1, max_size=300).map(int)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(carry_heavy, carry_heavy), min_size=1, max_size=8))
def test_add_digits_matches_python_ints_on_carry_chains(pairs):
    assert add_via_digits(pairs) == [str(a + b) for a, b in pairs]


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**300), st.integers(0, 20))
def test_digits_round_trip(x, extra):
    width = len(str(x)) + extra
    assert from_digits(to_digits([x], width)) == [str(x)]


# -- parse_operand -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [("007", "7"), ("0", "0"), ("000", "0"), ("123", "123"), ("9" * 5000, "9" * 5000)],
)
def test_parse_operand_accepts(text, expected):
    assert parse_operand(text) == expected


@pytest.mark.parametrize(
    "text",
    ["12a", "-3", "", " ", "1.5", "١٢", "+5", "1_000", "1e5", "0x10", "²", "1 2", "１２"],
)
def test_parse_operand_refuses(text):
    with pytest.raises(UserError) as e:
        parse_operand(text)
    assert repr(text) in str(e.value)
    assert "\n" not in str(e.value)
