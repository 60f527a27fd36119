"""Every benchmark runs end to end at its --smoke size. No timed assertions: the figures live in
BENCHMARKS.md; here only that each command finishes and writes a well-formed result.

The commands run one after another: several local Rays started at once on one machine contend
for the same default ports (the dashboard agent's, for one) and fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "datagen": [sys.executable, "bench/datagen.py", "--smoke"],
    "train_speed": [sys.executable, "bench/train_speed.py", "--smoke"],
    "overhead": [sys.executable, "bench/overhead.py", "--smoke"],
    "efficiency": [sys.executable, "bench/efficiency.py", "--smoke"],
    "gpu": ["bash", "bench/gpu.sh", "--smoke"],
}


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-out")
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHON": sys.executable, "WANDB_MODE": "offline"}
    done = {}
    for name, cmd in COMMANDS.items():
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        done[name] = (p.returncode, p.stdout, p.stderr)
    return out, done


@pytest.mark.parametrize("name", list(COMMANDS))
def test_benchmark_smoke_run(smoke_runs, name):
    out, done = smoke_runs
    rc, stdout, stderr = done[name]
    assert rc == 0, stderr[-3000:]
    assert "|" in stdout, "no markdown table on stdout"
    result = json.loads((out / f"{name}-smoke.json").read_text())
    assert result["name"] == name and result["command"].startswith(f"python bench/{name}")
    assert result["machine"]["cpus"] >= 1
    assert (out / f"{name}-smoke.md").read_text().count("|") > 5


def test_overhead_accounts_for_the_whole_search(smoke_runs):
    out, _ = smoke_runs
    (space,) = json.loads((out / "overhead-smoke.json").read_text())["spaces"]
    for run in space["runs"]:
        assert 0 < run["share_cpu"] < 1 and 0 < run["share_core"] < 1
        assert sum(run["core_parts"].values()) == pytest.approx(run["core_s"], rel=1e-6)
        assert run["detail"]["trials"] == 2 and run["detail"]["steps"] > 0


def test_efficiency_runs_every_method(smoke_runs):
    out, _ = smoke_runs
    runs = json.loads((out / "efficiency-smoke.json").read_text())["runs"]
    for task in ("solve", "generalize"):
        methods = {"tpe+asha", "tpe+asha+seed", "random", "optuna+hyperband", "seed grid"}
        assert set(runs[task]) == methods
        for method, results in runs[task].items():
            for r in results:
                assert r["trials"] >= 1 and r["steps"] > 0, (task, method, r)
        # the seed's setting (hidden 32, lr 0.001, batch 128), clamped into the smoke space's
        # ranges, is the first trial TPE suggests in tpe+asha+seed, and Tune ran it (its ids are
        # Tune's). Two trials run at once, so it is one of the first two to start (either order).
        (run,) = runs[task]["tpe+asha+seed"]
        starts = [e for e in run["events"] if e["kind"] == "start"]
        seeded = [
            e
            for e in starts[:2]
            if {k: e["config"][k] for k in ("hidden", "lr", "batch_size")}
            == {"hidden": 16, "lr": 0.003, "batch_size": 32}
        ]
        assert len(seeded) == 1, [e["config"] for e in starts[:2]]
        assert "-grid-" not in seeded[0]["trial"] and "-" not in seeded[0]["trial"]


def test_gpu_script_says_what_ran(smoke_runs):
    out, done = smoke_runs
    result = json.loads((out / "gpu-smoke.json").read_text())
    assert [p["n"] for p in result["phases"]] == [1, 2]
    if result["device"].startswith("CPU"):
        assert "no GPU visible" in done["gpu"][2]
    for p in result["phases"]:
        assert len(p["per_trial"]) == p["n"] and p["aggregate"] > 0


# -- the efficiency benchmark's accounting, on made-up events (no Ray, no training) -------------


@pytest.fixture(scope="module")
def efficiency():
    sys.path.insert(0, str(ROOT))
    import bench.efficiency

    return bench.efficiency


def made_up_events(efficiency):
    from search.space import parse_space

    space = parse_space(
        {
            "name": "made-up",
            "cells": ["gru"],
            "trials": 2,
            "budget": {"max_steps": 200, "eval_every": 50, "grace_steps": 50},
            "params": {"hidden": {"int": [8, 16]}},
        }
    )
    config = {**space.base_config("gru"), "hidden": 8, "batch_size": 10}

    def report(trial, t, step, em, solved):
        return {"t": t, "kind": "report", "trial": trial, "cell": "gru", "step": step,
                "exact_match": em, "solved": solved}  # fmt: skip

    events = [
        {"t": 0.0, "kind": "start", "trial": "a", "config": config},
        {"t": 0.5, "kind": "start", "trial": "b", "config": config},
        report("a", 1.0, 50, 0.2, False),
        report("b", 1.5, 50, 0.4, False),
        report("a", 2.0, 100, 1.0, True),
        report("b", 3.0, 100, 0.9, False),
    ]
    return space, events


def test_efficiency_counts_steps_until_every_cell_is_solved(efficiency):
    space, events = made_up_events(efficiency)
    r = efficiency.analyze(events, 0.0, space, "solve")
    # at t = 2: trial a has done 100 steps; b, between its reports at 1.5 (50) and 3 (100), 66.7
    assert r["met"] and r["wall_s"] == 2.0
    assert r["steps"] == pytest.approx(100 + 50 + 50 * 0.5 / 1.5)
    assert r["samples"] == pytest.approx(10 * r["steps"])
    assert r["trial_s"] == pytest.approx(2.0 + 1.5) and r["trials"] == 2


def test_efficiency_best_exact_match_within_a_budget(efficiency):
    space, events = made_up_events(efficiency)
    assert efficiency.budget_steps(space) == 2 * 200 // 3  # 133 steps
    r = efficiency.analyze(events, 0.0, space, "budget")
    # 133 steps are reached at t = 2 (166.7 by then); b's 0.9 at t = 3 comes too late
    assert r["wall_s"] == 2.0 and r["best_exact_match"] == {"gru": 1.0}
