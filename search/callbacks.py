"""Tune callbacks: the search's W&B, one run per trial, driven from the Tune driver."""

from __future__ import annotations

import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from search.metrics import LOGGED
from search.tracking import Run


class WandbCallback(Callback):
    """One W&B run per trial (group = search name, the cell as a tag), each evaluation logged at
    its training step, final metrics in the summary. In-process runs (``reinit="create_new"``)
    cost one W&B service for the whole search, not one process per trial.

    The W&B calls run in order on a thread of their own: ``wandb.init`` takes 0.1-0.2 s (more
    for the first, up to ``WANDB_INIT_TIMEOUT`` when W&B cannot be reached), and on Tune's loop
    that time would hold up every trial waiting for its next report to be taken. The thread is
    drained when the experiment ends.

    An online run that cannot start (no network, a dead server) switches the whole search to
    offline with one warning (see ``tracking.Run``): its runs stay under ``<folder>/wandb`` for a
    later ``wandb sync``.
    """

    def __init__(self, mode: str, folder: Path, project: str, group: str):
        self.mode, self.folder, self.project, self.group = mode, folder, project, group
        self.runs: dict[str, Run] = {}  # touched by the W&B thread only
        self._todo: queue.Queue | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:  # pickled with the experiment: no live runs
        return {**self.__dict__, "runs": {}, "_todo": None, "_thread": None}

    # -- on Tune's loop: hand the work over --------------------------------------------------

    def _submit(self, fn, *args) -> None:
        if self.mode == "disabled":
            return
        if self._thread is None:
            self._todo = queue.Queue()
            self._thread = threading.Thread(target=self._work, name="wandb", daemon=True)
            self._thread.start()
        self._todo.put((fn, args))

    def _init_kwargs(self, trial) -> dict[str, Any]:
        cell = trial.config.get("cell", "")
        verify = "verify_of" in trial.config
        return dict(
            project=self.project,
            group=self.group,
            name=f"{cell}-{'v-' if verify else ''}{trial.trial_id}",
            id=f"{self.group}-{trial.trial_id}",
            resume="allow",
            config=dict(trial.config),
            tags=[cell, "verify"] if verify else [cell],
            job_type="verify" if verify else "trial",
        )

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._submit(self._start, trial.trial_id, self._init_kwargs(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        metrics = {k: v for k, v in result.items() if k in LOGGED or k.startswith("exact_match_")}
        self._submit(self._log, trial.trial_id, self._init_kwargs(trial), metrics, result["step"])

    def _end(self, trial, exit_code: int) -> None:
        result = trial.last_result or {}
        summary = {
            k: v
            for k, v in result.items()
            if k in (*LOGGED, "status", "step") or k.startswith(("exact_match_", "digit_acc_"))
        }
        self._submit(self._finish, trial.trial_id, summary, exit_code)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, 0)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, 1)

    def on_experiment_end(self, trials, **info) -> None:
        for trial in trials:
            self._end(trial, 0)  # no-op for runs already finished
        if self._thread is not None:
            self._todo.put(None)
            self._thread.join()
            self._thread = self._todo = None

    # -- on the W&B thread -------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._todo.get()) is not None:
            fn, args = item
            try:
                fn(*args)
            except Exception as e:  # Run keeps W&B's own errors in; this would be a bug of ours
                print(f"warning: W&B callback failed ({type(e).__name__}: {e})", file=sys.stderr)

    def _start(self, trial_id: str, kwargs: dict[str, Any]) -> Run:
        if trial_id not in self.runs:
            self.runs[trial_id] = Run(self.mode, self.folder, **kwargs)
        return self.runs[trial_id]

    def _log(self, trial_id: str, kwargs: dict[str, Any], metrics: dict, step: int) -> None:
        self._start(trial_id, kwargs).log(metrics, step=int(step))  # a restored trial: start

    def _finish(self, trial_id: str, summary: dict[str, Any], exit_code: int) -> None:
        run = self.runs.pop(trial_id, None)
        if run is not None:
            run.summarize(summary)
            run.finish(exit_code=exit_code)


class ProgressCallback(Callback):
    """Live progress, one line per event that matters: a trial ends (how, where, how well), a
    verification run ends (its fresh scores), and every ``every_s`` seconds a count of what is
    running. Tune's own tables are switched off."""

    def __init__(self, total: int, every_s: float = 30.0, stream=None):
        self.total, self.every_s, self.stream = total, every_s, stream
        self.ended = 0
        self.verified = 0
        self.last_beat = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "stream": None}

    def get_state(self) -> dict[str, int]:  # saved with Tune's snapshots: --resume counts on
        return {"ended": self.ended, "verified": self.verified}

    def set_state(self, state: dict[str, int]) -> None:
        self.ended, self.verified = state["ended"], state["verified"]

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def _end(self, trial, how: str) -> None:
        r = trial.last_result or {}
        c = trial.config
        status = r.get("status") if r.get("status") == "diverged" else how
        solved = r.get("solved_gflop")
        cost = f", solved at {solved:.3g} GFLOP" if solved is not None else ""
        if "verify_of" in c:
            self.verified += 1
            scores = " ".join(
                f"{k.removeprefix('exact_match_')} digits {v:.3f}"
                for k, v in r.items()
                if k.startswith("exact_match_")
            )
            self._print(
                f"[verify {self.verified}] {c.get('cell')} {c['verify_of']} seed {c.get('seed')} "
                f"{status} at step {r.get('step', 0)}{cost}: exact {scores or '-'}"
            )
            return
        self.ended += 1
        em, loss = r.get("exact_match"), r.get("val_loss")
        score = f"exact {em:.3f} loss {loss:.4f}" if em is not None and loss is not None else "-"
        self._print(
            f"[{self.ended}/{self.total}] {c.get('cell')} {trial.trial_id} {status} at step "
            f"{r.get('step', 0)}{cost}: {score} (layers {c.get('layers')}, hidden "
            f"{c.get('hidden')}, lr {c.get('lr', 0):.2g}, batch {c.get('batch_size')})"
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "ended")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "errored")

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.monotonic()
        if now - self.last_beat >= self.every_s:
            self.last_beat = now
            running = sum(t.status == "RUNNING" for t in trials)
            self._print(
                f"... {running} running, {self.ended}/{self.total} ended, "
                f"{self.verified} verification runs ended"
            )
