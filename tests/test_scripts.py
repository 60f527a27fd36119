"""The analysis scripts' own logic, on sums whose answer is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from adder.data import Batch, add_digits, to_digits

ROOT = Path(__file__).resolve().parent.parent


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_carry_errors_names_the_run_of_nines_and_the_carry_each_wrong_digit_needed():
    carry_errors = load("carry_errors")
    # 22547 + 37458 = 60005: LSD first the pairs add to 15, 9, 9, 9, 5; the carry out of the
    # lowest pair is handed on by three 9-pairs into position 4, which reads 5 + 1 = 6
    a, b = to_digits([22547, 12], 6), to_digits([37458, 34], 6)
    batch = Batch(a, b, add_digits(a, b))
    assert batch.s[0].tolist() == [5, 0, 0, 0, 6, 0]
    pred = batch.s.clone()
    pred[0, 4] = 5  # the carry dropped
    pred[1, 0] = 0  # 2 + 4 = 6, no carry in
    got = carry_errors.carry_context(batch, pred)
    assert got == [
        {"sum": 0, "pos": 4, "pair": 5, "run_of_9": 3, "ended_by": 15, "carry_in": 1,
         "wrote": 5, "want": 6},
        {"sum": 1, "pos": 0, "pair": 6, "run_of_9": 0, "ended_by": None, "carry_in": 0,
         "wrote": 0, "want": 6},
    ]  # fmt: skip
