"""``adder search``: Ray Tune runs the trials, per-cell Optuna TPE samples them, per-cell ASHA
stops the weak ones, each cell's leading candidates race on fresh seeds, W&B records every curve,
and the results folder gets the verified answer (its names: search.layout).

    results/<name>/tune/           Tune's experiment (trials, verification runs, --resume state)
    results/<name>/wandb/          offline W&B runs
    results/<name>/leaderboard.*   the answer per cell, verified; trials.csv; optuna.db
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from adder.errors import UserError
from search.files import writable_dir
from search.layout import EXPERIMENT, SPACE_JSON
from search.space import Space


@dataclass
class Options:
    results: Path
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: a share of a GPU where the cluster has GPUs
    max_concurrent: int | None = None
    resume: bool = False
    wandb: str = "auto"
    wandb_project: str = "adder-search"
    max_failures: int = 2
    warm_start: Path | None = None  # an earlier search's folder: its trials join the studies


def prepare(space: Space, opts: Options) -> Path:
    """Checks that need no Ray: the folder is writable and new (or resumable). Returns it."""
    if opts.cpus_per_trial <= 0:
        raise UserError(
            f"--cpus-per-trial {opts.cpus_per_trial} is invalid; expected a number > 0"
        )
    if opts.gpus_per_trial is not None and opts.gpus_per_trial < 0:
        raise UserError(f"--gpus-per-trial {opts.gpus_per_trial} is invalid; expected >= 0")
    if opts.max_concurrent is not None and opts.max_concurrent < 1:
        raise UserError(f"--max-concurrent {opts.max_concurrent} is invalid; expected >= 1")
    from search.tracking import resolve_mode

    resolve_mode(opts.wandb)  # a bad --wandb stops here, before anything is written
    folder = (opts.results / space.name).resolve()
    exp = folder / EXPERIMENT
    started = exp.is_dir() and any(exp.glob("experiment_state*.json"))
    if opts.resume and not started:
        raise UserError(
            f"--resume: no search named {space.name!r} in {folder}; expected one to exist"
        )
    if not opts.resume and started:
        raise UserError(
            f"a search named {space.name!r} already exists in {folder}; "
            "expected --resume to continue it, or another --name"
        )
    writable_dir(folder, "results folder")
    return folder


# What a local Ray is started with, whatever the environment says: Linux Ray binds every
# interface unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is false, and RAY_AUTH_MODE=disabled turns
# its tokens off. Ray reads both when it is first imported, so they are set before that.
LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # loopback only
    "RAY_AUTH_MODE": "token",  # token authentication
}


def _protect_local_ray(environ=os.environ) -> str | None:
    """Set loopback binding and token authentication outright for a local Ray.

    Returns the one line to print when the environment asked for something else (None when it
    did not): a user's RAY_AUTH_MODE=disabled must not silently open a local search to the
    network. The way out is a Ray of one's own, joined with ``--address``.
    """
    meant = {  # what Ray makes of a value (ray._common.utils.env_bool; the auth mode's name)
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": lambda v: v.lower() in ("true", "1"),
        "RAY_AUTH_MODE": lambda v: v.lower(),
    }
    asked = [
        f"{k}={environ[k]}"
        for k, v in LOCAL_RAY_ENV.items()
        if k in environ and meant[k](environ[k]) != meant[k](v)
    ]
    environ.update(LOCAL_RAY_ENV)
    if not asked:
        return None
    return (
        f"adder: {' '.join(asked)} overridden: a local Ray listens on 127.0.0.1 only, "
        "with token authentication (to run Ray otherwise, start it yourself and pass --address)"
    )


def connect(address: str | None) -> None:
    """Join a cluster (``--address`` or RAY_ADDRESS), or start a local Ray on 127.0.0.1 only."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:  # the cluster's own settings; a token-guarded one needs RAY_AUTH_MODE=token
        for key, value in LOCAL_RAY_ENV.items():
            os.environ.setdefault(key, value)
    elif note := _protect_local_ray():
        print(note, file=sys.stderr)
    # Tune's legacy output at verbose=0 prints nothing; its new one still prints a table and a
    # TensorBoard hint (no TensorBoard files are written, see below) at the start.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Each evaluation checkpoints; with num_to_keep that forces a state snapshot, which is cheap
    # here (a few KB) but makes Tune warn every few seconds.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Save the experiment state every second (a few KB): a killed driver then loses at most a
    # second of bookkeeping, and --resume never reruns a trial that had already finished.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    # Each trial's results go to its result.json (and W&B) only: Tune's default CSV and
    # TensorBoard copies cost the driver work at every report and nothing here reads them.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:  # "local": a new Ray of our own, never one that `ray start` left on this machine
        ray.init(
            address="local", include_dashboard=False, log_to_driver=False, configure_logging=False
        )


def trial_resources(opts: Options) -> tuple[dict[str, float], int]:
    """One trial's resources (a GPU share where the cluster has GPUs); how many fit at once."""
    import ray

    resources = ray.cluster_resources()
    gpus = opts.gpus_per_trial
    if gpus is None:
        gpus = 0.25 if resources.get("GPU", 0) > 0 else 0.0
    fits = resources.get("CPU", 1) / opts.cpus_per_trial
    if gpus:
        fits = min(fits, resources.get("GPU", 0) / gpus)
    return {"cpu": opts.cpus_per_trial, "gpu": gpus}, opts.max_concurrent or max(1, int(fits))


def run(space: Space, opts: Options) -> dict:
    """Run (or resume) the search to the end, its verification included; write the results;
    return the leaderboard."""
    warm = None
    if opts.warm_start is not None:  # checked before anything is made: a mismatch is one line
        from search.studies import warm_trials

        warm = warm_trials(opts.warm_start, space)
    folder = prepare(space, opts)
    from search.tracking import resolve_mode, sync_hint

    mode = resolve_mode(opts.wandb)
    connect(opts.address)

    from search import experiment
    from search._internals import restored_parts
    from search.results import write_results
    from search.schedulers import SCHEDULERS
    from search.searcher import PerCellSearch

    per_trial, max_concurrent = trial_resources(opts)
    total = sum(space.trials_for(c) for c in space.cells)
    if mode == "offline":
        print(sync_hint(folder), file=sys.stderr)
    v = space.verify
    then = f"; then verify the top {v.top} per cell on up to {v.seeds} fresh seeds" if v else ""
    print(
        f"adder search: {space.name}: {total} trials ({', '.join(space.cells)}; "
        f"{space.sampler}, {space.scheduler}){then}, {max_concurrent} at a time, "
        f"{per_trial} each, results in {folder}",
        file=sys.stderr,
    )
    if opts.resume:
        tuner = experiment.restore(folder, EXPERIMENT, per_trial)
        searcher, scheduler = restored_parts(tuner)
        searcher.saved = experiment.saved_trials(folder, EXPERIMENT)  # reconciled in restore()
        # Tune restores the searcher's saved state inside fit(); its restore() keeps this clock
        # object and this limit, and takes the time spent from the saved state.
        if space.budget.time_s is not None:  # a new --time-budget: the whole search's, again
            searcher.clock.limit_s = space.budget.time_s
        scheduler.clock = searcher.clock  # the scheduler was pickled apart from the searcher
    else:
        space_json = {**dataclasses.asdict(space), "objective": space.objective()}
        (folder / SPACE_JSON).write_text(json.dumps(space_json, indent=2, default=str) + "\n")
        searcher = PerCellSearch(space, slots=max_concurrent, warm=warm)
        tuner = experiment.build(
            folder,
            EXPERIMENT,
            searcher=searcher,
            scheduler=SCHEDULERS[space.scheduler](space, searcher.clock),
            per_trial=per_trial,
            max_concurrent=max_concurrent,
            max_failures=opts.max_failures,
            wandb=(mode, opts.wandb_project, space.name),
            total=total,
        )
    t0 = time.perf_counter()
    with _catch_interrupt(folder):
        tuner.fit()
    wall = time.perf_counter() - t0
    partial = searcher.clock.over() and not searcher.complete()
    if partial:
        print(f"adder search: time budget of {searcher.clock.limit_s:g} s spent", file=sys.stderr)
    board = write_results(
        folder,
        space,
        searcher=searcher,
        wall_s=wall,
        partial=partial,
        mode=mode,
        project=opts.wandb_project,
    )
    _clean_tmp(folder)
    return board


class Interrupted(Exception):
    """Ctrl-C (SIGINT) stopped the search before its end; Tune saved the state --resume needs."""


def _second_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class _DropRestoreHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:  # Tune's hint names its Python API
        return "Tuner.restore(" not in record.getMessage()


@contextlib.contextmanager
def _catch_interrupt(folder: Path):
    """Turn Ctrl-C during ``tuner.fit()`` into ``Interrupted``, with no results written.

    Tune catches the first SIGINT itself: it stops the trials, saves the experiment state and
    returns as if the search had ended, then puts back the SIGINT handler it found. We put ours
    there first, so finding it back after ``fit`` means "interrupted". A second Ctrl-C reaches
    our handler and skips Tune's last save; the snapshot it took seconds earlier stands.
    """
    hint = f"to finish it, run the same command with --resume (state saved in {folder})"
    main = threading.current_thread() is threading.main_thread()
    tune_catches = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") == "0"
    previous = signal.signal(signal.SIGINT, _second_interrupt) if main else None
    tune_log = logging.getLogger("ray.tune.tune")
    drop = _DropRestoreHint()
    tune_log.addFilter(drop)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; {hint}") from None
    finally:
        caught = main and tune_catches and signal.getsignal(signal.SIGINT) is _second_interrupt
        if main:
            signal.signal(signal.SIGINT, previous)
        tune_log.removeFilter(drop)
    if caught:
        raise Interrupted(f"interrupted, no leaderboard written; {hint}")


def _clean_tmp(folder: Path) -> None:
    """After a search: drop Tune's scratch folder and every trial checkpoint but the last."""
    shutil.rmtree(folder / ".tmp", ignore_errors=True)
    for trial in (folder / EXPERIMENT).iterdir():
        checkpoints = sorted(trial.glob("checkpoint_*")) if trial.is_dir() else []
        for old in checkpoints[:-1]:
            shutil.rmtree(old, ignore_errors=True)
