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


def test_fresh_seeds_passes_a_seed_only_at_both_lengths_and_refuses_a_bad_spec():
    import subprocess
    import sys

    import pytest

    fresh_seeds = load("fresh_seeds")
    cfg = fresh_seeds.config("gru-seed:steps=6000,nines=0.2", 7)
    assert (cfg.cell, cfg.layers, cfg.hidden, cfg.steps, cfg.nines, cfg.seed) == (
        "gru",
        2,
        32,
        6000,
        0.2,
        7,
    )
    assert (cfg.confirm_digits, cfg.confirm_exact, cfg.solve_patience) == (1000, 1.0, 4)
    for bad in ("gru-x", "gru-seed:stepz=3", "gru-seed:steps=many"):
        with pytest.raises(ValueError, match=bad.split(":")[-1].split("=")[-1]):
            fresh_seeds.config(bad, 0)
    runs = [
        {"spec": "s", "seed": 1, "solved_step": 900, "exact_match": {"100": 1.0, "1000": 0.999}},
        {"spec": "s", "seed": 2, "solved_step": None, "exact_match": {"100": 1.0, "1000": 0.998}},
        {"spec": "s", "seed": 3, "solved_step": None, "exact_match": {"100": 0.998, "1000": 1.0}},
    ]
    row = fresh_seeds.table(runs, ["s"]).splitlines()[-1]
    assert row == "| s | 1/3 | 900, -, - | 1.000, 1.000, 0.998 | 0.999, 0.998, 1.000 |"
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fresh_seeds.py"), "gru-seed:hidden=wide"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "hidden = 'wide'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_generalize_variant_changes_the_setting_and_refuses_a_bad_one():
    import subprocess
    import sys

    import pytest

    generalize = load("generalize")
    d = generalize.variant("weight_decay=0.5,steps=8000")
    assert (d["weight_decay"], d["steps"], d["hidden"], d["train_digits"]) == (0.5, 8000, 128, 2)
    bad_ones = {"weight_decay=-1": "weight_decay", "stepz=3": "stepz", "steps": "steps"}
    for bad, named in bad_ones.items():
        with pytest.raises(ValueError, match=named):
            generalize.variant(bad)
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generalize.py"), "--variant", "steps=8000",
         "--variant", "hidden=wide"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2 and "hidden = 'wide'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not out.stdout  # refused before any run


def test_stop_rules_criterion_stops_where_train_does():
    # stop_rules.py puts each set of weights to adder.train.SolveRule: replayed on a real run's
    # evaluations it must solve at train()'s step, here after confirmations that failed
    import torch

    from adder.config import TrainConfig
    from adder.data import held_out
    from adder.models import Adder
    from adder.train import train

    stop_rules = load("stop_rules")
    cfg = TrainConfig(cell="rnn", layers=1, hidden=32, lr=0.002, train_digits=10, test_digits=12,
                      eval_size=200, eval_every=25, steps=2000, stop_when_solved=True,
                      confirm_digits=1000, confirm_size=100, solve_exact=1.0)  # fmt: skip
    states = {}
    summary = train(cfg, report=lambda m, ckpt: states.update({m["step"]: ckpt()["model"]}))
    rule = stop_rules.Criterion(
        cfg, held_out(cfg.eval_size, cfg.test_digits), held_out(cfg.confirm_size, 1000)
    )
    model = Adder(cfg.model_config())
    solved = []
    for step, weights in sorted(states.items()):
        model.load_state_dict(weights)
        with torch.no_grad():
            if rule.update(model, step):
                solved.append(step)
    assert rule.rule.misses >= 2  # the doubled waits were replayed too
    assert solved == [summary["solved_step"]] and solved[0] == max(states)
