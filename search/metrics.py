"""One table of the metrics a trial reports: what each means, which way is better, which ones a
space may optimize, and which ones W&B, the results and the report keep.

``adder.train`` reports the training figures at every evaluation; the trainable adds
``cost_to_solve`` (the default objective) and, in a verification run, the fresh scores per length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# A run that has not solved its task scores this many GFLOP plus its held-out loss: every
# unsolved run ranks after every solved one (a training run here costs well under 1e6 GFLOP),
# and among themselves the closer ones first.
UNSOLVED = 1e9


@dataclass(frozen=True)
class Metric:
    name: str
    doc: str
    mode: str | None = None  # "min" or "max": a space may optimize it (objective.metric)
    logged: bool = True  # to W&B at every evaluation
    kept: bool = False  # in the leaderboard and trials.csv


TABLE = (
    Metric(
        "cost_to_solve",
        "training GFLOP until the run was solved; unsolved: 1e9 + its held-out loss",
        "min",
        kept=True,
    ),
    Metric("val_loss", "cross-entropy on the held-out test-length sums", "min", kept=True),
    Metric("digit_acc", "share of sum digits right, test-length sums", "max", kept=True),
    Metric(
        "exact_match",
        "share of sums with every digit right, test-length sums (several seeds: the worst)",
        "max",
        True,
        True,
    ),
    Metric("mean_exact_match", "exact_match averaged over a trial's seeds (budget.trial_seeds)"),
    Metric("iid_val_loss", "held-out loss at the training length", "min"),
    Metric("iid_digit_acc", "digit accuracy at the training length", "max"),
    Metric("iid_exact_match", "exact-match at the training length", "max", kept=True),
    Metric("train_loss", "mean training loss since the last evaluation"),
    Metric("samples_per_s", "training problems per second since the last evaluation"),
    Metric("lr", "learning rate at this step"),
    Metric(
        "solved_step",
        "first step at which the run (every seed of it) met the solve criterion",
        kept=True,
    ),
    Metric("solved_gflop", "training GFLOP at solved_step (all its seeds together)", kept=True),
    Metric(
        "gflop", "training GFLOP so far, all seeds (analytic: adder.models.train_flops)", kept=True
    ),
    Metric("confirm_exact_match", "exact-match on the longer confirmation set"),
    Metric("params", "trainable parameters", kept=True),
)
METRICS = {m.name: m for m in TABLE}
OBJECTIVES = {m.name: m.mode for m in TABLE if m.mode}
LOGGED = tuple(m.name for m in TABLE if m.logged)
KEPT = tuple(m.name for m in TABLE if m.kept)


def cost_to_solve(result: dict[str, Any]) -> float:
    """The default objective of one report: GFLOP to solve, or UNSOLVED + the held-out loss."""
    solved = result.get("solved_gflop")
    if solved is not None:
        return float(solved)
    loss = result.get("val_loss")
    if not isinstance(loss, (int, float)) or math.isnan(loss):
        return math.inf
    return UNSOLVED + loss


def better(mode: str, a: float, b: float) -> bool:
    """Whether ``a`` is strictly better than ``b`` under ``mode``."""
    return a < b if mode == "min" else a > b


def sort_value(mode: str, v: Any) -> float:
    """A key that sorts best first for ``mode``; missing and NaN values last."""
    if not isinstance(v, (int, float)) or math.isnan(v):
        return math.inf
    return v if mode == "min" else -v


def rank_key(metric: str, mode: str, result: dict[str, Any]) -> tuple:
    """How trials of one cell are ranked, best first: by the objective, then fewer parameters,
    then the lower held-out loss. The search's candidates and its leaderboard both use it."""
    return (
        sort_value(mode, result.get(metric)),
        result.get("params") or math.inf,
        sort_value("min", result.get("val_loss")),
    )
