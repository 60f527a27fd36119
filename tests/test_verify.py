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
    p = adder(
        "verify", folder, "--seeds", "2", "--digits", "5,12", "--n", "100", "--wandb", "disabled"
    )
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((folder / "verify.json").read_text())
    board = json.loads((folder / "leaderboard.json").read_text())
    assert set(summary["cells"]) == set(board["cells"])
    for cell, c in summary["cells"].items():
        assert c["trial_id"] == board["cells"][cell]["trial_id"]
        assert sorted(r["seed"] for r in c["runs"]) == [10_000, 10_001]  # fresh, not the search's
        for d in ("5", "12"):
            s = c["digits"][d]
            assert s["n"] == 2 and 0 <= s["min"] <= s["mean"] <= 1
            assert 0 <= s["solved_frac"] <= 1
    md = (folder / "verify.md").read_text()
    assert all(f"| {cell} | 12 |" in md for cell in summary["cells"])
    assert "Verify: smoke" in p.stdout
    # the report picks it up
    r = adder("report", folder)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "not verified yet" not in (folder / "report.md").read_text().lower()


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
