"""What the search optimizes and how it ends: the objective's ranking, the verification stage
through --resume, the time budget, a target, and warm starts. Real Ray, Optuna and W&B
(offline or off), real `adder` processes, 127.0.0.1 only."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from tune_state import saved_ends, saved_progress

from adder.config import TrainConfig
from adder.models import train_flops
from search.metrics import UNSOLVED, cost_to_solve, rank_key

ROOT = Path(__file__).resolve().parent.parent

# One cell, a task small models solve in a few hundred steps, two candidates on two seeds. A
# seed passes at 0.9 (the mechanics are under test here, not how well these tiny runs add).
SOLVABLE = """
name: {name}
cells: [lstm]
trials: {trials}
budget: {{max_steps: 400, eval_every: 25, grace_steps: 400, reduction_factor: 2{extra}}}
fixed: {{train_digits: 3, test_digits: 3, eval_size: 200, layers: 1, batch_size: 64,
        solve_patience: 2}}
params:
  hidden: {{int: [24, 40]}}
  lr: {{float: [0.01, 0.03], log: true}}
verify: {{top: 2, seeds: 2, digits: [3, 5], n: 100, threshold: 0.9}}
"""


def space(tmp_path: Path, name: str = "race", trials: int = 3, extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SOLVABLE.format(name=name, trials=trials, extra=extra))
    return path


def adder(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(folder: Path) -> list[dict]:
    with open(folder / "trials.csv") as f:
        return list(csv.DictReader(f))


# -- the objective ----------------------------------------------------------------------------


def solved(cfg: TrainConfig, step: int) -> dict:
    """A report of a run of ``cfg`` solved at ``step``, with its GFLOP as adder.train counts."""
    per_step = train_flops(cfg.model_config(), cfg.train_digits + 1) * cfg.batch_size / 1e9
    return {"solved_gflop": step * per_step, "val_loss": 0.01, "params": 1}


def ranked(*results: dict) -> list[int]:
    order = sorted(range(len(results)), key=lambda i: rank_key("cost_to_solve", "min", results[i]))
    return order


def test_the_objective_ranks_a_fast_solver_above_a_slow_one():
    cfg = TrainConfig(hidden=32)
    fast, slow = solved(cfg, 300), solved(cfg, 900)
    fast["cost_to_solve"], slow["cost_to_solve"] = cost_to_solve(fast), cost_to_solve(slow)
    assert ranked(slow, fast) == [1, 0]  # today's bug: the slow one ends with the lower loss
    slow["val_loss"] = 1e-5
    slow["cost_to_solve"] = cost_to_solve(slow)
    assert ranked(slow, fast) == [1, 0]


def test_the_objective_ranks_a_narrow_solver_above_a_wide_one_at_equal_samples():
    narrow, wide = TrainConfig(hidden=16), TrainConfig(hidden=128, layers=3)
    a, b = solved(narrow, 500), solved(wide, 500)  # same step, same batch: same samples
    for r in (a, b):
        r["cost_to_solve"] = cost_to_solve(r)
    assert ranked(b, a) == [1, 0] and a["cost_to_solve"] < b["cost_to_solve"] / 10


def test_unsolved_runs_rank_after_every_solved_one_closest_first():
    expensive = {"solved_gflop": 1e5, "val_loss": 0.5}
    close, far = {"val_loss": 0.001}, {"val_loss": 0.9}
    diverged = {"val_loss": float("nan")}
    results = [far, diverged, close, expensive]
    for r in results:
        r["cost_to_solve"] = cost_to_solve(r)
    assert ranked(*results) == [3, 2, 0, 1]
    assert close["cost_to_solve"] == pytest.approx(UNSOLVED + 0.001)


# -- the search's verification, its budgets, its warm start ------------------------------------


def kill_when(path: Path, tmp_path: Path, marker: str, saved: bool = False) -> str:
    """Start ``adder search path``, SIGKILL its whole process group once its log shows
    ``marker`` (and, with ``saved``, once Tune's saved state, what --resume reads, holds the end
    of every search trial the log says ended); return the log."""
    log_path = tmp_path / f"{path.stem}.first.err"
    log = open(log_path, "w")  # noqa: SIM115  (outlives the kill below)
    driver = subprocess.Popen(
        [sys.executable, "-m", "search.cli", "search", str(path), "--results", str(tmp_path),
         "--wandb", "disabled"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    experiment = tmp_path / path.stem / "tune"
    while time.monotonic() < deadline and driver.poll() is None:
        log_text = log_path.read_text()
        ended = set(re.findall(r"^\[\d+/\d+\] \S+ (\S+) ended", log_text, re.M))
        if marker in log_text and (not saved or ended <= saved_ends(experiment)):
            break
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGSTOP)  # frozen, so that it is checked mid-search, then killed
    assert driver.poll() is None, f"the search ended before {marker!r} could be cut"
    assert not (tmp_path / path.stem / "leaderboard.json").exists()
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    log.close()
    return log_path.read_text()


def test_resume_after_a_kill_during_verification_finishes_the_race(tmp_path):
    path = space(tmp_path, trials=3)
    kill_when(path, tmp_path, "[verify 1]")
    folder = tmp_path / "race"
    assert not (folder / "leaderboard.json").exists()

    p = adder("search", path, "--results", tmp_path, "--wandb", "disabled", "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    board = json.loads((folder / "leaderboard.json").read_text())
    best = board["cells"]["lstm"]
    assert board["partial"] is False and best["verify"]["trial_id"] == best["trial_id"]
    assert len(best["verify"]["seeds"]) == 2 and best["verify"]["seeds"] == [10_000, 10_001]
    assert set(best) >= {"verified", "verify", "candidates", "search_rank", "cost_to_solve"}
    verify_rows = [r for r in rows(folder) if r["stage"] == "verify"]
    runs = [(r["verify_of"], r["config/seed"]) for r in verify_rows]
    assert len(runs) == len(set(runs)), "a verification run was run twice"
    assert len(runs) == sum(len(c["seeds"]) for c in best["candidates"])
    assert all(r["status"] in ("completed", "stopped") for r in verify_rows)


def test_time_budget_stops_a_real_search_and_writes_a_partial_leaderboard(tmp_path):
    path = space(tmp_path, name="timed", trials=40)
    p = adder("search", path, "--results", tmp_path, "--wandb", "disabled", "--time-budget", "12")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "time budget of 12 s spent" in p.stderr
    folder = tmp_path / "timed"
    board = json.loads((folder / "leaderboard.json").read_text())
    assert board["partial"] is True and "Partial" in (folder / "leaderboard.md").read_text()
    trials = rows(folder)
    search_rows = [r for r in trials if r["stage"] == "search"]
    assert 1 <= len(search_rows) < 40, "the budget did not stop the search"
    assert all(r["status"] != "running" for r in trials)  # running ones ended, not abandoned


def test_resume_with_its_time_budget_spent_starts_nothing_and_ends(tmp_path):
    # A search with no budget, killed after 2 trials ended, resumed with --time-budget 1: the
    # time it spent counts (none is left), so no trial starts; the running ones end; the
    # leaderboard is partial; the progress count goes on from where it was.
    path = space(tmp_path, name="spent", trials=40)
    first = kill_when(path, tmp_path, "[2/40]", saved=True)  # else resume ends them again
    ended = len(re.findall(r"^\[\d+/40\]", first, re.M))
    saved = saved_progress(tmp_path / "spent" / "tune")["ended"]  # 2, bar a kill mid-snapshot
    assert saved >= 1
    p = adder("search", path, "--results", tmp_path, "--wandb", "disabled", "--resume",
              "--time-budget", "1", timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "time budget of 1 s spent" in p.stderr
    board = json.loads((tmp_path / "spent" / "leaderboard.json").read_text())
    assert board["partial"] is True
    search_rows = [r for r in rows(tmp_path / "spent") if r["stage"] == "search"]
    assert len(search_rows) <= ended + 3, "trials started after the budget was spent"
    counts = [int(n) for n in re.findall(r"^\[(\d+)/40\]", p.stderr, re.M)]
    assert counts and min(counts) > saved, f"the progress count restarted: {counts}"


def test_warm_start_adds_the_old_trials_to_the_new_study(tmp_path):
    first = space(tmp_path, name="first", trials=3)
    p = adder("search", first, "--results", tmp_path, "--wandb", "disabled", "--no-verify")
    assert p.returncode == 0, p.stderr[-3000:]
    second = space(tmp_path, name="second", trials=2)
    p = adder(
        "search", second, "--results", tmp_path, "--wandb", "disabled", "--no-verify",
        "--warm-start", tmp_path / "first",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    old = optuna.load_study(
        study_name="first-lstm", storage=f"sqlite:///{tmp_path}/first/optuna.db"
    )
    new = optuna.load_study(
        study_name="second-lstm", storage=f"sqlite:///{tmp_path}/second/optuna.db"
    )
    warm = [t for t in new.trials if "warm_start" in t.user_attrs]
    assert [(t.params, t.value) for t in warm] == [(t.params, t.value) for t in old.trials]
    assert len(new.trials) == 3 + 2 and len(rows(tmp_path / "second")) == 2  # 2 trained


def test_a_target_stops_the_cell_once_a_verified_candidate_reaches_it(tmp_path):
    # Every trial that solves within 100 GFLOP is verified at once; once one is, the study
    # stops: of 12 trials, fewer run.
    path = space(tmp_path, name="target", trials=12, extra=", target: 100")
    p = adder("search", path, "--results", tmp_path, "--wandb", "disabled")
    assert p.returncode == 0, p.stderr[-3000:]
    board = json.loads((tmp_path / "target" / "leaderboard.json").read_text())
    best = board["cells"]["lstm"]
    assert best["verified"] and best["verify"]["mean_gflop_to_solve"] <= 100
    assert board["trials"]["total"] < 12 and board["partial"] is False
