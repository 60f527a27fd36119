"""Shared test setup.

W&B never goes online from the tests: offline and silent for the whole session (subprocesses
inherit this environment). Commands that must not log pass ``--wandb disabled`` explicitly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"


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
