"""What a search exposes and what it keeps: a secret W&B key leaks into no file, log or output;
the local Ray listens on loopback only, refuses clients without its token and serves no
dashboard; a checkpoint holding code is refused and its code never runs.

One real search is watched while it runs: local Ray, ``--wandb online`` with a fake key and a
W&B server that refuses connections. It is also the fault test "W&B online but unreachable": the
search completes with one warning and keeps its runs offline. The key leak checks for
``--wandb offline`` and ``auto`` ride on the searches of tests/test_faults.py.

The watched search runs in an environment that asks Ray for the opposite of what a local search
must have (HOSTILE: every interface, no token), not in this session's (conftest.py sets
RAY_AUTH_MODE=token for everything it starts): the loopback and token checks below pass only
because `adder search` sets both itself. (An environment with neither variable set would not
do for the token: Ray 2.60 turns tokens on for a new local Ray when RAY_AUTH_MODE is unset.)
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from adder.errors import UserError
from adder.train import load_checkpoint

try:
    import psutil
except ImportError:  # not our dependency: Ray bundles a copy (see tests/test_faults.py)
    import importlib.util

    _ray = Path(importlib.util.find_spec("ray").origin).parent
    sys.path.append(str(_ray / "thirdparty_files"))
    import psutil

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY = "fake0wandb0key0" + "3" * 25 + "0end"  # 44 characters, like a real W&B key
HOSTILE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "RAY_AUTH_MODE": "disabled"}
SPACE = """
name: secure
cells: [gru, rnn]
trials: 2
budget: {max_steps: 300, eval_every: 20, grace_steps: 300, reduction_factor: 2,
         stop_when_solved: false}
fixed: {train_digits: 3, test_digits: 5, eval_size: 50, batch_size: 32, layers: 1}
params:
  hidden: {int: [8, 16]}
"""

# Started before the search, so that it has imported Ray (seconds) by the time the search's GCS
# is up; then it calls the GCS three ways and prints the status of each. A separate process:
# importing ray here would fix this process's auth mode before the cluster fixtures set it.
GCS_PROBE = r"""
import json, os, sys
from pathlib import Path
import grpc
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
address = sys.stdin.readline().strip()
path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
token = os.environ.get("RAY_AUTH_TOKEN") or Path(path).read_text().strip()
stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(grpc.insecure_channel(address))
out = {}
for name, md in [("none", ()), ("wrong", (("authorization", "Bearer " + "0" * 64),)),
                 ("right", (("authorization", "Bearer " + token),))]:
    try:
        stub.GetAllNodeInfo(gcs_service_pb2.GetAllNodeInfoRequest(), metadata=md, timeout=20)
        out[name] = "OK"
    except grpc.RpcError as e:
        out[name] = e.code().name
print(json.dumps(out))
"""


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


def grep(paths, needle: str) -> list[str]:
    hits = []
    for root in paths:
        for path in [root] if root.is_file() else root.rglob("*"):
            try:
                if (
                    path.is_file()
                    and not path.is_symlink()
                    and needle.encode() in path.read_bytes()
                ):
                    hits.append(str(path))
            except OSError:
                pass
    return hits


def http_get(port: int) -> dict:
    """What a local port answers to the dashboard's version API (status, type, body's head)."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    try:
        with opener.open(f"http://127.0.0.1:{port}/api/version", timeout=10) as r:
            return {"status": r.status, "type": r.headers.get_content_type(), "body": r.read(400)}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "type": e.headers.get_content_type(), "body": e.read(400)}
    except OSError as e:  # not HTTP at all (a gRPC port), or closed
        return {"status": None, "type": None, "body": str(e).encode()}


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    """One search with a fake W&B key in its environment, watched while its trials run.

    Returns a dict: listening sockets of the search's processes, the processes, the GCS
    probe's answers, the Ray session folder, the results folder and the captured output.
    """
    tmp = tmp_path_factory.mktemp("secure")
    (tmp / "secure.yaml").write_text(SPACE)
    wandb_server = socket.socket()  # bound, never listening: every connection is refused
    wandb_server.bind(("127.0.0.1", 0))
    env = {**os.environ, "WANDB_API_KEY": FAKE_KEY, "WANDB_INIT_TIMEOUT": "5"}  # default 15 s
    env["WANDB_BASE_URL"] = f"http://127.0.0.1:{wandb_server.getsockname()[1]}"
    env.pop("WANDB_MODE", None)
    env.pop("RAY_ADDRESS", None)
    env |= HOSTILE
    probe = subprocess.Popen(
        [sys.executable, "-c", GCS_PROBE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    with open(tmp / "search.out", "w") as out, open(tmp / "search.err", "w") as err:
        driver = subprocess.Popen(
            [sys.executable, "-m", "search.cli", "search", str(tmp / "secure.yaml")]
            + ["--results", str(tmp), "--wandb", "online"],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            env=env,
            start_new_session=True,
        )
    folder = tmp / "secure"
    seen: dict = {}
    try:
        deadline = time.monotonic() + 400
        while not list(folder.glob("tune/*/result.json")):  # trials are running
            assert driver.poll() is None, (tmp / "search.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "no trial reported in time"
            time.sleep(0.2)
        # frozen while probed: a stopped driver ends no trial and no search, and its Ray (GCS,
        # dashboard, raylet: processes of their own) answers meanwhile
        os.kill(driver.pid, signal.SIGSTOP)
        assert driver.poll() is None, "the search ended before it could be probed"
        procs = tree(driver.pid)
        pids = {p.pid for p in procs}
        listening = [
            (c.laddr.ip, c.laddr.port, c.pid)
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids
        ]
        gcs = next(p for p in procs if p.name().startswith("gcs_server"))
        port = next(port for _, port, pid in listening if pid == gcs.pid)
        answer, probe_err = probe.communicate(f"127.0.0.1:{port}\n", timeout=120)
        session = next(
            Path(arg.split("=", 1)[1]).parent
            for arg in gcs.cmdline()
            if arg.startswith("--log_dir=")
        )
        dashboard = {p.pid for p in procs if "dashboard/dashboard.py" in cmdline(p)}
        seen = {
            "http": {port: http_get(port) for _, port, pid in listening if pid in dashboard},
            "listening": listening,
            "procs": {p.pid: (p.name(), cmdline(p)) for p in procs},
            "gcs": json.loads(answer.strip().splitlines()[-1]) if answer.strip() else probe_err,
            "session": session,
        }
        os.kill(driver.pid, signal.SIGCONT)
        rc = driver.wait(timeout=600)
    finally:
        wandb_server.close()
        for p in (driver, probe):
            if p.poll() is None:
                p.kill()
    seen |= {
        "rc": rc,
        "folder": folder,
        "out": (tmp / "search.out").read_text(),
        "err": (tmp / "search.err").read_text(),
    }
    return seen


@pytest.mark.slow
def test_wandb_unreachable_switches_the_search_to_offline_once(watched):
    """The first run gives up after WANDB_INIT_TIMEOUT; one warning; every run of the search
    (trials and leaderboard) is kept offline for a later `wandb sync`."""
    assert watched["rc"] == 0, watched["err"][-3000:]
    assert "Traceback" not in watched["err"]
    warnings = [line for line in watched["err"].splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("warning: W&B online failed") and "wandb sync" in warnings[0]
    folder = watched["folder"]
    board = json.loads((folder / "leaderboard.json").read_text())
    assert board["trials"]["total"] == board["trials"]["completed"] == 4
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    # one per trial (the one whose online start failed under its id + "-offline"), one for the
    # leaderboard; each holds its records
    assert len(runs) == 4 + 1, [r.name for r in runs]
    ids = {
        r.name.split("-secure-")[-1].removesuffix("-offline") for r in runs if "-secure-" in r.name
    }
    assert len(ids) == 4 and all(list(r.glob("*.wandb")) for r in runs)


@pytest.mark.slow
def test_wandb_key_is_in_no_file_log_or_output(watched):
    assert FAKE_KEY not in watched["out"] + watched["err"]
    assert not grep([watched["folder"]], FAKE_KEY), "key written under results/"
    session = watched["session"]
    assert (session / "logs").is_dir(), session
    assert not grep([session], FAKE_KEY), "key written into Ray's session logs"


@pytest.mark.slow
def test_local_ray_overrides_an_environment_that_opens_it_in_one_line(watched):
    notes = [line for line in watched["err"].splitlines() if "overridden" in line]
    assert len(notes) == 1, watched["err"][-3000:]
    assert all(f"{k}={v}" in notes[0] for k, v in HOSTILE.items()), notes[0]
    assert "--address" in notes[0], notes[0]  # the way to run Ray otherwise


@pytest.mark.parametrize(
    "environ,note",
    [
        ({}, False),  # neither set: both set, nothing to say
        ({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "false", "RAY_AUTH_MODE": "TOKEN"}, False),
        ({"RAY_AUTH_MODE": "disabled", "OTHER": "x"}, True),
        ({"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "True"}, True),
    ],
)
def test_protect_local_ray_sets_loopback_and_token_outright(environ, note):
    from search.tune import _protect_local_ray

    asked = {k: v for k, v in environ.items() if k.startswith("RAY_")}
    line = _protect_local_ray(environ)
    assert environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert environ["RAY_AUTH_MODE"] == "token"
    assert (line is not None) == note, line
    if note:  # one line, naming exactly what the environment asked for
        assert "\n" not in line and "--address" in line
        assert all(f"{k}={v}" in line for k, v in asked.items()), line


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(watched):
    listening = watched["listening"]
    names = {watched["procs"][pid][0] for _, _, pid in listening}
    assert {"gcs_server", "raylet"} <= names, names  # the watch did see Ray's servers
    outside = [
        (ip, port, watched["procs"][pid][0])
        for ip, port, pid in listening
        if ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")
    ]
    assert not outside, outside


@pytest.mark.slow
def test_local_ray_refuses_clients_without_its_token(watched):
    assert watched["gcs"] == {"none": "UNAUTHENTICATED", "wrong": "UNAUTHENTICATED", "right": "OK"}


@pytest.mark.slow
def test_local_ray_serves_no_dashboard(watched):
    """Ray always starts its dashboard process (the head records usage stats there); with
    include_dashboard=False it serves no web UI and no REST or job API. What it may listen on
    is its Prometheus metrics exporter, on loopback (tested above). (Checked by hand: a
    dashboard started on purpose answers this probe with 401, token missing.)"""
    ports = {port for _, port, _ in watched["listening"]}
    assert 8265 not in ports
    dashboards = [cmd for _, cmd in watched["procs"].values() if "dashboard/dashboard.py" in cmd]
    assert all("--disable-frontend" in cmd for cmd in dashboards), dashboards
    for port, answer in watched["http"].items():
        # a dashboard answers 401 (token missing) or JSON; the exporter, metrics in plain text
        exporter = answer["status"] == 200 and answer["body"].startswith(b"# HELP")
        assert exporter or answer["status"] is None, (port, answer)


# -- checkpoints are loaded as data, never as code ------------------------------------------------


class Payload:
    """Unpickling this calls ``Path.touch(marker)``: the marker existing means code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def evil(tmp_path):
    """Checkpoints that run code when unpickled: a torch file and a bare pickle."""
    marker = tmp_path / "code-ran"
    torch_file = tmp_path / "evil.pt"
    torch.save({"format": "adder-checkpoint-v1", "model": Payload(marker)}, torch_file)
    bare = tmp_path / "evil.pkl"
    bare.write_bytes(pickle.dumps(Payload(marker)))
    assert not marker.exists()
    return marker, [torch_file, bare]


def test_checkpoint_with_code_is_refused_and_its_code_never_runs(evil, run_cli):
    marker, files = evil
    for path, argv in zip(files, (["add", "1", "2"], ["eval", "--n", "5"]), strict=True):
        with pytest.raises(UserError, match="cannot be read"):
            load_checkpoint(path)
        command, *rest = argv
        p = run_cli(command, path, *rest)
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
        # the last line (torch may warn about a bare pickle's protocol first: test_bad_input.py)
        assert str(path) in p.stderr.strip().splitlines()[-1], p.stderr
    assert not marker.exists(), "unpickling a checkpoint ran its code"
    # the control: an ordinary unpickle of the same bytes does run it
    pickle.loads(files[1].read_bytes())
    assert marker.exists()
