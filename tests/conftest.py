"""Shared test setup.

W&B never goes online from the tests: offline and silent for the whole session (subprocesses
inherit this environment). Commands that must not log pass ``--wandb disabled`` explicitly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
# One intra-op thread, here and in every `adder` subprocess: the models are tiny, and on a busy
# machine spinning OpenMP threads slow a run down by orders of magnitude.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
# Token authentication, as `adder search` runs Ray: Ray reads the mode once, at its first import
# in a process, so a test that imports ray.tune in-process (a Searcher) must not fix it to
# "disabled" for a later one of the same worker that starts a token-guarded cluster.
os.environ.setdefault("RAY_AUTH_MODE", "token")


# -- adder CLI helpers: the `adder` console script run as a real subprocess ---------------------


@pytest.fixture(scope="session")
def adder_cmd() -> list[str]:
    """The command line of the `adder` console script, in this interpreter (the venv)."""
    return [sys.executable, "-m", "search.cli"]


@pytest.fixture(scope="session")
def run_adder(adder_cmd):
    """``run_adder(*args, cwd=..., env=None)`` -> CompletedProcess (text, stdout/stderr captured).

    Session-scoped, so module-scoped fixtures can train once and share the result.
    """

    def run(
        *args: str | Path, cwd: str | Path, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*adder_cmd, *map(str, args)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def run_cli(run_adder, tmp_path):
    """``run_cli(*args, cwd=tmp_path, env=None)``: run `adder` in this test's tmp folder."""

    def run(*args: str | Path, cwd: str | Path | None = None, **kwargs):
        return run_adder(*args, cwd=cwd or tmp_path, **kwargs)

    return run


# -- end of adder CLI helpers ---------------------------------------------------------------------


# -- search helpers: real Ray, real Optuna, W&B offline -------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def smoke_results(run_adder, tmp_path_factory):
    """One real smoke search (all cells, W&B offline), shared by every test that reads results.

    Returns ``(folder, completed_process)`` with folder = ``<results>/smoke``. Under
    pytest-xdist the first worker to ask runs it and the others wait for it and read the same
    folder (every reader copies it before writing anything).
    """
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    results = base / "smoke-results"
    record = base / "smoke-results.json"
    with FileLock(str(base / "smoke-results.lock")):
        if not record.exists():
            p = run_adder(
                "search",
                ROOT / "spaces" / "smoke.yaml",
                "--results",
                results,
                "--wandb",
                "offline",
                cwd=ROOT,
                timeout=600,
            )
            record.write_text(
                json.dumps([[str(a) for a in p.args], p.returncode, p.stdout, p.stderr])
            )
    p = subprocess.CompletedProcess(*json.loads(record.read_text()))
    assert p.returncode == 0, p.stderr[-3000:]
    return results / "smoke", p
