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


def candidates(folder: Path, board: dict[str, Any], top: int) -> dict[str, list[dict[str, Any]]]:
    """Per cell, the ``top`` best trials as the leaderboard ranks them (the first is its best)."""
    if top == 1:
        return {cell: [{**best, "rank": 1}] for cell, best in board["cells"].items()}
    from search.results import TrialRecord, load_trials

    records = [r for r in load_trials(folder) if r.metrics.get("params")]
    out = {}
    for cell in board["cells"]:
        ranked = sorted((r for r in records if r.cell == cell), key=TrialRecord.rank_key)
        out[cell] = [
            {"trial_id": r.trial_id, "config": r.config, "rank": i + 1}
            for i, r in enumerate(ranked[:top])
        ]
    return out


def run(
    folder: Path, seeds: int, digits: list[int], n: int, opts: Options, *, top: int = 1
) -> dict[str, Any]:
    """Retrain the ``top`` best settings of each cell with ``seeds`` fresh seeds each."""
    folder = folder.resolve()
    board = load_board(folder)
    from search.tracking import resolve_mode

    mode = resolve_mode(opts.wandb)
    connect(opts.address)  # first: importing Ray (load_trials does) fixes its auth mode
    picked = candidates(folder, board, top)
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search import ConcurrencyLimiter

    from search.callbacks import ProgressCallback, WandbCallback
    from search.percell import ListSearch
    from search.trainable import trainable

    configs = [
        {
            **c["config"],
            "seed": SEED_BASE + i,
            "verify_digits": digits,
            "verify_n": n,
            "verify_of": c["trial_id"],
        }
        for cands in picked.values()
        for c in cands
        for i in range(seeds)
    ]
    per_trial, max_concurrent = trial_resources(opts)
    shutil.rmtree(folder / EXPERIMENT, ignore_errors=True)  # a verify is always from scratch
    settings = sum(len(c) for c in picked.values())
    print(
        f"adder verify: {settings} settings ({len(picked)} cells x top {top}) x {seeds} seeds, "
        f"{max_concurrent} at a time",
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
                JsonLoggerCallback(),
                WandbCallback(mode, folder, opts.wandb_project, f"{board['name']}-verify"),
                ProgressCallback(len(configs)),
            ],
            verbose=0,
        ),
    )
    grid = tuner.fit()
    runs = [{**r.metrics, "config": r.config} for r in grid if r.metrics]
    summary = summarize(board, picked, runs, seeds, digits, n)
    (folder / "verify.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "verify.md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


def _stats(runs: list[dict[str, Any]], digits: list[int]) -> dict[str, dict[str, Any]]:
    per_len = {}
    for d in digits:
        ems = [r[f"exact_match_{d}"] for r in runs]
        per_len[str(d)] = {
            "mean": statistics.fmean(ems) if ems else None,
            "min": min(ems) if ems else None,
            "solved_frac": sum(e >= SOLVED for e in ems) / len(ems) if ems else None,
            "n": len(ems),
        }
    return per_len


def _robustness(c: dict[str, Any]) -> tuple[float, float]:
    """How a candidate is chosen: the mean over lengths of its mean exact-match, then of its
    worst seed's."""
    d = [s for s in c["digits"].values() if s["n"]]
    if not d:
        return (-1.0, -1.0)
    return (statistics.fmean(s["mean"] for s in d), statistics.fmean(s["min"] for s in d))


def summarize(board, picked, runs, seeds: int, digits: list[int], n: int) -> dict[str, Any]:
    """Per cell: every candidate's figures, and the candidate fresh seeds reproduce best."""
    out: dict[str, Any] = {"name": board["name"], "seeds": seeds, "n": n, "cells": {}}
    for cell, cands in picked.items():
        scored = []
        for c in cands:
            mine = [
                r
                for r in runs
                if r["config"].get("verify_of") == c["trial_id"]
                and f"exact_match_{digits[0]}" in r
            ]
            scored.append(
                {
                    "trial_id": c["trial_id"],
                    "rank": c["rank"],
                    "config": c["config"],
                    "digits": _stats(mine, digits),
                    "seeds": sorted(r["config"]["seed"] for r in mine),
                    "runs": [
                        {
                            "seed": r["config"]["seed"],
                            "solved_step": r.get("solved_step"),
                            "steps": r.get("step"),
                            **{f"exact_match_{d}": r[f"exact_match_{d}"] for d in digits},
                        }
                        for r in sorted(mine, key=lambda r: r["config"]["seed"])
                    ],
                }
            )
        chosen = max(scored, key=_robustness)
        out["cells"][cell] = {**chosen, "candidates": scored}
    return out


def findings(summary: dict[str, Any]) -> list[str]:
    """What a user must see: settings that not every fresh seed reproduces, and a leaderboard
    best that fresh seeds reproduce worse than a runner-up."""
    lines = []
    for cell, c in summary["cells"].items():
        if c.get("rank", 1) != 1:
            lines.append(
                f"{cell}: the leaderboard's best is not the most reproducible setting; its "
                f"#{c['rank']} (trial {c['trial_id']}) does better over fresh seeds"
            )
        for d, s in c["digits"].items():
            if s["n"] and s["solved_frac"] < 1:
                k = round(s["solved_frac"] * s["n"])
                lines.append(
                    f"{cell}: only {k}/{s['n']} fresh seeds reach exact-match >= "
                    f"{SOLVED} on {d}-digit sums (min {s['min']:.3f})"
                )
    return lines


def markdown(summary: dict[str, Any]) -> str:
    many = any(len(c.get("candidates", [])) > 1 for c in summary["cells"].values())
    what = (
        "Each cell's best settings (by leaderboard rank)" if many else "Each cell's best setting"
    )
    lines = [
        f"# Verify: {summary['name']}",
        "",
        f"{what} retrained from scratch with {summary['seeds']} fresh seeds, each scored on "
        f"{summary['n']} fresh held-out sums per length."
        + (
            " The chosen setting per cell (**bold**) is the one whose mean exact-match, "
            "averaged over the lengths, is highest."
            if many
            else ""
        ),
        "",
        "| cell | rank | trial | digits | mean exact-match | min exact-match | seeds solved |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell, c in summary["cells"].items():
        for cand in c.get("candidates", [c]):
            chosen = cand["trial_id"] == c["trial_id"]
            rank = f"**{cand['rank']}**" if chosen and many else str(cand["rank"])
            for d, s in cand["digits"].items():
                if s["n"]:
                    lines.append(
                        f"| {cell} | {rank} | {cand['trial_id']} | {d} | {s['mean']:.4f} | "
                        f"{s['min']:.4f} | {round(s['solved_frac'] * s['n'])}/{s['n']} |"
                    )
    found = findings(summary)
    lines += ["", "**Findings:**" if found else "Every seed solved every length."]
    lines += [f"- {f}" for f in found]
    return "\n".join(lines) + "\n"
