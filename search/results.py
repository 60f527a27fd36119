"""What a search found: trial records, the per-cell leaderboard, and the files that hold them.

Everything here reads the results folder alone (Tune's experiment state), so it works on a
finished search, an interrupted one, and one copied off a cluster.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adder.config import TrainConfig

SUMMARY_KEYS = ("exact_match", "digit_acc", "val_loss", "iid_exact_match", "solved_step", "params")


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

    @property
    def samples_to_solve(self) -> float:
        s = self.metrics.get("solved_step")
        return math.inf if s is None else s * self.config["batch_size"]

    def rank_key(self) -> tuple:
        """Best first: highest exact-match, then fewest samples to solve, then fewest params."""
        em = self.metrics.get("exact_match")
        em = -1.0 if em is None or not math.isfinite(em) else em
        loss = self.metrics.get("val_loss")
        loss = math.inf if loss is None else loss
        return (-em, self.samples_to_solve, self.metrics.get("params", math.inf), loss)


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


def load_trials(folder: Path) -> list[TrialRecord]:
    """Every trial of the search in ``folder`` (``<results>/<name>``), from Tune's saved state."""
    from ray.tune import ExperimentAnalysis

    from search.tune import EXPERIMENT

    analysis = ExperimentAnalysis(str((folder / EXPERIMENT).resolve()))  # pyarrow: absolute
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
                metrics={k: last.get(k) for k in (*SUMMARY_KEYS, "status")},
                seconds=float(last.get("time_total_s", 0.0)),
                path=t.storage.trial_fs_path if t.storage else "",
            )
        )
    return sorted(records, key=lambda r: (r.cell, r.trial_id))


def leaderboard(name: str, cells: list[str], records: list[TrialRecord]) -> dict[str, Any]:
    board: dict[str, Any] = {"name": name, "cells": {}, "trials": {}}
    for cell in cells:
        ranked = sorted(
            (r for r in records if r.cell == cell and r.metrics.get("params")),
            key=TrialRecord.rank_key,
        )
        if ranked:
            best = ranked[0]
            board["cells"][cell] = {
                "trial_id": best.trial_id,
                "config": best.config,
                **{k: _json_num(best.metrics.get(k)) for k in SUMMARY_KEYS},
                "steps": best.steps,
                "samples_to_solve": _json_num(best.samples_to_solve),
                "status": best.status,
            }
    counts = {"total": len(records)}
    for s in ("completed", "stopped", "diverged", "errored", "running"):
        counts[s] = sum(r.status == s for r in records)
    board["trials"] = counts
    board["compute"] = {
        cell: {
            "trials": sum(r.cell == cell for r in records),
            "training_steps": sum(r.steps for r in records if r.cell == cell),
            "trial_seconds": round(sum(r.seconds for r in records if r.cell == cell), 1),
        }
        for cell in cells
    }
    return board


def _json_num(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


COLUMNS = (
    "cell",
    "exact_match",
    "digit_acc",
    "val_loss",
    "solved_step",
    "samples_to_solve",
    "params",
    "layers",
    "hidden",
    "lr",
    "batch_size",
    "trial_id",
)


def table_rows(board: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for cell, b in board["cells"].items():
        cfg = b["config"]
        rows.append(
            [
                cell,
                b["exact_match"],
                b["digit_acc"],
                b["val_loss"],
                b["solved_step"],
                b["samples_to_solve"],
                b["params"],
                cfg["layers"],
                cfg["hidden"],
                cfg["lr"],
                cfg["batch_size"],
                b["trial_id"],
            ]
        )
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(board: dict[str, Any], wall_s: float | None = None) -> str:
    lines = [f"# Leaderboard: {board['name']}", ""]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in table_rows(board):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    t = board["trials"]
    lines += ["", "Trials: " + ", ".join(f"{k} {v}" for k, v in t.items())]
    for cell, c in board.get("compute", {}).items():
        lines.append(
            f"- {cell}: {c['trials']} trials, {c['training_steps']} training steps, "
            f"{c['trial_seconds']} trial-seconds"
        )
    if wall_s is not None:
        lines.append(f"\nWall time: {wall_s:.0f} s")
    lines.append(
        "\nBest = highest test exact-match, then fewest samples to solve "
        "(solved_step x batch_size), then fewest parameters."
    )
    return "\n".join(lines) + "\n"


def write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    config_keys = sorted({k for r in records for k in r.config})
    metric_keys = [*SUMMARY_KEYS]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "trial_id",
                "cell",
                "status",
                "steps",
                "seconds",
                *metric_keys,
                *(f"config/{k}" for k in config_keys),
            ]
        )
        for r in records:
            w.writerow(
                [
                    r.trial_id,
                    r.cell,
                    r.status,
                    r.steps,
                    round(r.seconds, 2),
                    *[_fmt_csv(r.metrics.get(k)) for k in metric_keys],
                    *[r.config.get(k) for k in config_keys],
                ]
            )


def _fmt_csv(v: Any) -> Any:
    return "" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v


def write_results(
    folder: Path, space, *, searcher=None, wall_s=None, mode="disabled", project="adder-search"
) -> dict:
    """leaderboard.json/.md, trials.csv, optuna.db, the W&B leaderboard run; prints the table."""
    records = load_trials(folder)
    board = leaderboard(space.name, list(space.cells), records)
    if wall_s is not None:
        board["wall_s"] = round(wall_s, 1)
    (folder / "leaderboard.json").write_text(json.dumps(board, indent=2) + "\n")
    (folder / "leaderboard.md").write_text(markdown(board, wall_s))
    write_trials_csv(folder / "trials.csv", records)
    if searcher is not None:
        from search.percell import export_studies

        export_studies(searcher.optuna_studies(), folder / "optuna.db", space.name)
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
        config={"search": board["name"]},
    )
    run.log_table("leaderboard", list(COLUMNS), table_rows(board))
    run.summarize({f"{cell}/exact_match": b["exact_match"] for cell, b in board["cells"].items()})
    run.finish()
