"""What Tune's newest saved experiment state (the one --resume reads) records: for the tests that
kill a search and must know what its resume will find."""

from __future__ import annotations

import json
import pickle
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
