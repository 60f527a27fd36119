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

from adder.config import TrainConfig
from adder.train import load_checkpoint, save_checkpoint, train

CHECKPOINT = "checkpoint.pt"


def finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """Non-finite losses become +inf (ranks worst, compares cleanly in ASHA and Optuna)."""
    return {
        k: math.inf if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()
    }


def trainable(config: dict[str, Any]) -> None:
    cfg = TrainConfig.from_dict(config, where="trial config")
    resume = None
    if (ckpt := tune.get_checkpoint()) is not None:
        with ckpt.as_directory() as d:
            resume = load_checkpoint(Path(d) / CHECKPOINT)
    reported_step = -1
    node = ray.get_runtime_context().get_node_id()  # which node ran it: nodes may share an IP

    def report(metrics: dict[str, Any], checkpoint) -> None:
        nonlocal reported_step
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
