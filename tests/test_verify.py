"""`adder verify` on a smoke search's results, and the grid sampler the seed study runs on."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def adder(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_verify_retrains_each_best_with_fresh_seeds(smoke_results, tmp_path):
    folder = tmp_path / "smoke"
    shutil.copytree(smoke_results[0], folder)
    # the answer a race picked need not be the search's best: make it each cell's last-ranked
    # search trial, so that verifying the search's best instead shows
    with open(folder / "trials.csv") as f:
        trials = list(csv.DictReader(f))

    def ranked(cell: str) -> list[dict]:
        def key(t: dict) -> tuple:
            return float(t["cost_to_solve"]), int(t["params"]), float(t["val_loss"])

        return sorted((t for t in trials if t["cell"] == cell and t["stage"] == "search"), key=key)

    board = json.loads((folder / "leaderboard.json").read_text())
    for cell, best in board["cells"].items():
        best["trial_id"] = ranked(cell)[-1]["trial_id"]
    (folder / "leaderboard.json").write_text(json.dumps(board))
    p = adder(
        "verify", folder, "--seeds", "2", "--top", "2", "--digits", "5,12", "--n", "100",
        "--wandb", "disabled",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((folder / "verify.json").read_text())
    assert set(summary["cells"]) == set(board["cells"])
    for cell, c in summary["cells"].items():
        cands = c["candidates"]
        # the leaderboard's answer (the race's winner, not always the search's best), then the
        # search's best of the rest, each retrained with the same fresh seeds: neither the
        # search's nor the race's
        assert [k["rank"] for k in cands] == [1, 2]
        assert (
            cands[0]["trial_id"]
            == board["cells"][cell]["trial_id"]
            == ranked(cell)[-1]["trial_id"]
        )
        assert cands[1]["trial_id"] == ranked(cell)[0]["trial_id"]
        for k in cands:
            assert k["seeds"] == [20_000, 20_001] and not k["dropped"]  # no racing here
            assert sorted(r["seed"] for r in k["runs"]) == [20_000, 20_001]
            for d in ("5", "12"):
                s = k["digits"][d]
                assert s["n"] == 2 and 0 <= s["min"] <= s["mean"] <= 1
                assert 0 <= s["solved"] <= 2

        # the chosen one: every seed passing first, then the lowest mean of the race's value
        # (GFLOP to solve where a seed passed; else 1e9 + how far its worst length fell short)
        for k in cands:
            for r in k["runs"]:
                short = 1 - min(r["exact_match"].values())
                assert r["passed"] or r["value"] == pytest.approx(1e9 + short)
        key = {k["trial_id"]: (not k["passed"], sum(r["value"] for r in k["runs"])) for k in cands}
        assert key[c["trial_id"]] == min(key.values())
    md = (folder / "verify.md").read_text()
    for c in summary["cells"].values():
        for k in c["candidates"]:
            assert f"| {k['trial_id']} | 12 |" in md
    assert "Verify: smoke" in p.stdout
    # the report picks it up
    r = adder("report", folder)
    assert r.returncode == 0, r.stderr[-2000:]
    text = (folder / "report.md").read_text()
    assert "no `adder verify` run yet" not in text.lower() and "seeds [20000, 20001]" in text


def test_verify_refuses_a_folder_without_a_leaderboard(tmp_path):
    p = adder("verify", tmp_path / "nothing-here")
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "leaderboard.json" in p.stderr
    assert "Traceback" not in p.stderr


def test_grid_sampler_runs_every_point_once(tmp_path):
    space = tmp_path / "grid.yaml"
    space.write_text("""
name: grid
cells: [gru]
sampler: grid
scheduler: fifo
budget: {max_steps: 40, eval_every: 20, grace_steps: 20, stop_when_solved: false}
fixed: {train_digits: 3, test_digits: 5, eval_size: 50}
params:
  hidden: {choice: [8, 12]}
  seed: {choice: [0, 1]}
""")
    p = adder("search", space, "--results", tmp_path, "--wandb", "disabled")
    assert p.returncode == 0, p.stderr[-3000:]
    with open(tmp_path / "grid" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    points = sorted((int(r["config/hidden"]), int(r["config/seed"])) for r in rows)
    assert points == [(8, 0), (8, 1), (12, 0), (12, 1)]
    assert all(r["status"] == "completed" and r["steps"] == "40" for r in rows)
    # the grid's end is quiet (Optuna 5's GridSampler would call study.stop() outside a loop)
    assert "Study.stop" not in p.stderr, p.stderr[-2000:]
    import optuna

    study = optuna.load_study(
        study_name="grid-gru", storage=f"sqlite:///{tmp_path}/grid/optuna.db"
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
