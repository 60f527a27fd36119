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
        # the parts partition core-time; a row "- of it, ..." breaks down the row above it
        parts = [v for k, v in run["core_parts"].items() if not k.startswith("- ")]
        assert sum(parts) == pytest.approx(run["core_s"], rel=1e-6)
        of_it = [v for k, v in run["core_parts"].items() if k.startswith("- of it")]
        assert sum(of_it) == pytest.approx(run["core_parts"]["evaluation"], rel=1e-6)
        # its space passes the test set at once: the confirmation is timed, as a part of its own
        assert run["cpu_parts"]["- of it, the confirmation on longer sums"] > 0
        assert run["detail"]["trials"] == 2 and run["detail"]["steps"] > 0


def test_efficiency_runs_every_method(smoke_runs):
    out, _ = smoke_runs
    result = json.loads((out / "efficiency-smoke.json").read_text())
    assert {r["method"] for r in result["runs"]} == {
        "shipped", "random", "random+asha", "optuna+hyperband"}  # fmt: skip
    methods = {r["method"] for r in result["rows"]}
    assert "shipped, own answer" in methods
    runs = sorted((out / "efficiency-smoke-runs").glob("*.json"))
    for path in runs:
        run = json.loads(path.read_text())
        starts = [e for e in run["events"] if e["kind"] == "start"]
        ends = [e for e in run["events"] if e["kind"] == "end"]
        assert len(starts) == len(ends) >= 2, path.name  # the smoke space: 2 trials
        if run["method"] == "shipped":  # its race retrained candidates on fresh seeds
            assert any(e["verify"] for e in starts)
            assert all(e["config"]["seed"] >= 10_000 for e in starts if e["verify"])
        else:
            assert not any(e["verify"] for e in starts)


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


def made_up_events():
    config = {"cell": "gru", "hidden": 8}

    def start(trial, t, hidden=8, verify=False):
        return {"t": t, "kind": "start", "trial": trial, "cell": "gru",
                "config": {**config, "hidden": hidden}, "verify": verify}  # fmt: skip

    def report(trial, t, gflop):
        return {"t": t, "kind": "report", "trial": trial, "step": 0, "gflop": gflop}

    def end(trial, t, value):
        return {"t": t, "kind": "end", "trial": trial, "value": value}

    return [
        start("a", 0.0, hidden=8),
        start("b", 0.5, hidden=16),
        report("a", 1.0, 10.0),
        report("b", 1.5, 4.0),
        report("a", 2.0, 20.0),
        end("a", 2.0, 20.0),  # solved at 20 GFLOP: the first answer
        start("c", 2.0, hidden=24),
        report("b", 3.0, 8.0),
        end("b", 3.0, 1e9 + 0.3),  # unsolved: never an answer
        report("c", 4.0, 6.0),
        end("c", 4.0, 6.0),  # solved cheaper: the second answer
        start("v", 4.0, verify=True),
        report("v", 5.0, 6.0),
        end("v", 5.0, 6.0),
    ]


def test_efficiency_answers_and_compute_until_an_instant(efficiency):
    trials = efficiency.Trials(made_up_events())
    answers = trials.answers("gru")
    assert [(t, c["hidden"], v) for t, c, v in answers] == [(2.0, 8, 20.0), (4.0, 24, 6.0)]
    # at t = 2.5: a has spent 20; b, between its reports at 1.5 (4) and 3 (8), 5.33; c, a
    # quarter of the way from its start at 2 (0) to its report at 4 (6), 1.5
    at = trials.compute_at(2.5, "gru")
    assert at["gflop"] == pytest.approx(20 + 4 + 4 * 1 / 1.5 + 1.5)
    assert at["trial_s"] == pytest.approx(2.0 + 2.0 + 0.5)
    assert trials.compute_at(10, "gru")["gflop"] == pytest.approx(20 + 8 + 6 + 6)


def test_efficiency_reaches_the_reference_at_the_first_answer_verified_under_it(efficiency):
    run = {"events": made_up_events(), "answers": {}}
    key = efficiency.config_key
    first, second = ({"cell": "gru", "hidden": h} for h in (8, 24))
    verified = {key(first): {"passed": True, "cost": 30.0},
                key(second): {"passed": True, "cost": 7.0}}  # fmt: skip
    # a reference of 10 GFLOP: the first answer verifies at 30, too dear; the second at 7
    r = efficiency.reach(run, ["gru"], verified, {"gru": 10.0})
    assert r["reached"] and r["gflop"] == pytest.approx(20 + 8 + 6)  # until t = 4
    r = efficiency.reach(run, ["gru"], verified, {"gru": 40.0})
    assert r["reached"] and r["gflop"] == pytest.approx(20 + 4 + 4 * 0.5 / 1.5)  # t = 2
    verified[key(second)] = {"passed": False, "cost": None}
    r = efficiency.reach(run, ["gru"], verified, {"gru": 10.0})
    assert not r["reached"] and r["gflop"] == pytest.approx(20 + 8 + 6 + 6)  # all of it


def test_efficiency_charges_the_race_and_says_its_share(efficiency):
    assert efficiency.Trials(made_up_events()).race_gflop() == pytest.approx(6.0)  # "v" only
    run = {"method": "shipped", "seed": 0, "events": made_up_events(), "answers": {}}
    md = efficiency.analyze([run], ["gru"], {})[3]
    assert "| shipped | 40 | 40-40 | 15% |" in md  # 6 of 20 + 8 + 6 + 6


def test_efficiency_without_a_cost_bar_counts_the_first_answer_that_passes(efficiency):
    key = efficiency.config_key
    run = {"method": "random", "seed": 0, "events": made_up_events(), "answers": {}}
    verified = {key({"cell": "gru", "hidden": 8}): {"passed": True, "cost": 30.0},
                key({"cell": "gru", "hidden": 24}): {"passed": True, "cost": 7.0}}  # fmt: skip
    reference, rows, anything, md = efficiency.analyze([run], ["gru"], verified)
    assert reference == {"gru": 7.0}  # random's final answer
    assert rows[0]["gflop"] == pytest.approx(20 + 8 + 6)  # the second answer, at t = 4
    assert anything[0]["reached"]
    assert anything[0]["gflop"] == pytest.approx(20 + 4 + 4 * 0.5 / 1.5)  # the first, t = 2
    assert "Without a cost bar" in md and "| random | 1/1 | 25.33 |" in md


def test_efficiency_final_answers_count_only_those_that_passed(efficiency):
    key = efficiency.config_key
    final = {"cell": "gru", "hidden": 24}  # the last answer the made-up run held
    runs = [{"method": "random", "events": made_up_events(), "answers": {}},
            {"method": "shipped", "events": made_up_events(),
             "answers": {"gru": {"passed": True, "mean_gflop_to_solve": 9.0}}}]  # fmt: skip
    verified = {key(final): {"passed": True, "cost": 7.0}}
    md = efficiency.finals_table(runs, ["gru"], verified)
    assert "| random | 1/1 | 7 |" in md and "| shipped, own answer | 1/1 | 9 |" in md
    verified[key(final)] = {"passed": False, "cost": None}  # the first answer passing is no help
    verified[key({"cell": "gru", "hidden": 8})] = {"passed": True, "cost": 30.0}
    md = efficiency.finals_table(runs, ["gru"], verified)
    assert "| random | 0/1 | - |" in md and "| shipped | 0/1 | - |" in md
