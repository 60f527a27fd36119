"""`adder search` end to end: the real Ray, Optuna and W&B (offline). 127.0.0.1 only."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from tune_state import saved_ends

from adder.config import TrainConfig
from adder.models import train_flops

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("rnn", "lstm", "gru", "transformer")  # spaces/smoke.yaml's
pytestmark = pytest.mark.slow


def rows(folder: Path) -> list[dict]:
    with open(folder / "trials.csv") as f:
        return list(csv.DictReader(f))


def result_steps(folder: Path, cell: str, trial_id: str, name: str | None = None) -> list[int]:
    trial_dir = folder / "tune" / (name or f"{cell}_{trial_id}")
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def wandb_history_steps(run_dir: Path) -> list[int]:
    (run_file,) = run_dir.glob("*.wandb")
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(run_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [r["history"]["step"]["num"] for r in records if r["type"] == "history"]


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def search(*args, timeout=600, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", "search", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_smoke_search_end_to_end(smoke_results):
    folder, p = smoke_results
    board = json.loads((folder / "leaderboard.json").read_text())
    assert board["name"] == "smoke" and set(board["cells"]) == set(CELLS)
    assert board["objective"] == {"metric": "cost_to_solve", "mode": "min"}
    assert board["partial"] is False
    assert board["verify"] == {"top": 2, "reserve": 3, "seeds": 2, "digits": [10, 20],
                               "n": 200, "threshold": 0.999}  # fmt: skip
    for cell, best in board["cells"].items():
        assert best["config"]["cell"] == cell
        for key in ("trial_id", "exact_match", "val_loss", "cost_to_solve", "gflop", "params"):
            assert key in best
        # verified inside the search: the winner of the cell's race, with every fresh seed
        # (a race every candidate lost ends where the last one failed)
        assert isinstance(best["verified"], bool)
        v = best["verify"]
        cands = best["candidates"]
        lost = all(c["dropped"] or not all(r["passed"] for r in c["runs"]) for c in cands)
        assert v["trial_id"] == best["trial_id"]
        assert v["seeds"] == [10_000, 10_001] or (lost and v["seeds"] == [10_000])
        assert best["verified"] != lost
        for d in ("10", "20"):
            assert v["digits"][d]["n"] == len(v["seeds"]) and 0 <= v["digits"][d]["min"] <= 1
        # the top 2 race; the next-ranked enter one at a time only when every racer failed
        assert [c["rank"] for c in cands] == list(range(1, len(cands) + 1)) and len(cands) <= 4
        for c in cands[2:]:
            before = cands[: c["rank"] - 1]
            assert all(o["dropped"] or not all(r["passed"] for r in o["runs"]) for o in before)
        assert best["search_rank"] in [c["rank"] for c in cands]
        for c in cands:  # a dropped candidate says why; only the winner needs every seed
            assert len(c["seeds"]) <= 2 and (c["dropped"] or len(c["seeds"]) == 2 or lost)
        assert best["verified"] == all(v["digits"][d]["solved"] == 2 for d in ("10", "20"))
    counts = board["trials"]
    assert counts["total"] == 4 * len(CELLS) and counts["errored"] == 0 and counts["running"] == 0
    assert counts["stopped"] >= 1, "ASHA stopped no trial"
    assert "Leaderboard: smoke" in p.stdout and all(f"| {c} |" in p.stdout for c in CELLS)
    assert (folder / "leaderboard.md").read_text().count("|") > 10
    assert "[verify " in p.stderr

    trials = rows(folder)
    search_rows = [t for t in trials if t["stage"] == "search"]
    verify_rows = [t for t in trials if t["stage"] == "verify"]
    assert len(search_rows) == 4 * len(CELLS) and {t["cell"] for t in search_rows} == set(CELLS)
    assert sum(t["status"] == "stopped" for t in search_rows) == counts["stopped"]
    for cell in CELLS:  # every verification run retrains one of its cell's candidates
        runs = [t for t in verify_rows if t["cell"] == cell]
        ran = sum(len(c["seeds"]) for c in board["cells"][cell]["candidates"])
        assert len(runs) == ran == board["compute"][cell]["verify"]["trials"]
        ids = {c["trial_id"] for c in board["cells"][cell]["candidates"]}
        assert {t["verify_of"] for t in runs} <= ids
        assert {t["config/seed"] for t in runs} <= {"10000", "10001"}

    # The Optuna studies: one per cell, every search trial finished, none left RUNNING, and
    # each study's value of a trial is its objective: GFLOP to solve, else 1e9 + held-out loss.
    url = f"sqlite:///{folder / 'optuna.db'}"
    assert set(optuna.get_all_study_names(url)) == {f"smoke-{c}" for c in CELLS}
    by_params = {}
    for t in search_rows:
        by_params.setdefault(t["cell"], []).append(float(t["cost_to_solve"]))
    for cell in CELLS:
        study = optuna.load_study(study_name=f"smoke-{cell}", storage=url)
        assert len(study.trials) == 4
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        assert ("nonlinearity" in study.trials[0].params) == (cell == "rnn")
        assert sorted(t.value for t in study.trials) == pytest.approx(sorted(by_params[cell]))
        assert study.user_attrs["objective"] == "cost_to_solve"
        assert ("heads" in study.trials[0].params) == (cell == "transformer")
        assert "hidden" in study.trials[0].params

    # Every trial's offline W&B run holds every evaluation, at its training step (a
    # verification run's fresh scores come at its last step: one W&B step, two reports).
    for t in trials:
        name = f"{t['cell']}_v_{t['trial_id']}" if t["stage"] == "verify" else None
        steps = result_steps(folder, t["cell"], t["trial_id"], name)
        (run_dir,) = (folder / "wandb").glob(f"offline-run-*-smoke-{t['trial_id']}")
        assert wandb_history_steps(run_dir) == list(dict.fromkeys(steps))
    tables = list((folder / "wandb").glob("offline-run-*/files/media/table/leaderboard*.json"))
    assert tables, "no W&B run holds the leaderboard table"


def test_divergent_trials_stop_at_first_evaluation(tmp_path):
    space = write_space(
        tmp_path,
        """
name: diverge
cells: [gru, rnn]
trials: 2
budget: {max_steps: 200, eval_every: 20, grace_steps: 20, reduction_factor: 2}
fixed: {lr: 10.0, train_digits: 3, test_digits: 5, eval_size: 50}
params:
  hidden: {int: [8, 16]}
""",
    )
    p = search(space, "--results", tmp_path, "--wandb", "disabled")
    assert p.returncode == 0, p.stderr[-2000:]
    folder = tmp_path / "diverge"
    trials = rows(folder)
    assert len(trials) == 4
    for t in trials:
        assert t["status"] == "diverged" and int(t["steps"]) <= 20, t
    url = f"sqlite:///{folder / 'optuna.db'}"
    for cell in ("gru", "rnn"):
        study = optuna.load_study(study_name=f"diverge-{cell}", storage=url)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert all(math.isinf(t.value) or t.value > 10 for t in study.trials)


RESUMABLE = """
name: resumable
cells: [gru, rnn]
trials: 3
budget: {max_steps: {gru: 400, rnn: 2000}, eval_every: 25, grace_steps: {gru: 400, rnn: 2000},
         reduction_factor: 2, stop_when_solved: false}
fixed: {train_digits: 3, test_digits: 5, eval_size: 50, batch_size: 32}
params:
  hidden: {int: [8, 16]}
  lr: {float: [1.0e-3, 1.0e-2], log: true}
points_to_evaluate:
  - {hidden: 12, lr: 0.005}
"""


def _wait_for_group_gone(pgid: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"processes of group {pgid} still running"
        time.sleep(0.2)


def test_resume_after_driver_killed(tmp_path):
    space = write_space(tmp_path, RESUMABLE)
    log = open(tmp_path / "first.err", "w")  # noqa: SIM115  (outlives the kill below)
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search.cli",
            "search",
            str(space),
            "--results",
            str(tmp_path),
            "--wandb",
            "disabled",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    folder = tmp_path / "resumable"
    deadline = time.monotonic() + 300
    ended: list[str] = []
    while time.monotonic() < deadline and driver.poll() is None:
        text = (tmp_path / "first.err").read_text()
        ended = [line.split()[2] for line in text.splitlines() if line.startswith("[")]
        if len(ended) >= 2:
            break
        time.sleep(0.5)
    assert driver.poll() is None and len(ended) >= 2, "the search ended before it could be killed"
    # killed once the saved experiment state (what --resume reads) holds those trials' ends, and
    # their result.json in the results folder their last step (Tune writes both on the driver and
    # copies them there in the background: a kill before the copy leaves a shorter file, seen in
    # CI); the rnn's trials, five times the gru's, keep the search going meanwhile, and the
    # driver is frozen (SIGSTOP) before it is checked to be mid-search and killed
    last = {"gru": 400, "rnn": 2000}
    cells = {w[2]: w[1] for w in map(str.split, text.splitlines()) if w and w[0].startswith("[")}

    def copied(trial_id: str) -> bool:
        path = folder / "tune" / f"{cells[trial_id]}_{trial_id}" / "result.json"
        done = f'"step": {last[cells[trial_id]]},'
        return path.exists() and done in (path.read_text().splitlines() or [""])[-1]

    def saved() -> bool:
        return set(ended) <= saved_ends(folder / "tune") and all(map(copied, ended))

    while driver.poll() is None and not saved():
        assert time.monotonic() < deadline, "the ended trials were never saved"
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGSTOP)
    assert driver.poll() is None and not (folder / "leaderboard.json").exists()
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    log.close()
    _wait_for_group_gone(driver.pid)  # the driver's Ray (its own session), which dies with it
    ended = [
        line.split()[2]
        for line in (tmp_path / "first.err").read_text().splitlines()
        if line.startswith("[")
    ]
    before = {}
    for trial_dir in (folder / "tune").glob("*_*"):
        if trial_dir.is_dir() and trial_dir.name.split("_")[1] in ended:
            before[trial_dir.name.split("_")[1]] = (trial_dir / "result.json").read_text()
    assert not (folder / "leaderboard.json").exists()

    p = search(space, "--results", tmp_path, "--wandb", "disabled", "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    trials = rows(folder)
    assert len(trials) == 6 and {t["status"] for t in trials} == {"completed"}
    by_id = {t["trial_id"]: t for t in trials}
    for trial_id, text in before.items():  # finished before the kill: kept, not rerun
        cell = by_id[trial_id]["cell"]
        assert (folder / "tune" / f"{cell}_{trial_id}" / "result.json").read_text() == text
    for t in trials:  # every trial went on from its checkpoint, never back to step 25
        steps = result_steps(folder, t["cell"], t["trial_id"])
        # it may repeat the evaluations after its last saved checkpoint, never start over
        first_seen = list(dict.fromkeys(steps))
        assert steps[-1] == last[t["cell"]] and steps.count(25) == 1
        assert first_seen == sorted(first_seen)
    url = f"sqlite:///{folder / 'optuna.db'}"
    for cell in ("gru", "rnn"):
        study = optuna.load_study(study_name=f"resumable-{cell}", storage=url)
        states = [t.state for t in study.trials]
        assert states == [optuna.trial.TrialState.COMPLETE] * 3, states
        # the space's point is each study's first trial, enqueued once (not again on resume)
        first, *rest = study.trials
        assert first.params == {"hidden": 12, "lr": 0.005}, first.params
        assert all(t.params != first.params for t in rest)
    for cell in ("gru", "rnn"):
        tried = [
            (int(t["config/hidden"]), float(t["config/lr"])) for t in trials if t["cell"] == cell
        ]
        assert tried.count((12, 0.005)) == 1, tried


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes():
    """A head and a worker node on loopback, each with its own raylet, one CPU each.

    Its own Ray temp folder, with the cluster's address in it: a job's driver is given the
    address of the cluster last started under its temp folder (``ray_current_cluster``), and
    under the shared /tmp/ray that may be another test worker's cluster, whose session (and
    Tune's per-second staging folders in it) the job would then share.
    """
    import tempfile

    import ray._private.utils

    # short: Ray's socket paths live under it
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    # for this module's tests only: a later one (of this worker) must not find them set
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        env.setenv("RAY_AUTH_MODE", "token")
        from ray.cluster_utils import Cluster

        port = _free_port()
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "temp_dir": temp_dir,
                "include_dashboard": True,
                "dashboard_host": "127.0.0.1",
                "dashboard_port": port,
                # own agent ports: another Ray on this machine may hold the default one
                "dashboard_agent_listen_port": _free_port(),
            },
        )
        ray._private.utils.write_ray_address(cluster.gcs_address, temp_dir)
        cluster.add_node(num_cpus=1, dashboard_agent_listen_port=_free_port())
        cluster.wait_for_nodes()
        yield cluster, f"http://127.0.0.1:{port}"
        cluster.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _nodes_used(folder: Path) -> set[str]:
    """The Ray nodes that the trials in ``folder``'s experiment reported from."""
    nodes = set()
    for result in (folder / "tune").glob("*/result.json"):
        nodes |= {json.loads(line)["node_id"] for line in result.read_text().splitlines()}
    return nodes


def _node_ids(cluster) -> set[str]:
    return {n.node_id for n in cluster.list_all_nodes()}


def test_search_on_two_node_cluster_uses_both_nodes(tmp_path, two_nodes):
    cluster, _ = two_nodes
    p = search(
        ROOT / "spaces" / "smoke.yaml",
        "--cells",
        "gru",
        "--trials",
        "4",
        "--address",
        cluster.address,
        "--results",
        tmp_path,
        "--wandb",
        "disabled",
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert _nodes_used(tmp_path / "smoke") == _node_ids(cluster)


def test_ray_job_submit_runs_the_search(tmp_path, two_nodes):
    cluster, dashboard = two_nodes
    cmd = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "job",
        "submit",
        "--address",
        dashboard,
        "--",
        sys.executable,
        "-m",
        "search.cli",
        "search",
        str(ROOT / "spaces" / "smoke.yaml"),
        "--cells",
        "rnn",
        "--trials",
        "2",
        "--results",
        str(tmp_path),
        "--wandb",
        "disabled",
    ]
    for _ in range(30):  # the job agent comes up some seconds after the head
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if "No available agent" not in p.stderr:
            break
        time.sleep(2)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    board = json.loads((tmp_path / "smoke" / "leaderboard.json").read_text())
    assert set(board["cells"]) == {"rnn"} and board["trials"]["total"] == 2
    assert _nodes_used(tmp_path / "smoke") <= _node_ids(cluster)  # on this cluster, no other


def test_experiments_started_in_one_second_are_staged_apart(tmp_path):
    """Tune stages an experiment's state under <Ray session>/artifacts/<second>/<name>, and every
    search's experiment is named tune: two drivers joining one cluster in the same second shared
    that folder, each copying the other's state into its results. Each now has its own."""
    from ray.train._internal.storage import StorageContext

    from search._internals import own_staging_folder

    own_staging_folder()
    own_staging_folder()  # once is enough: a second call wraps nothing more
    a, b = (
        StorageContext(storage_path=str(tmp_path / d), experiment_dir_name="tune") for d in "ab"
    )
    assert a._timestamp != b._timestamp
    assert a._timestamp.count("_") == b._timestamp.count("_") == 3  # date_time_pid_random


def test_cluster_yaml_passes_rays_schema():
    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))
    types = config["available_node_types"]
    assert any(t["node_config"]["InstanceType"].startswith("g") for t in types.values())
    assert any("pip install" in c and "adder-search" in c for c in config["setup_commands"])


def test_a_trial_of_two_seeds_trains_both_and_its_verification_runs_one(tmp_path):
    space = write_space(
        tmp_path,
        """
name: seeds
cells: [rnn]
trials: 2
budget: {max_steps: 60, eval_every: 30, grace_steps: 60, trial_seeds: 2, stop_when_solved: false}
fixed: {train_digits: 2, test_digits: 3, eval_size: 50}
params:
  hidden: {int: [8, 16]}
verify: {top: 1, seeds: 2, digits: [3], n: 50, threshold: 0.001}
""",
    )
    p = search(space, "--results", tmp_path, "--wandb", "disabled")
    assert p.returncode == 0, p.stderr[-2000:]
    folder = tmp_path / "seeds"
    trials = rows(folder)
    assert [t["stage"] for t in trials].count("search") == 2
    assert "verify" in [t["stage"] for t in trials]
    for t in trials:
        name = f"rnn_v_{t['trial_id']}" if t["stage"] == "verify" else f"rnn_{t['trial_id']}"
        trial_dir = folder / "tune" / name
        config = json.loads((trial_dir / "params.json").read_text())
        lines = (trial_dir / "result.json").read_text().splitlines()
        last = json.loads([line for line in lines if line.strip()][-1])
        if t["stage"] == "verify":  # one fresh seed, scored alone
            assert "trial_seeds" not in config and "seeds" not in last, config
            assert config["seed"] >= 10000
        else:  # both seeds, 60 steps each, its worst seed's score
            assert config["trial_seeds"] == 2 and last["seeds"] == 2, last
            assert last["exact_match"] <= last["mean_exact_match"]
            cfg = TrainConfig.from_dict({k: v for k, v in config.items() if k != "trial_seeds"})
            per_step = train_flops(cfg.model_config(), 3) * cfg.batch_size / 1e9
            assert last["gflop"] == pytest.approx(2 * 60 * per_step)
