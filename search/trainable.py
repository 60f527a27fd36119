"""The Ray Tune function trainable around ``adder.train``: one trial = one training run, or
``budget.trial_seeds`` runs of one setting side by side (``train_seeds``).

It resumes from ``tune.get_checkpoint()``, reports (and checkpoints) at every evaluation, and turns
a diverged run into a finite-typed, final result: a NaN would leave the Optuna trial RUNNING.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import tune

from adder.config import VERIFY_SEED, TrainConfig
from adder.train import load_checkpoint, run, save_checkpoint
from search.metrics import cost_to_solve
from search.racing import VERIFY_KEYS
from search.space import TRIAL_SEEDS

CHECKPOINT = "checkpoint.pt"


def finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """Non-finite losses become +inf (ranks worst, compares cleanly in ASHA and Optuna), and the
    report gains the default objective, ``cost_to_solve``."""
    out = {
        k: math.inf if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()
    }
    return {**out, "cost_to_solve": cost_to_solve(out)}


def trainable(config: dict[str, Any]) -> None:
    train_config = {k: v for k, v in config.items() if k not in (*VERIFY_KEYS, TRIAL_SEEDS)}
    cfg = TrainConfig.from_dict(train_config, where="trial config")
    resume = None
    if (ckpt := tune.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            resume = load_checkpoint(Path(d) / CHECKPOINT)
    node = ray.get_runtime_context().get_node_id()  # which node ran it: nodes may share an IP

    def report(metrics: dict[str, Any], checkpoint) -> None:
        if checkpoint is None:
            tune.report({**finite(metrics), "node_id": node})
            return
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(checkpoint(), Path(d) / CHECKPOINT)
            tune.report(
                {**finite(metrics), "node_id": node}, checkpoint=tune.Checkpoint.from_directory(d)
            )

    result, final_state = train_seeds(cfg, config.get(TRIAL_SEEDS, 1), report, resume)
    if config.get("verify_digits"):
        # a run that diverged before its first evaluation has no model to score: it fails (a
        # run ending without these figures is taken as cut short, and its seed run again)
        scored = verify(final_state(), config) if final_state else unscored(config, cfg.seed)
        tune.report(finite({**result, "node_id": node, **scored}))


# A diverged run's test figures, the worst there are
DIVERGED = {"val_loss": math.inf, "digit_acc": 0.0, "exact_match": 0.0}
# How the seeds of one trial make its figures: a setting is as good as its worst seed (the race
# asks every fresh seed to pass), its compute is theirs together.
WORST = {
    "val_loss": "max",
    "iid_val_loss": "max",
    "train_loss": "max",
    "digit_acc": "min",
    "exact_match": "min",
    "iid_digit_acc": "min",
    "iid_exact_match": "min",
    "confirm_exact_match": "min",
}


def train_seeds(
    cfg: TrainConfig,
    seeds: int,
    report: Callable[[dict[str, Any], Callable[[], dict[str, Any]] | None], None],
    resume: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Callable[[], dict[str, Any]] | None]:
    """Train ``cfg`` with training seeds ``cfg.seed`` to ``cfg.seed + seeds - 1`` side by side,
    one evaluation at a time, and report each evaluation's figures over them (``combined``)
    with a checkpoint of all of them (seed 0's state, the others' under ``"seeds"``). A seed
    that ends (solved) keeps its last figures while the others go on; one that diverges ends
    the trial. Returns the last summary and checkpoint of a single seed (a verification run's;
    None if it never got to an evaluation), else ``({}, None)``."""
    states, latest = _split(resume, seeds)
    checkpoints = {  # what each seed resumed from, until it has a newer state
        k: functools.partial(copy.deepcopy, state) for k, state in enumerate(states) if state
    }
    runs = {
        k: run(dataclasses.replace(cfg, seed=cfg.seed + k), resume=states[k])
        for k in range(seeds)
        if k not in latest
    }
    summary: dict[str, Any] = {}

    def checkpoint() -> dict[str, Any]:
        each = [checkpoints[k]() for k in range(seeds)]
        if seeds == 1:
            return each[0]
        ended = [latest[k] if k not in runs else None for k in range(seeds)]
        others = [
            {"state": state, "ended": e} for state, e in zip([None, *each[1:]], ended, strict=True)
        ]
        return {**each[0], "seeds": others}

    while runs:
        between = False  # a seed diverged between two evaluations: nothing to keep of it
        for k, evaluations in list(runs.items()):
            try:
                latest[k], checkpoints[k], last = next(evaluations)
            except StopIteration as end:  # no evaluation: diverged, or resumed at its end
                summary, last = end.value, True
                if summary["status"] == "diverged":
                    between = True
                    latest[k] = {**latest.get(k, {}), **summary, **DIVERGED}
            if last:
                del runs[k]
                summary = _finish(evaluations, summary)
        if not latest:  # resumed where it had ended: its last figures were reported then
            break
        figures = combined([latest[k] for k in sorted(latest)])
        report(figures, None if between else checkpoint)
        if figures["status"] == "diverged":
            break
    for evaluations in runs.values():
        evaluations.close()
    if seeds == 1:
        return summary, checkpoints.get(0)
    return {}, None


def _finish(evaluations, summary: dict[str, Any]) -> dict[str, Any]:
    """The summary a run returns after its last evaluation."""
    try:
        evaluations.send(False)
    except StopIteration as end:
        return end.value or summary
    return summary


def _split(resume: dict[str, Any] | None, seeds: int) -> tuple[list, dict[int, dict[str, Any]]]:
    """Each seed's state to resume from, and the last figures of those that had ended."""
    if resume is None:
        return [None] * seeds, {}
    others = resume.get("seeds") or [{"state": None, "ended": None}]
    states = [resume if k == 0 else o["state"] for k, o in enumerate(others)]
    return states, {k: o["ended"] for k, o in enumerate(others) if o["ended"] is not None}


def combined(each: list[dict[str, Any]]) -> dict[str, Any]:
    """One evaluation's figures over a trial's seeds: the worst seed's test figures (``WORST``),
    their compute added up (solved when every seed is), and the mean exact-match beside."""
    if len(each) == 1:
        return dict(each[0])
    out = dict(max(each, key=lambda m: m.get("step", 0)))
    for key, mode in WORST.items():
        values = [m[key] for m in each if isinstance(m.get(key), (int, float))]
        if values:  # NaN is the worst there is
            nan = math.inf if mode == "max" else -math.inf
            out[key] = (max if mode == "max" else min)(
                values, key=lambda v: nan if math.isnan(v) else v
            )
    out["mean_exact_match"] = statistics.fmean(m.get("exact_match", 0.0) for m in each)
    out["gflop"] = sum(m.get("gflop", 0.0) for m in each)
    solved = [m.get("solved_step") for m in each]
    out["solved_step"] = None if None in solved else max(solved)
    out["solved_gflop"] = None if None in solved else sum(m["solved_gflop"] for m in each)
    rates = [m["samples_per_s"] for m in each if m.get("samples_per_s")]
    if rates:  # the seeds train one after another
        out["samples_per_s"] = len(rates) / sum(1 / r for r in rates)
    diverged = any(m.get("status") == "diverged" for m in each)
    out["status"] = "diverged" if diverged else "ok"
    out["seeds"] = len(each)
    return out


def unscored(config: dict[str, Any], seed: int) -> dict[str, float]:
    """A verification run's figures when it has no model to score: the worst at every length."""
    out = {}
    for d in config["verify_digits"]:
        out[f"exact_match_{d}"], out[f"digit_acc_{d}"], out[f"loss_{d}"] = 0.0, 0.0, math.inf
    return {**out, "seed": seed}


def verify(state: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    """Exact-match, digit accuracy and loss of the trained model on fresh held-out sums (never
    selected on) of every length ``verify_digits`` names."""
    from adder.data import held_out
    from adder.models import Adder
    from adder.train import evaluate, resolve_device

    cfg = TrainConfig.from_dict(state["config"])
    device = resolve_device(cfg.device)
    model = Adder(cfg.model_config()).to(device)
    model.load_state_dict(state["model"])
    out = {}
    for d in config["verify_digits"]:
        m = evaluate(model, held_out(config["verify_n"], d, device, seed=VERIFY_SEED))
        out[f"exact_match_{d}"], out[f"digit_acc_{d}"] = m["exact_match"], m["digit_acc"]
        out[f"loss_{d}"] = m["loss"]
    return {**out, "seed": cfg.seed}
