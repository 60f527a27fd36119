"""``adder verify``: is each cell's best setting a property of the setting, or of one lucky seed?

Retrains every cell's best config from scratch with fresh seeds (in parallel on Ray, logged to W&B
like any trial), evaluates each model on fresh held-out sums of every length, and writes
``verify.json`` and ``verify.md`` beside the leaderboard.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

from adder.config import SOLVED
from adder.errors import UserError
from search.tune import Options, connect, trial_name, trial_resources

EXPERIMENT = "verify"
SEED_BASE = 10_000  # verify seeds: far from the search's training seeds


def load_board(folder: Path) -> dict[str, Any]:
    path = folder / "leaderboard.json"
    if not path.is_file():
        raise UserError(
            f"{folder}: no leaderboard.json; expected the folder of a finished search "
            "(results/<name>), run adder search first"
        )
    try:
        board = json.loads(path.read_text())
        board["cells"] and board["name"]  # noqa: B018  (shape check)
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a leaderboard written by adder search") from None
    return board


def run(folder: Path, seeds: int, digits: list[int], n: int, opts: Options) -> dict[str, Any]:
    folder = folder.resolve()
    board = load_board(folder)
    from search.tracking import resolve_mode

    mode = resolve_mode(opts.wandb)
    connect(opts.address)
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from search.callbacks import ProgressCallback, WandbCallback
    from search.percell import ListSearch
    from search.trainable import trainable

    configs = [
        {**best["config"], "seed": SEED_BASE + i, "verify_digits": digits, "verify_n": n}
        for best in board["cells"].values()
        for i in range(seeds)
    ]
    per_trial, max_concurrent = trial_resources(opts)
    shutil.rmtree(folder / EXPERIMENT, ignore_errors=True)  # a verify is always from scratch
    print(
        f"adder verify: {len(board['cells'])} cells x {seeds} seeds, {max_concurrent} at a time",
        file=sys.stderr,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, per_trial),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(ListSearch(configs), max_concurrent=max_concurrent),
            num_samples=len(configs),
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=str(folder),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=opts.max_failures),
            callbacks=[
                WandbCallback(mode, folder, opts.wandb_project, f"{board['name']}-verify"),
                ProgressCallback(len(configs)),
            ],
            verbose=0,
        ),
    )
    grid = tuner.fit()
    runs = [r.metrics for r in grid if r.metrics]
    summary = summarize(board, runs, seeds, digits, n)
    (folder / "verify.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "verify.md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


def summarize(board, runs, seeds: int, digits: list[int], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"name": board["name"], "seeds": seeds, "n": n, "cells": {}}
    for cell, best in board["cells"].items():
        mine = [r for r in runs if r.get("cell") == cell and f"exact_match_{digits[0]}" in r]
        per_len = {}
        for d in digits:
            ems = [r[f"exact_match_{d}"] for r in mine]
            per_len[str(d)] = {
                "mean": statistics.fmean(ems) if ems else None,
                "min": min(ems) if ems else None,
                "solved_frac": sum(e >= SOLVED for e in ems) / len(ems) if ems else None,
                "n": len(ems),
            }
        out["cells"][cell] = {
            "trial_id": best["trial_id"],
            "config": best["config"],
            "digits": per_len,
            "runs": [
                {
                    "seed": r["config"]["seed"] if "config" in r else None,
                    "solved_step": r.get("solved_step"),
                    "steps": r.get("step"),
                    **{f"exact_match_{d}": r[f"exact_match_{d}"] for d in digits},
                }
                for r in mine
            ],
        }
    return out


def findings(summary: dict[str, Any]) -> list[str]:
    """What a user must see: settings that not every fresh seed reproduces."""
    lines = []
    for cell, c in summary["cells"].items():
        for d, s in c["digits"].items():
            if s["n"] and s["solved_frac"] < 1:
                k = round(s["solved_frac"] * s["n"])
                lines.append(
                    f"{cell}: only {k}/{s['n']} fresh seeds reach exact-match >= "
                    f"{SOLVED} on {d}-digit sums (min {s['min']:.3f})"
                )
    return lines


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# Verify: {summary['name']}",
        "",
        f"Each cell's best setting retrained from scratch with {summary['seeds']} fresh seeds, "
        f"each scored on {summary['n']} fresh held-out sums per length.",
        "",
        "| cell | digits | mean exact-match | min exact-match | seeds solved |",
        "|---|---|---|---|---|",
    ]
    for cell, c in summary["cells"].items():
        for d, s in c["digits"].items():
            if s["n"]:
                lines.append(
                    f"| {cell} | {d} | {s['mean']:.4f} | {s['min']:.4f} | "
                    f"{round(s['solved_frac'] * s['n'])}/{s['n']} |"
                )
    found = findings(summary)
    lines += ["", "**Findings:**" if found else "Every seed solved every length."]
    lines += [f"- {f}" for f in found]
    return "\n".join(lines) + "\n"
