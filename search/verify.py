"""``adder verify``: more seeds, more lengths, after the fact.

``adder search`` verifies each cell's leading candidates itself when its space says so (racing,
search.racing). This command does it again on a finished search's folder, with as many seeds and
lengths as asked and no racing: every one of each cell's ``top`` best settings is retrained with
every fresh seed (in parallel on Ray, logged to W&B like any trial) and scored on fresh held-out
sums of every length. Its seeds (20000 on) are not the race's (10000 on): the race picked its
winner on those, so scoring it on them again would flatter it. It writes ``verify.json`` and
``verify.md`` beside the leaderboard, and shares the race's code: its candidates, its figures
and how it picks the winner.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from adder.config import SOLVED
from adder.errors import UserError
from search.layout import LEADERBOARD_JSON, VERIFY_EXPERIMENT, VERIFY_JSON, VERIFY_MD
from search.tune import Options, connect, trial_resources


def load_board(folder: Path) -> dict[str, Any]:
    path = folder / LEADERBOARD_JSON
    if not path.is_file():
        raise UserError(
            f"{folder}: no {LEADERBOARD_JSON}; expected the folder of a finished search "
            "(results/<name>), run adder search first"
        )
    try:
        board = json.loads(path.read_text())
        board["cells"] and board["name"]  # noqa: B018  (shape check)
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a leaderboard written by adder search") from None
    return board


def candidates(folder: Path, board: dict[str, Any], top: int):
    """Per cell, ``top`` race candidates: first the leaderboard's answer (after a race, the
    race's winner, which need not be the search's best), then the search's best of the rest
    by its objective."""
    from search.racing import Candidate
    from search.results import load_trials

    obj = board.get("objective", {"metric": "val_loss", "mode": "min"})
    records = [r for r in load_trials(folder) if r.verify_of is None and r.metrics.get("params")]
    out = {}
    for cell in board["cells"]:
        answer = board["cells"][cell].get("trial_id")
        ranked = sorted(
            (r for r in records if r.cell == cell),
            key=lambda r: (r.trial_id != answer, r.rank_key(obj["metric"], obj["mode"])),
        )
        out[cell] = [
            Candidate(r.trial_id, r.config, rank) for rank, r in enumerate(ranked[:top], start=1)
        ]
    return out


def run(
    folder: Path,
    seeds: int,
    digits: list[int],
    n: int,
    opts: Options,
    *,
    top: int = 1,
    threshold: float = SOLVED,
) -> dict[str, Any]:
    """Retrain the ``top`` best settings of each cell with ``seeds`` fresh seeds each."""
    folder = folder.resolve()
    board = load_board(folder)
    from search.tracking import resolve_mode

    mode = resolve_mode(opts.wandb)
    connect(opts.address)  # first: importing Ray (load_trials does) fixes its auth mode
    picked = candidates(folder, board, top)
    from search import experiment
    from search.racing import AFTER_SEED_BASE
    from search.schedulers import SnapshotOnEnd
    from search.searcher import Races, VerifySearch
    from search.space import Verify

    obj = board.get("objective", {"metric": "val_loss", "mode": "min"})
    spec = Verify(top=top, seeds=seeds, digits=tuple(digits), n=n, threshold=threshold)
    races = Races(spec, digits, obj["metric"], obj["mode"], seed_base=AFTER_SEED_BASE)
    searcher = VerifySearch(races, picked)
    per_trial, max_concurrent = trial_resources(opts)
    shutil.rmtree(folder / VERIFY_EXPERIMENT, ignore_errors=True)  # always from scratch
    runs = sum(len(c) for c in picked.values()) * seeds
    print(
        f"adder verify: {runs} runs ({len(picked)} cells x top {top} x {seeds} seeds), "
        f"{max_concurrent} at a time",
        file=sys.stderr,
    )
    experiment.build(
        folder,
        VERIFY_EXPERIMENT,
        searcher=searcher,
        scheduler=SnapshotOnEnd(),
        per_trial=per_trial,
        max_concurrent=max_concurrent,
        max_failures=opts.max_failures,
        wandb=(mode, opts.wandb_project, f"{board['name']}-verify"),
        total=runs,
    ).fit()
    out = summarize(board, races, spec, digits)
    (folder / VERIFY_JSON).write_text(json.dumps(out, indent=2) + "\n")
    (folder / VERIFY_MD).write_text(markdown(out))
    print(markdown(out))
    return out


def summarize(board, races, spec, digits: list[int]) -> dict[str, Any]:
    """Per cell: every candidate's figures, and the one the race's rule picks."""
    from search.racing import summary

    out: dict[str, Any] = {
        "name": board["name"],
        "seeds": spec.seeds,
        "n": spec.n,
        "digits": digits,
        "threshold": spec.threshold,
        "cells": {},
    }
    for cell, race in races.races.items():
        winner = race.winner()
        if winner is None:
            continue
        out["cells"][cell] = {
            **summary(winner, digits, spec.threshold),
            "verified": winner.passed(),
            "candidates": [summary(c, digits, spec.threshold) for c in race.candidates],
        }
    return out


def findings(out: dict[str, Any]) -> list[str]:
    """What a user must see: a search best that fresh seeds reproduce worse than a runner-up,
    and settings that not every fresh seed reproduces."""
    lines = []
    for cell, c in out["cells"].items():
        if c["rank"] != 1:
            lines.append(
                f"{cell}: the search's best is not the most reproducible setting; its "
                f"#{c['rank']} (trial {c['trial_id']}) does better over fresh seeds"
            )
        for d, s in c["digits"].items():
            if s["n"] and s["solved"] < s["n"]:
                lines.append(
                    f"{cell}: only {s['solved']}/{s['n']} fresh seeds reach exact-match >= "
                    f"{out['threshold']} on {d}-digit sums (min {s['min']:.3f})"
                )
    return lines


def markdown(out: dict[str, Any]) -> str:
    many = any(len(c["candidates"]) > 1 for c in out["cells"].values())
    what = "Each cell's best settings (by search rank)" if many else "Each cell's best setting"
    lines = [
        f"# Verify: {out['name']}",
        "",
        f"{what} retrained from scratch with {out['seeds']} fresh seeds, each scored on "
        f"{out['n']} fresh held-out sums per length."
        + (
            " The chosen setting per cell (**bold**) is the one the race's rule ranks first: "
            "every seed passing, then the objective's mean over seeds."
            if many
            else ""
        ),
        "",
        "| cell | rank | trial | digits | mean exact-match | min exact-match | seeds solved |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell, c in out["cells"].items():
        for cand in c["candidates"]:
            chosen = cand["trial_id"] == c["trial_id"]
            rank = f"**{cand['rank']}**" if chosen and many else str(cand["rank"])
            for d, s in cand["digits"].items():
                if s["n"]:
                    lines.append(
                        f"| {cell} | {rank} | {cand['trial_id']} | {d} | {s['mean']:.4f} | "
                        f"{s['min']:.4f} | {s['solved']}/{s['n']} |"
                    )
    found = findings(out)
    lines += ["", "**Findings:**" if found else "Every seed solved every length."]
    lines += [f"- {f}" for f in found]
    return "\n".join(lines) + "\n"
