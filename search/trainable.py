"""The Ray Tune function trainable around ``adder.train``: one trial = one training run.

It resumes from ``tune.get_checkpoint()``, reports (and checkpoints) at every evaluation, and turns
a diverged run into a finite-typed, final result: a NaN would leave the Optuna trial RUNNING.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune

from adder.config import VERIFY_SEED, TrainConfig
from adder.train import load_checkpoint, save_checkpoint, train
from search.metrics import cost_to_solve
from search.racing import VERIFY_KEYS

CHECKPOINT = "checkpoint.pt"


def finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """Non-finite losses become +inf (ranks worst, compares cleanly in ASHA and Optuna), and the
    report gains the default objective, ``cost_to_solve``."""
    out = {
        k: math.inf if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()
    }
    return {**out, "cost_to_solve": cost_to_solve(out)}


def trainable(config: dict[str, Any]) -> None:
    train_config = {k: v for k, v in config.items() if k not in VERIFY_KEYS}
    cfg = TrainConfig.from_dict(train_config, where="trial config")
    resume = None
    if (ckpt := tune.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            resume = load_checkpoint(Path(d) / CHECKPOINT)
    reported_step = -1
    final_state = None
    node = ray.get_runtime_context().get_node_id()  # which node ran it: nodes may share an IP

    def report(metrics: dict[str, Any], checkpoint) -> None:
        nonlocal reported_step, final_state
        final_state = checkpoint
        with tempfile.TemporaryDirectory() as d:
            save_checkpoint(checkpoint(), Path(d) / CHECKPOINT)
            tune.report(
                {**finite(metrics), "node_id": node}, checkpoint=tune.Checkpoint.from_directory(d)
            )
        reported_step = metrics["step"]

    result = train(cfg, report=report, resume=resume)
    if result["status"] == "diverged" and result["step"] != reported_step:
        # diverged between two evaluations: say so once, as the trial's last result
        worst = {"val_loss": math.inf, "digit_acc": 0.0, "exact_match": 0.0, "node_id": node}
        tune.report(finite({**result, **worst}))
    if config.get("verify_digits") and final_state is not None:
        tune.report(finite({**result, "node_id": node, **verify(final_state(), config)}))


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
