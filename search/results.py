"""What a search found: trial records, the per-cell leaderboard, and the files that hold them.

Trial records come from the results folder alone (Tune's experiment state), so they can be read
from a finished search, an interrupted one, and one copied off a cluster. The leaderboard of a
finished search also holds its verification (the races of search.racing), which only the search
itself knows in full: ``leaderboard.json`` is where ``adder report`` reads it back.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adder.config import CELLS, TrainConfig
from search.layout import EXPERIMENT, LEADERBOARD_JSON, LEADERBOARD_MD, OPTUNA_DB, TRIALS_CSV
from search.metrics import KEPT, UNSOLVED, rank_key
from search.racing import Race, summary


@dataclass
class TrialRecord:
    trial_id: str
    cell: str
    config: dict[str, Any]
    status: str  # completed | stopped | diverged | errored | running
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    path: str = ""
    verify_of: str | None = None  # a verification run: the search trial whose setting it is
    end: float | None = None  # the time of its last result (seconds since the epoch)

    def rank_key(self, metric: str, mode: str) -> tuple:
        return rank_key(metric, mode, self.metrics)


def classify(tune_status: str, config: dict[str, Any], last: dict[str, Any] | None) -> str:
    if tune_status == "ERROR":
        return "errored"
    if not last:
        return "running" if tune_status in ("RUNNING", "PENDING", "PAUSED") else "errored"
    if last.get("status") == "diverged":
        return "diverged"
    if tune_status != "TERMINATED":
        return "running"
    finished = last.get("step", 0) >= config.get("steps", 0)
    solved = config.get("stop_when_solved") and last.get("solved_step") is not None
    return "completed" if finished or solved else "stopped"


def load_trials(folder: Path, experiment: str = EXPERIMENT) -> list[TrialRecord]:
    """Every trial of the search in ``folder`` (``<results>/<name>``), from Tune's saved state:
    its search trials and its verification runs (``verify_of`` set)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str((folder / experiment).resolve()))  # pyarrow: absolute
    records = []
    for t in analysis.trials:
        last = t.last_result or {}
        cfg = {k: v for k, v in t.config.items() if k in TrainConfig.__dataclass_fields__}
        records.append(
            TrialRecord(
                trial_id=t.trial_id,
                cell=cfg.get("cell", "?"),
                config=cfg,
                status=classify(t.status, cfg, last),
                steps=int(last.get("step", 0)),
                metrics={k: last.get(k) for k in (*KEPT, "status")},
                seconds=float(last.get("time_total_s", 0.0)),
                path=t.storage.trial_fs_path if t.storage else "",
                verify_of=t.config.get("verify_of"),
                end=last.get("timestamp"),
            )
        )
    return sorted(records, key=lambda r: (r.cell, r.trial_id))


def _row(r: TrialRecord) -> dict[str, Any]:
    return {
        "trial_id": r.trial_id,
        "config": r.config,
        **{k: _json_num(r.metrics.get(k)) for k in KEPT},
        "steps": r.steps,
        "status": r.status,
    }


def leaderboard(
    name: str,
    cells: list[str],
    records: list[TrialRecord],
    metric: str,
    mode: str,
    races: dict[str, Race] | None = None,
    verify: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The answer per cell: the winner of its race where it was verified (``verified`` says
    whether every fresh seed passed at every length), else its best search trial by the
    objective. ``verify`` holds the race's settings: seeds, digits, n, threshold."""
    search = [r for r in records if r.verify_of is None]
    board: dict[str, Any] = {
        "name": name,
        "objective": {"metric": metric, "mode": mode},
        "cells": {},
    }
    for cell in cells:
        ranked = sorted(
            (r for r in search if r.cell == cell and r.metrics.get("params")),
            key=lambda r: r.rank_key(metric, mode),
        )
        race = (races or {}).get(cell)
        winner = race.winner() if race else None
        if winner is not None:
            best = next(r for r in ranked if r.trial_id == winner.trial_id)
            digits, threshold = verify["digits"], verify["threshold"]
            board["cells"][cell] = {
                **_row(best),
                "search_rank": winner.rank,
                "verified": len(winner.runs) >= race.seeds and winner.passed(),
                "verify": summary(winner, digits, threshold),
                "candidates": [summary(c, digits, threshold) for c in race.candidates],
            }
        elif ranked:
            board["cells"][cell] = {**_row(ranked[0]), "search_rank": 1, "verified": False}
    if verify is not None:
        board["verify"] = verify
    counts = {"total": len(search)}
    for s in ("completed", "stopped", "diverged", "errored", "running"):
        counts[s] = sum(r.status == s for r in search)
    board["trials"] = counts
    board["compute"] = {cell: compute(records, cell) for cell in cells}
    board["verify_wall_s"] = verify_wall(records)
    return board


def verify_wall(records: list[TrialRecord]) -> float | None:
    """Wall seconds from the first verification run's start to the last trial's end: the
    verification stage (other cells' searches may still run in it: one experiment holds all)."""
    runs = [r for r in records if r.verify_of is not None and r.end is not None]
    ends = [r.end for r in records if r.end is not None]
    if not runs:
        return None
    return round(max(ends) - min(r.end - r.seconds for r in runs), 1)


def compute(records: list[TrialRecord], cell: str) -> dict[str, Any]:
    """What one cell's trials cost: the search's and the verification's apart."""
    out = {}
    for stage, mine in (
        ("search", [r for r in records if r.cell == cell and r.verify_of is None]),
        ("verify", [r for r in records if r.cell == cell and r.verify_of is not None]),
    ):
        out[stage] = {
            "trials": len(mine),
            "training_steps": sum(r.steps for r in mine),
            "gflop": round(sum(r.metrics.get("gflop") or 0.0 for r in mine), 3),
            "trial_seconds": round(sum(r.seconds for r in mine), 1),
        }
    return out


def _json_num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


COLUMNS = (
    "cell",
    "verified",
    "search rank",
    "cost_to_solve (GFLOP)",
    "exact_match",
    "solved_step",
    "params",
    "layers",
    "hidden",
    "lr",
    "batch_size",
    "other settings",
    "trial_id",
)
# The settings of a model and its training besides the table's own columns: the leaderboard
# names those that differ from the cell's defaults (the transformer's heads, nines, ema...).
# The budget, the criterion and the data's lengths are the space's, the same for every trial.
OTHER_SETTINGS = ("nonlinearity", "embed", "dropout", "heads", "ff_mult", "pos", "sink",
                  "optimizer", "weight_decay", "schedule", "lr_min_ratio", "grad_clip", "ema",
                  "nines")  # fmt: skip


def other_settings(cfg: dict[str, Any]) -> str:
    """``key value`` for each of OTHER_SETTINGS where ``cfg`` differs from its cell's default."""
    if cfg.get("cell") not in CELLS:
        return "-"
    default = TrainConfig(cell=cfg["cell"]).to_dict()
    own = [k for k in OTHER_SETTINGS if k in cfg and cfg[k] != default[k]]
    return ", ".join(f"{k} {_fmt(cfg[k])}" for k in own) or "-"


def table_rows(board: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for cell, b in board["cells"].items():
        cfg = b["config"]
        verified = b.get("verified")
        rows.append(
            [
                cell,
                "yes" if verified else ("no" if "verify" in b else "-"),
                b.get("search_rank", 1),
                _cost(b.get("cost_to_solve")),
                b.get("exact_match"),
                b.get("solved_step"),
                b.get("params"),
                cfg.get("layers"),
                cfg.get("hidden"),
                cfg.get("lr"),
                cfg.get("batch_size"),
                other_settings(cfg),
                b["trial_id"],
            ]
        )
    return rows


def _cost(v: Any) -> Any:
    """A cost to solve as the tables show it: none for an unsolved run (UNSOLVED + its loss)."""
    return None if isinstance(v, (int, float)) and v >= UNSOLVED else v


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _seed_cost(run: dict[str, Any]) -> str:
    """A race run's cost: GFLOP to its solve; * when it passed on fresh sums without meeting the
    criterion (its cost is then every step it ran); - when it failed."""
    g = run["gflop_to_solve"]
    return "-" if g is None else _fmt(g) + ("*" if run.get("solved_step") is None else "")


def verify_lines(board: dict[str, Any]) -> list[str]:
    """The verification in markdown: per cell and length the spread over fresh seeds, the cost
    to solve per seed, what racing dropped, and where it reordered the search's ranking."""
    v = board.get("verify")
    if not v:
        return []
    lines = [
        f"Verified: each cell's {v['top']} best settings retrained with up to {v['seeds']} fresh "
        f"seeds (racing drops those that cannot win), each scored on {v['n']} fresh sums of "
        f"{', '.join(map(str, v['digits']))} digits; a seed passes at exact-match >= "
        f"{v['threshold']} on every length."
        + (
            f" When every racer has failed a seed, the next-ranked enters (up to {v['reserve']});"
            " once all have failed one, the race ends there, unverified."
            if v.get("reserve")
            else ""
        ),
        "",
        "| cell | candidate (search rank) | seeds | digits | mean exact-match | min | seeds "
        "passed | GFLOP to solve per seed (* passed unsolved: all its steps) | dropped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell, b in board["cells"].items():
        for c in b.get("candidates", []):
            chosen = c["trial_id"] == b["trial_id"]
            who = f"{'**' if chosen else ''}{c['trial_id']} (#{c['rank']}){'**' if chosen else ''}"
            runs = c.get("runs") or [{"gflop_to_solve": g, "solved_step": 0} for g in
                                     c["gflop_to_solve"]]  # fmt: skip
            costs = ", ".join(map(_seed_cost, runs)) or "-"
            dropped = c["dropped"] or "-"
            for d, s in c["digits"].items():
                lines.append(
                    f"| {cell} | {who} | {len(c['seeds'])} | {d} | {_fmt(s['mean'])} | "
                    f"{_fmt(s['min'])} | {s['solved']}/{s['n']} | {costs} | {dropped} |"
                )
    notes = [
        f"- {cell}: verification chose the search's #{b['search_rank']} "
        f"({b['trial_id']}) over its #1"
        for cell, b in board["cells"].items()
        if b.get("search_rank", 1) != 1
    ]
    notes += [
        f"- {cell}: not verified: not every fresh seed passed at every length"
        for cell, b in board["cells"].items()
        if "verify" in b and not b.get("verified")
    ]
    return [*lines, "", *notes] if notes else lines


def markdown(board: dict[str, Any], wall_s: float | None = None) -> str:
    obj = board.get("objective", {})
    lines = [f"# Leaderboard: {board['name']}", ""]
    if board.get("partial"):
        lines += ["**Partial**: the time budget ended the search before its plan.", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in table_rows(board):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    t = board["trials"]
    lines += ["", "Search trials: " + ", ".join(f"{k} {v}" for k, v in t.items())]
    for cell, c in board.get("compute", {}).items():
        s, v = c["search"], c["verify"]
        lines.append(
            f"- {cell}: search {s['trials']} trials, {s['gflop']:.4g} GFLOP, "
            f"{s['trial_seconds']} trial-seconds; verification {v['trials']} runs, "
            f"{v['gflop']:.4g} GFLOP, {v['trial_seconds']} trial-seconds"
        )
    if wall_s is not None:
        lines.append(f"\nWall time: {wall_s:.0f} s")
    if board.get("verify_wall_s") is not None:
        lines.append(
            f"Verification stage: {board['verify_wall_s']:.0f} s of it, from the first "
            "verification run's start to the end (other cells may still be searching then)"
        )
    lines.append(
        f"\nSearch rank = by the objective, {obj.get('metric')} ({obj.get('mode')}), then fewer "
        "parameters. The answer per cell is the winner of its verification where there is one."
    )
    more = verify_lines(board)
    return "\n".join(lines + ([""] + more if more else [])) + "\n"


def write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    config_keys = sorted({k for r in records for k in r.config})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "trial_id",
                "cell",
                "stage",
                "status",
                "steps",
                "seconds",
                "verify_of",
                *KEPT,
                *(f"config/{k}" for k in config_keys),
            ]
        )
        for r in records:
            w.writerow(
                [
                    r.trial_id,
                    r.cell,
                    "search" if r.verify_of is None else "verify",
                    r.status,
                    r.steps,
                    round(r.seconds, 2),
                    r.verify_of or "",
                    *[_fmt_csv(r.metrics.get(k)) for k in KEPT],
                    *[r.config.get(k) for k in config_keys],
                ]
            )


def _fmt_csv(v: Any) -> Any:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def write_results(
    folder: Path,
    space,
    *,
    searcher=None,
    wall_s=None,
    partial=False,
    mode="disabled",
    project="adder-search",
) -> dict:
    """leaderboard.json/.md, trials.csv, optuna.db, the W&B leaderboard run; prints the table."""
    records = load_trials(folder)
    races = searcher.races.races if searcher is not None and searcher.races else None
    verify = None
    if space.verify is not None:
        v = space.verify
        verify = {"top": v.top, "reserve": v.reserve, "seeds": v.seeds,
                  "digits": space.verify_digits(), "n": v.n, "threshold": v.threshold}  # fmt: skip
    board = leaderboard(
        space.name, list(space.cells), records, space.metric, space.mode, races, verify
    )
    board["partial"] = partial
    if wall_s is not None:
        board["wall_s"] = round(wall_s, 1)
    (folder / LEADERBOARD_JSON).write_text(json.dumps(board, indent=2) + "\n")
    (folder / LEADERBOARD_MD).write_text(markdown(board, wall_s))
    write_trials_csv(folder / TRIALS_CSV, records)
    if searcher is not None:
        from search.studies import export_studies

        export_studies(searcher.optuna_studies(), folder / OPTUNA_DB, space.name, space.metric)
    _log_leaderboard(folder, board, mode, project)
    print(markdown(board, wall_s), file=sys.stdout)
    return board


def _log_leaderboard(folder: Path, board: dict[str, Any], mode: str, project: str) -> None:
    from search.tracking import Run

    run = Run(
        mode,
        folder,
        project=project,
        group=board["name"],
        name=f"{board['name']}-leaderboard",
        job_type="leaderboard",
        config={"search": board["name"], "objective": board.get("objective")},
    )
    run.log_table("leaderboard", list(COLUMNS), table_rows(board))
    run.summarize(
        {
            **{f"{cell}/exact_match": b["exact_match"] for cell, b in board["cells"].items()},
            **{f"{cell}/verified": b.get("verified") for cell, b in board["cells"].items()},
        }
    )
    run.finish()
