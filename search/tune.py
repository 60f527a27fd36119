"""``adder search``: Ray Tune runs the trials, per-cell Optuna TPE samples them, per-cell ASHA
stops the weak ones, W&B records every curve, and the results folder gets the answer.

    results/<name>/tune/           Tune's experiment (trial checkpoints, state for --resume)
    results/<name>/wandb/          offline W&B runs
    results/<name>/leaderboard.*   the best setting per cell; trials.csv; optuna.db
"""

from __future__ import annotations

import contextlib
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
from search.space import Space

EXPERIMENT = "tune"


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
    """Run (or resume) the search to the end; write the results; return the leaderboard."""
    folder = prepare(space, opts)
    from search.tracking import resolve_mode, sync_hint

    mode = resolve_mode(opts.wandb)
    connect(opts.address)

    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from search.callbacks import ProgressCallback, WandbCallback
    from search.percell import SCHEDULERS, PerCellSearch
    from search.results import write_results
    from search.trainable import trainable

    per_trial, max_concurrent = trial_resources(opts)
    fn = tune.with_resources(trainable, per_trial)
    total = sum(space.trials_for(c) for c in space.cells)

    run_config = tune.RunConfig(
        name=EXPERIMENT,
        storage_path=str(folder),
        # Keep every checkpoint while the search runs: with num_to_keep, a driver killed between
        # Tune deleting a trial's old checkpoint and saving its state leaves a state that names a
        # deleted checkpoint, and --resume fails that trial (seen here). Pruned at the end.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        failure_config=tune.FailureConfig(max_failures=opts.max_failures),
        callbacks=[
            JsonLoggerCallback(),
            WandbCallback(mode, folder, opts.wandb_project, space.name),
            ProgressCallback(total),
        ],
        verbose=0,  # ProgressCallback says what matters, one line per trial
    )
    if mode == "offline":
        print(sync_hint(folder), file=sys.stderr)
    print(
        f"adder search: {space.name}: {total} trials ({', '.join(space.cells)}; "
        f"{space.sampler}, {space.scheduler}), {max_concurrent} at a time, {per_trial} each, "
        f"results in {folder}",
        file=sys.stderr,
    )
    searcher = PerCellSearch(space)
    if opts.resume:
        tuner = tune.Tuner.restore(
            str(folder / EXPERIMENT), trainable=fn, resume_unfinished=True, resume_errored=True
        )
        searcher = tuner._local_tuner._tune_config.search_alg.searcher  # the restored one
    else:
        from ray.tune.search import ConcurrencyLimiter

        tuner = tune.Tuner(
            fn,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
                scheduler=SCHEDULERS[space.scheduler](space),
                num_samples=total,
                reuse_actors=True,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=run_config,
        )
    t0 = time.perf_counter()
    with _catch_interrupt(folder):
        tuner.fit()
    wall = time.perf_counter() - t0
    board = write_results(
        folder, space, searcher=searcher, wall_s=wall, mode=mode, project=opts.wandb_project
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


def trial_name(trial) -> str:
    """``gru_1a2b3c4d``: short folder names that say what ran."""
    return f"{trial.config.get('cell', 'trial')}_{trial.trial_id}"


def _clean_tmp(folder: Path) -> None:
    """After a search: drop Tune's scratch folder and every trial checkpoint but the last."""
    shutil.rmtree(folder / ".tmp", ignore_errors=True)
    for trial in (folder / EXPERIMENT).iterdir():
        checkpoints = sorted(trial.glob("checkpoint_*")) if trial.is_dir() else []
        for old in checkpoints[:-1]:
            shutil.rmtree(old, ignore_errors=True)
