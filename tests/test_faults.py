"""Faults a search must survive: real Ray, real processes, killed for real. 127.0.0.1 only.

A trial's worker killed, a node of the cluster killed, the driver interrupted with Ctrl-C and
resumed, a results folder that cannot be written, and a soak at smoke size. (W&B online but
unreachable: tests/test_security.py, whose watched search is that case.) Each search is tiny (two
cells, two trials each, a few seconds of training per trial) and every check that can share a
run does: the searches here also carry a fake W&B key that must leak nowhere.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from tune_state import staged

try:
    import psutil
except ImportError:  # not our dependency: Ray bundles a copy. (Importing ray here instead would
    # fix its auth mode for this process before the cluster fixtures set RAY_AUTH_MODE.)
    import importlib.util

    _ray = Path(importlib.util.find_spec("ray").origin).parent
    sys.path.append(str(_ray / "thirdparty_files"))
    import psutil

ROOT = Path(__file__).resolve().parent.parent
# The gru's trials run five times as long as the rnn's: a state the tests wait for ("an rnn trial
# ended, a gru trial half-way") lasts seconds, not the fraction of one that equal trials left
# (a CI run missed it and the search ended first). Where the test must act on that state, it
# freezes the driver (SIGSTOP) and checks again: a frozen driver ends no trial and no search.
STEPS, EVAL_EVERY = {"gru": 1500, "rnn": 300}, 20
SPACE = f"""
name: faults
cells: [gru, rnn]
trials: 2
budget: {{max_steps: {STEPS}, eval_every: {EVAL_EVERY}, grace_steps: {STEPS},
         reduction_factor: 2, stop_when_solved: false}}
fixed: {{train_digits: 5, test_digits: 5, eval_size: 50, batch_size: 128, layers: 1}}
params:
  hidden: {{int: [8, 16]}}
  lr: {{float: [1.0e-3, 1.0e-2], log: true}}
"""
TRIALS = 4
FAKE_KEY = "fake0wandb0key0" + "7" * 25 + "0end"  # 44 characters, like a real W&B key


# -- helpers --------------------------------------------------------------------------------------


def write_space(tmp_path: Path) -> Path:
    path = tmp_path / "faults.yaml"
    path.write_text(SPACE)
    return path


def environ(env: dict[str, str | None] | None) -> dict[str, str]:
    """os.environ with ``env`` applied; a None value removes the variable."""
    out = dict(os.environ)
    for k, v in (env or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def start(tmp_path: Path, *args, env=None, name: str = "search") -> subprocess.Popen:
    """`adder search` in its own process group (so Ctrl-C can reach it as a terminal's would),
    its output going to ``<name>.out`` and ``<name>.err``."""
    with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "search.cli", "search", *map(str, args)],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            env=environ(env),
            start_new_session=True,
        )


def search(*args, env=None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", "search", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ(env),
    )


def finish(driver: subprocess.Popen, timeout: float = 600) -> int:
    try:
        return driver.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        raise


def results(trial_dir: Path) -> list[dict]:
    """The trial's reported results so far (a line still being written is left out)."""
    try:
        text = (trial_dir / "result.json").read_text()
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def wait_for(what: str, check, driver: subprocess.Popen, timeout: float = 300):
    """Poll ``check()`` until it returns something truthy; fail if the driver ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, f"the search ended before {what}"
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def trial_dirs(folder: Path) -> list[Path]:
    """``<cell>_<trial id>`` folders of the search's Tune experiment."""
    return sorted(d for d in (folder / "tune").glob("*_*") if d.is_dir() and d.name[0] != ".")


def max_steps(trial_dir: Path) -> int:
    return STEPS[trial_dir.name.split("_")[0]]


def mid_trial(folder: Path, driver, ok=lambda r: True) -> tuple[Path, dict] | None:
    """A trial with a checkpoint (two results) and at least a fifth of its steps still to go, as
    the driver has taken its results (from its staging folder: the copy in the results folder
    may lag, and a trial seen half-way there had ended, seen in CI); its folder in the results."""
    staging = staged(driver.pid)
    for trial_dir in sorted(staging.glob("*_*")) if staging else []:
        rs = results(trial_dir)
        if len(rs) >= 2 and rs[-1]["step"] <= 0.8 * max_steps(trial_dir) and ok(rs[-1]):
            return folder / "tune" / trial_dir.name, rs[-1]
    return None


def frozen_when(what: str, check, driver: subprocess.Popen, timeout: float = 400):
    """Wait until ``check()`` holds, then freeze the driver (SIGSTOP) and return what ``check()``
    finds then: with the driver stopped no trial can end, so that state holds until the caller
    signals the driver and sends SIGCONT. (Checked again once frozen: it may have moved on.)"""
    deadline = time.monotonic() + timeout
    while True:
        wait_for(what, check, driver, timeout=deadline - time.monotonic())
        os.kill(driver.pid, signal.SIGSTOP)
        if found := check():
            return found
        os.kill(driver.pid, signal.SIGCONT)


def rows(folder: Path) -> list[dict]:
    with open(folder / "trials.csv") as f:
        return list(csv.DictReader(f))


def assert_all_completed(folder: Path, cells=("gru", "rnn")) -> list[dict]:
    """Every trial accounted for: completed in trials.csv, COMPLETE in its Optuna study."""
    trials = rows(folder)
    assert len(trials) == TRIALS and {t["status"] for t in trials} == {"completed"}, trials
    url = f"sqlite:///{folder / 'optuna.db'}"
    for cell in cells:
        study = optuna.load_study(study_name=f"faults-{cell}", storage=url)
        states = [t.state for t in study.trials]
        assert states == [optuna.trial.TrialState.COMPLETE] * 2, states
    return trials


def assert_went_on_from_checkpoint(trial_dir: Path, killed_at: int) -> None:
    """The trial failed once, was restored from a checkpoint at or after ``killed_at - 20`` (the
    last one Tune had recorded), and its step counter never went back to the start."""
    assert (trial_dir / "error.txt").exists(), "Tune recorded no failure for the killed trial"
    rs = results(trial_dir)
    steps = [r["step"] for r in rs]
    assert steps[-1] == max_steps(trial_dir) and steps == sorted(steps), steps
    assert steps.count(EVAL_EVERY) == 1, f"started again from 0: {steps}"
    restarts = [r for r in rs[1:] if r["iterations_since_restore"] == 1]
    assert len(restarts) == 1, "not restored exactly once"
    assert restarts[0]["step"] >= killed_at, (restarts[0]["step"], killed_at)
    assert len(steps) - len(set(steps)) <= 1, f"more than one evaluation redone: {steps}"


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def left_behind(procs: list[psutil.Process], grace_s: float = 60) -> list[str]:
    """Those of ``procs`` still alive (zombies aside) once ``grace_s`` has passed, or sooner."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{p.pid} {p.name()}")
            except psutil.Error:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.5)


def ray_session(procs: list[psutil.Process]) -> Path:
    """The session folder (``/tmp/ray/session_*``) of the local Ray among ``procs``."""
    gcs = next(p for p in procs if p.name().startswith("gcs_server"))
    log_dir = next(a for a in gcs.cmdline() if a.startswith("--log_dir="))
    return Path(log_dir.split("=", 1)[1]).parent


def grep_tree(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle.encode() in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                pass
    return hits


pytestmark = pytest.mark.slow


# -- a trial's worker killed ----------------------------------------------------------------------


def test_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path):
    """SIGKILL the process running a trial: Tune retries the trial from its last checkpoint and
    the search completes. The run also holds a fake W&B key (offline): it must leak nowhere."""
    space = write_space(tmp_path)
    env = {"WANDB_API_KEY": FAKE_KEY}
    driver = start(tmp_path, space, "--results", tmp_path, "--wandb", "offline", env=env)
    folder = tmp_path / "faults"
    try:
        half_way = lambda: mid_trial(folder, driver)  # noqa: E731
        trial_dir, last = frozen_when("a trial half-way", half_way, driver)
        worker = psutil.Process(last["pid"])  # Tune puts the trial's worker pid in each result
        tree = descendants(driver.pid)
        assert worker in tree
        session = ray_session(tree)
        assert worker.name().startswith("ray::ImplicitFunc"), worker.name()
        worker.send_signal(signal.SIGKILL)
        os.kill(driver.pid, signal.SIGCONT)
        rc = finish(driver)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    err = (tmp_path / "search.err").read_text()
    assert rc == 0, err[-3000:]
    assert_all_completed(folder)
    assert_went_on_from_checkpoint(trial_dir, killed_at=last["step"])
    assert len([t for t in trial_dirs(folder) if (t / "error.txt").exists()]) == 1
    out = (tmp_path / "search.out").read_text()
    assert FAKE_KEY not in out + err and not grep_tree(folder, FAKE_KEY)
    assert (session / "logs").is_dir() and not grep_tree(session, FAKE_KEY)


# -- a reused actor found dead --------------------------------------------------------------------

DEAD_CACHED_ACTOR = """
import json, os, signal, sys, time
from ray import tune
from search._internals import patch_tune
from search.tune import connect

class Count(tune.Trainable):
    def setup(self, config):
        self.i = 0
    def step(self):
        self.i += 1
        return {"i": self.i, "pid": os.getpid(), "done": self.i >= 3}
    def save_checkpoint(self, folder):
        return {"i": self.i}
    def load_checkpoint(self, state):
        self.i = state["i"]
    def reset_config(self, config):
        self.i = 0
        return True

def gone(pid):  # dead, or a zombie its raylet has not reaped yet
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True

class KillFirstActor(tune.Callback):  # once its trial ends, before Tune hands it to the next
    pid, recovered = None, []
    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.pid = self.pid or result["pid"]
    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.pid and not self.recovered and not gone(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            while not gone(self.pid):
                time.sleep(0.01)
    def on_trial_recover(self, iteration, trials, trial, **info):
        self.recovered.append(trial.trial_id)

if sys.argv[2] == "patched":
    patch_tune()
connect(None)
killer = KillFirstActor()
grid = tune.Tuner(
    Count,
    param_space={"x": tune.grid_search([1, 2, 3])},
    tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
    run_config=tune.RunConfig(
        storage_path=sys.argv[1], name="dead", verbose=0, callbacks=[killer],
        failure_config=tune.FailureConfig(max_failures=1),
    ),
).fit()
print(json.dumps({"recovered": killer.recovered, "errors": grid.num_errors,
                  "ends": sorted(r.metrics.get("i") for r in grid)}))
"""


def test_trial_on_a_dead_reused_actor_is_retried_not_errored(tmp_path):
    """Trials reuse a finished trial's actor. One on a node that has since died (here: its
    process killed while kept for reuse) fails the next trial's start; that trial is retried
    once like any failed trial, not errored outright (Tune 2.60 alone takes the one failure
    twice: ERROR whatever max_failures says; seen in CI as a worker node was removed)."""
    p = subprocess.run(
        [sys.executable, "-c", DEAD_CACHED_ACTOR, str(tmp_path), "patched"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert len(out["recovered"]) == 1, out  # the actor was dead when the next trial got it
    assert out["errors"] == 0 and out["ends"] == [3, 3, 3], out


# -- a node of the cluster killed -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_nodes(monkeypatch):
    """A head and a worker node on loopback, each with its own raylet and one CPU."""
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    from ray.cluster_utils import Cluster

    # own agent ports: another Ray on this machine may hold the default ones
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "dashboard_agent_listen_port": _free_port(),
        },
    )
    worker = cluster.add_node(num_cpus=1, dashboard_agent_listen_port=_free_port())
    cluster.wait_for_nodes()
    yield cluster, worker
    cluster.shutdown()


def test_killed_worker_node_moves_its_trials_to_the_survivor(tmp_path, two_nodes):
    cluster, worker = two_nodes
    head_id, worker_id = cluster.head_node.node_id, worker.node_id
    space = write_space(tmp_path)
    args = ["--address", cluster.address, "--results", tmp_path, "--wandb", "auto"]
    # auto resolves to offline here (WANDB_MODE, conftest.py); the key must leak nowhere
    driver = start(tmp_path, space, *args, env={"WANDB_API_KEY": FAKE_KEY})
    folder = tmp_path / "faults"
    try:
        on_worker = lambda r: r["node_id"] == worker_id  # noqa: E731
        half_way = lambda: mid_trial(folder, driver, on_worker)  # noqa: E731
        trial_dir, last = frozen_when("a trial half-way on the worker node", half_way, driver)
        cluster.remove_node(worker, allow_graceful=False)  # its raylet and workers: killed
        os.kill(driver.pid, signal.SIGCONT)
        rc = finish(driver)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert rc == 0, (tmp_path / "search.err").read_text()[-3000:]
    assert_all_completed(folder)
    assert_went_on_from_checkpoint(trial_dir, killed_at=last["step"])
    nodes = [r["node_id"] for r in results(trial_dir)]
    assert nodes[0] == worker_id and nodes[-1] == head_id, "the trial did not move to the head"
    out = (tmp_path / "search.out").read_text() + (tmp_path / "search.err").read_text()
    assert FAKE_KEY not in out and not grep_tree(folder, FAKE_KEY)


# -- the driver interrupted (Ctrl-C), then resumed ------------------------------------------------


def test_ctrl_c_stops_cleanly_and_resume_finishes_the_search(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it): exit 130, one line
    saying to rerun with --resume, no half leaderboard. --resume then completes the search: no
    finished trial is rerun, the others go on from their checkpoints, no Optuna trial is left
    RUNNING. (SIGKILL of the driver: tests/test_search.py::test_resume_after_driver_killed.)"""
    space = write_space(tmp_path)
    args = [space, "--results", tmp_path, "--wandb", "disabled"]
    driver = start(tmp_path, *args)
    folder = tmp_path / "faults"

    def one_ended_others_running():
        ended = [
            line.split()[2]
            for line in (tmp_path / "search.err").read_text().splitlines()
            if line.startswith("[")
        ]
        return ended if ended and mid_trial(folder, driver) else None

    try:
        frozen_when("one trial ended, another half-way", one_ended_others_running, driver)
        ray_procs = descendants(driver.pid)
        os.killpg(driver.pid, signal.SIGINT)  # the stopped driver's is taken at its SIGCONT
        os.kill(driver.pid, signal.SIGCONT)
        rc = finish(driver, timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    err = (tmp_path / "search.err").read_text()
    assert rc == 130, err[-3000:]
    assert "Traceback" not in err and "Tuner.restore" not in err
    resume_lines = [line for line in err.splitlines() if "--resume" in line]
    assert len(resume_lines) == 1 and resume_lines == err.strip().splitlines()[-1:], err[-2000:]
    assert resume_lines[0].startswith("adder search: interrupted")
    assert not left_behind(ray_procs), left_behind(ray_procs)
    for name in ("leaderboard.json", "leaderboard.md", "trials.csv", "optuna.db"):
        assert not (folder / name).exists(), f"{name} written for a half search"
    # every trial that ended before Ctrl-C, as its files stand now
    ended = [line.split()[2] for line in err.splitlines() if line.startswith("[")]
    before = {
        d.name: (d / "result.json").read_text()
        for d in trial_dirs(folder)
        if d.name.split("_")[1] in ended
    }
    assert before

    p = search(*args, "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    trials = assert_all_completed(folder)
    by_id = {t["trial_id"]: t for t in trials}
    for name, text in before.items():  # finished before Ctrl-C: kept, not rerun
        assert name.split("_")[1] in by_id
        assert (folder / "tune" / name / "result.json").read_text() == text
    for t in trials:  # the others went on from their checkpoints, never back to the start
        trial_dir = folder / "tune" / f"{t['cell']}_{t['trial_id']}"
        steps = [r["step"] for r in results(trial_dir)]
        assert steps[-1] == max_steps(trial_dir) and steps == sorted(steps), steps
        assert steps.count(EVAL_EVERY) == 1, steps


# -- a results folder that cannot be written ------------------------------------------------------


def test_unwritable_results_folder_stops_before_anything_starts(tmp_path):
    space = write_space(tmp_path)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder\n")
    probe = tmp_path / "modules"
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: open(sys.argv[1], 'w').write(' '.join(sorted(sys.modules))))\n"
        "from search.cli import main\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    argv = ["search", space, "--results", blocker / "sub", "--wandb", "disabled"]
    p = subprocess.run(
        [sys.executable, "-c", code, probe, *map(str, argv)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adder search: error: results folder"), lines
    assert str(blocker / "sub") in lines[0] and "cannot be written" in lines[0]
    assert "ray" not in probe.read_text().split(), "Ray was imported"
    assert blocker.read_text() == "a file, not a folder\n"


# -- a soak, at smoke size ------------------------------------------------------------------------


def test_soak_smoke_leaves_no_process_or_descriptor_behind(tmp_path):
    """bench/soak.py --smoke: 20 trials (W&B offline); figures in BENCHMARKS.md."""
    p = subprocess.run(
        [sys.executable, "bench/soak.py", "--smoke"],
        cwd=ROOT,
        env={**os.environ, "BENCH_OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    (run,) = json.loads((tmp_path / "soak-smoke.json").read_text())["runs"]
    assert run["trials_ended"] == run["trials"] == 20
    assert run["left_behind"] == [], run["left_behind"]
    fds = run["fds"]  # open in the driver when the first trial ended, and when the last did
    assert fds["all_ended"] <= fds["start"] + 5, fds  # none kept per trial
