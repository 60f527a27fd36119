"""What Tune's newest saved experiment state (the one --resume reads) records: for the tests that
kill a search and must know what its resume will find."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path


def saved_ends(experiment: Path) -> set[str]:
    """The trials that Tune's newest saved experiment state records as ended."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    try:
        trials = json.loads(states[-1].read_text())["trial_data"] if states else []
    except (json.JSONDecodeError, OSError):  # being written
        return set()
    return {t["trial_id"] for t in map(json.loads, (s for s, _ in trials))
            if t["status"] == "TERMINATED"}  # fmt: skip


def saved_progress(experiment: Path) -> dict[str, int]:
    """The progress count (search.callbacks.ProgressCallback's state: ended, verified) in Tune's
    newest saved callback states: where a --resume's count goes on from."""
    (path,) = sorted(experiment.glob("callback-states-*.pkl"))[-1:]
    states = pickle.loads(path.read_bytes())  # {callback index: its get_state()}
    return next(s for s in states.values() if isinstance(s, dict) and "ended" in s)


def staged(driver_pid: int) -> Path | None:
    """The experiment folder Tune writes on the driver (its staging folder, copied to the results
    folder in the background): a trial's ``result.json`` there holds every result the driver has
    taken, while the results folder's copy may lag. Found by the driver's process id, which
    search._internals.own_staging_folder puts in its name."""
    root = Path(os.environ.get("RAY_TMPDIR", tempfile.gettempdir()), "ray")
    found = sorted(root.glob(f"session_*/artifacts/*_{driver_pid}_*/*/driver_artifacts"))
    return found[-1] if found else None
