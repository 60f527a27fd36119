"""What the search optimizes and how it ends: the objective's ranking, the verification stage
through --resume, the time budget, a target, and warm starts. Real Ray, Optuna and W&B
(offline or off), real `adder` processes, 127.0.0.1 only."""

from __future__ import annotations

import csv
import json
import os
import pickle
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


def kill_when(
    path: Path, tmp_path: Path, marker: str, saved: bool = False, until=lambda: True
) -> str:
    """Start ``adder search path``, SIGKILL its whole process group once its log shows
    ``marker`` (and, with ``saved``, once Tune's saved state, what --resume reads, holds the end
    of every search trial the log says ended; and once ``until()`` holds); return the log."""
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
        if marker in log_text and (not saved or ended <= saved_ends(experiment)) and until():
            break
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGSTOP)  # frozen, so that it is checked mid-search, then killed
    assert driver.poll() is None, f"the search ended before {marker!r} could be cut"
    assert not (tmp_path / path.stem / "leaderboard.json").exists()
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    log.close()
    return log_path.read_text()


# -- --resume from a searcher state and a Tune state of different moments ----------------------
# Tune copies its experiment state and the searcher's to the results folder one file after the
# other, in the background: a driver killed in between leaves them from different moments. The
# searcher reconciles on restore (PerCellSearch.reconcile); these drive it without Ray running.


def _search(tmp_path: Path):
    from search.searcher import PerCellSearch
    from search.space import load_space

    s = PerCellSearch(load_space(space(tmp_path, trials=3)))
    s.set_max_concurrency(2)
    return s


def _verified(seed: int) -> dict:
    return {"exact_match_3": 1.0, "exact_match_5": 1.0, "solved_gflop": 5.0, "gflop": 6.0,
            "step": 300, "seed": seed}  # fmt: skip


def _searched_and_racing(tmp_path: Path):
    """A searcher whose 3 search trials ended and whose race handed out seed 0 to both
    candidates: (searcher, the two verification runs' ids)."""
    s = _search(tmp_path)
    assert s.suggest("s1") and s.suggest("s2") and s.suggest("s3") is None  # 2 at a time
    s.on_trial_complete("s1", {"cost_to_solve": 5.0, "params": 1})
    assert s.suggest("s3")
    for t, cost in (("s2", 7.0), ("s3", 9.0)):
        s.on_trial_complete(t, {"cost_to_solve": cost, "params": 1})
    v1, v2 = s.suggest("v1"), s.suggest("v2")
    assert [(v["verify_of"], v["seed"]) for v in (v1, v2)] == [("s1", 10_000), ("s2", 10_000)]
    return s, v1, v2


def _resumed(tmp_path: Path, state: Path, saved: dict):
    s = _search(tmp_path)
    s.saved = saved
    s.restore(str(state))
    return s


def _runs(s, candidate: str) -> list[int]:
    (c,) = [c for c in s.races.races["lstm"].candidates if c.trial_id == candidate]
    return sorted(c.runs)


def test_resume_takes_a_run_that_tune_saved_as_ended_and_the_searcher_did_not(tmp_path):
    from search.experiment import Saved

    s, v1, v2 = _searched_and_racing(tmp_path)
    s.save(str(tmp_path / "older.pkl"))  # the searcher's state before v1 ended
    searched = {t: Saved(True, dict(s.ended[t]), s.given[t]) for t in ("s1", "s2", "s3")}
    tune = {**searched, "v1": Saved(True, _verified(10_000), v1), "v2": Saved(False, {}, v2)}
    r = _resumed(tmp_path, tmp_path / "older.pkl", tune)
    assert _runs(r, "s1") == [0] and r.open == {"v2"}  # red without reconcile: v1 never ends
    nxt = r.suggest("v3")
    assert (nxt["verify_of"], nxt["seed"]) == ("s1", 10_001)  # the race goes on from there


def test_resume_offers_again_a_seed_handed_out_after_tunes_saved_state(tmp_path):
    from search.experiment import Saved

    s, v1, v2 = _searched_and_racing(tmp_path)
    s.on_trial_complete("v1", _verified(10_000))
    v3 = s.suggest("v3")  # s1's seed 1, handed out after Tune's state below was saved
    s.save(str(tmp_path / "newer.pkl"))
    searched = {t: Saved(True, dict(s.ended[t]), s.given[t]) for t in ("s1", "s2", "s3")}
    tune = {**searched, "v1": Saved(True, _verified(10_000), v1), "v2": Saved(False, {}, v2)}
    r = _resumed(tmp_path, tmp_path / "newer.pkl", tune)
    assert r.open == {"v2"} and "v3" not in r.given  # red without reconcile: v3 never ends
    again = r.suggest("v4")
    assert (again["verify_of"], again["seed"]) == (v3["verify_of"], v3["seed"])


def test_resume_takes_tunes_run_the_searcher_never_handed_out_as_that_seeds_run(tmp_path):
    from search.experiment import Saved

    s, v1, v2 = _searched_and_racing(tmp_path)
    s.save(str(tmp_path / "older.pkl"))
    s.on_trial_complete("v1", _verified(10_000))
    v3 = s.suggest("v3")  # handed out after the searcher's state was saved, not after Tune's
    searched = {t: Saved(True, dict(s.ended[t]), s.given[t]) for t in ("s1", "s2", "s3")}
    tune = {**searched, "v1": Saved(True, _verified(10_000), v1), "v2": Saved(False, {}, v2),
            "v3": Saved(True, _verified(10_001), v3)}  # fmt: skip
    r = _resumed(tmp_path, tmp_path / "older.pkl", tune)
    assert _runs(r, "s1") == [0, 1] and r.open == {"v2"}  # not run a second time
    assert r.suggest("v4") is None  # s1 is a round ahead: the race waits for v2


def test_resume_takes_tunes_runs_for_a_race_the_searcher_had_not_started(tmp_path):
    from search.experiment import Saved

    s = _search(tmp_path)
    s.set_max_concurrency(3)  # all three search trials at once, then the race
    for t in ("s1", "s2", "s3"):
        assert s.suggest(t)
    for t, cost in (("s1", 5.0), ("s2", 7.0), ("s3", 9.0)):
        s.on_trial_complete(t, {"cost_to_solve": cost, "params": 1})
    s.save(str(tmp_path / "older.pkl"))  # every search trial ended, the race not started
    v1, v2 = s.suggest("v1"), s.suggest("v2")
    searched = {t: Saved(True, dict(s.ended[t]), s.given[t]) for t in ("s1", "s2", "s3")}
    tune = {**searched, "v1": Saved(True, _verified(10_000), v1), "v2": Saved(False, {}, v2)}
    r = _resumed(tmp_path, tmp_path / "older.pkl", tune)
    r.set_max_concurrency(3)
    assert r.strays.keys() == {"v1", "v2"}
    r.on_trial_complete("v2", _verified(10_000))  # ends before the race starts here
    nxt = r.suggest("v3")  # the race starts, takes v1 and v2 as the seeds they ran
    assert (nxt["verify_of"], nxt["seed"]) == ("s1", 10_001) and not r.strays
    assert _runs(r, "s1") == [0] and _runs(r, "s2") == [0]


def test_resume_takes_tunes_search_trials_the_searcher_never_handed_out(tmp_path):
    from search.experiment import Saved

    s = _search(tmp_path)
    first, second = s.suggest("s1"), s.suggest("s2")
    s.save(str(tmp_path / "older.pkl"))
    s.on_trial_complete("s1", {"cost_to_solve": 5.0, "params": 1})
    third = s.suggest("s3")  # handed out after the searcher's state was saved
    s.on_trial_complete("s3", {"cost_to_solve": 3.0, "params": 1})
    fourth = {**third, "hidden": 30}  # as if Tune's state were newer by one more hand-out
    tune = {"s1": Saved(True, {"cost_to_solve": 5.0, "params": 1}, first),
            "s2": Saved(False, {}, second), "s3": Saved(True, {"cost_to_solve": 3.0}, third),
            "s4": Saved(False, {}, fourth)}  # fmt: skip
    r = _resumed(tmp_path, tmp_path / "older.pkl", tune)
    r.set_max_concurrency(3)
    assert r.open == {"s2", "s4"} and r.ended["s3"]["cost_to_solve"] == 3.0
    r.on_trial_result("s4", {"cost_to_solve": 9.0, "step": 25})  # no Optuna trial: ignored
    r.on_trial_complete("s4", {"cost_to_solve": 4.0, "params": 1})
    assert r.suggest("s5") is None  # no more search trials (a quota of 3), s2 still runs
    values = sorted(t.value for t in r.optuna_studies()["lstm"].get_trials() if t.value)
    assert values == [3.0, 4.0, 5.0]  # s3 and s4 in the study beside s1


def test_resume_fails_a_search_trial_tune_never_saved_and_hands_its_slot_out_again(tmp_path):
    from search.experiment import Saved

    s = _search(tmp_path)
    first, _ = s.suggest("s1"), s.suggest("s2")
    s.save(str(tmp_path / "newer.pkl"))
    tune = {"s1": Saved(False, {}, first)}  # s2 was handed out after Tune's state was saved
    r = _resumed(tmp_path, tmp_path / "newer.pkl", tune)
    assert r.open == {"s1"} and "s2" not in r.cell_of
    states = [t.state for t in r.optuna_studies()["lstm"].get_trials()]
    assert states.count(optuna.trial.TrialState.FAIL) == 1
    assert r.suggest("s3") and r.suggest("s4") is None  # s2's slot, then the limit of 2


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


def test_resume_from_a_searcher_state_older_than_tunes_finishes_the_race(tmp_path):
    # Killed once Tune's saved state holds a verification run's end; the searcher's saved state
    # is then put back to before that end (as a kill between the two files' copies leaves it):
    # the resume takes the run's end from Tune's state, and the race finishes, no run twice.
    path = space(tmp_path, trials=3)
    experiment = tmp_path / "race" / "tune"

    def verify_ended() -> set[str]:
        runs = {p.name.split("_v_")[1] for p in experiment.glob("lstm_v_*")}
        return runs & saved_ends(experiment)

    kill_when(path, tmp_path, "[verify 1]", until=lambda: bool(verify_ended()))
    (state_file,) = experiment.glob("searcher-state-*.pkl")
    state = pickle.loads(state_file.read_bytes())
    races, undone = state["races"], []
    for run in verify_ended():
        config = json.loads((next(experiment.glob(f"lstm_v_{run}")) / "params.json").read_text())
        j = config["seed"] - races.seed_base
        c = next(c for c in races.races["lstm"].candidates if c.trial_id == config["verify_of"])
        if c.runs.pop(j, None) is not None:  # recorded: as if the searcher's state were older
            races.run_of[run] = ("lstm", c.trial_id, j)
            undone.append(run)
    assert undone
    state_file.write_bytes(pickle.dumps(state))

    p = adder("search", path, "--results", tmp_path, "--wandb", "disabled", "--resume",
              timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    board = json.loads((tmp_path / "race" / "leaderboard.json").read_text())
    best = board["cells"]["lstm"]
    assert board["partial"] is False and best["verify"]["seeds"] == [10_000, 10_001]
    runs = [(r["verify_of"], r["config/seed"]) for r in rows(tmp_path / "race")
            if r["stage"] == "verify"]  # fmt: skip
    assert len(runs) == len(set(runs)), "a verification run was run twice"
    assert len(runs) == sum(len(c["seeds"]) for c in best["candidates"])


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
