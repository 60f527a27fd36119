"""The private parts of Ray Tune and Optuna this project relies on, in one place, each with why.

When an upgrade of Ray or Optuna moves one of them, this is the file to fix; tests/test_search.py
(resume, the snapshot on a trial's end), tests/test_racing.py and tests/test_faults.py (a dead
reused actor) go red first.
"""

from __future__ import annotations

import os
from typing import Any


def optuna_study(search: Any):
    """The Optuna study inside a Ray ``OptunaSearch`` (its ``_ot_study``): to export it, to add
    a warm start's trials, and to read it for the report. OptunaSearch has no public accessor."""
    return search._ot_study


def force_snapshot(tune_controller: Any) -> None:
    """Ask Tune to save its experiment state at the end of this step, not at its next periodic
    snapshot. Tune calls a scheduler's on_trial_complete just before it marks the trial
    TERMINATED and saves at the end of the same step when this private flag is set."""
    manager = getattr(tune_controller, "_checkpoint_manager", None)
    if hasattr(manager, "_should_force_sync_up"):
        manager._should_force_sync_up = True


def restored_parts(tuner: Any) -> tuple[Any, Any]:
    """The searcher (inside its ConcurrencyLimiter) and the scheduler of a restored Tuner: the
    objects Tune will call, which ``Tuner.restore`` builds and keeps private."""
    config = tuner._local_tuner._tune_config
    return config.search_alg.searcher, config.scheduler


def asha_tracks(asha: Any, trial: Any) -> bool:
    """Whether an ASHA scheduler holds a record of ``trial`` (its ``_trial_info``): a trial
    restored by --resume was never added to the fresh scheduler, and removing it would raise."""
    return trial.trial_id in asha._trial_info


def fail_running(study: Any) -> Any:
    """Mark the trials of ``study`` still RUNNING as FAIL (their worker died with the driver);
    return its storage, which ``optuna.copy_study`` needs and Study keeps private."""
    import optuna

    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return storage


def patch_tune() -> None:
    """Apply this project's two fixes to Tune (below), once per process, before any experiment."""
    own_staging_folder()
    survive_dead_cached_actors()


def own_staging_folder() -> None:
    """Give this driver's Tune experiments a staging folder no other driver shares.

    Tune stages an experiment's state on the driver under
    ``<Ray session>/artifacts/<second it started>/<experiment name>/driver_artifacts`` and copies
    that whole folder to the results. Every search's experiment is named ``tune``, so two
    searches that join one cluster and start in the same second would share it, and each would
    copy the other's state into its own results (seen in CI: a job's leaderboard read another
    search's trials). The second (``StorageContext._timestamp``, set once on the driver and
    copied to every trial, kept across --resume) gets this process's id and a random suffix.
    """
    import uuid

    from ray.train._internal.storage import StorageContext

    init = StorageContext.__init__
    if getattr(init, "own_staging", False):
        return

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._timestamp = f"{self._timestamp}_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    __init__.own_staging = True
    StorageContext.__init__ = __init__


def survive_dead_cached_actors() -> None:
    """Retry a trial whose reused actor turns out dead, as any other failed trial is retried.

    With ``reuse_actors``, Tune keeps a finished trial's actor to run the next trial. An actor
    kept on a node that has since died fails the next trial's ``reset`` task, and Tune 2.60 takes
    that one failure twice: once as the actor's (which requeues the trial, PENDING) and again as
    the task's (a PENDING trial is not recovered: ERROR, whatever ``max_failures`` says). The
    trial also stays marked as resetting, so it would never get a new actor. Seen in CI: a trial
    started as a worker node was removed ended in ERROR at step 0. Here one failure (one exception
    object) is handled once, and a failed trial is no longer resetting.
    """
    from ray.tune.execution.tune_controller import TuneController

    handle = TuneController._trial_task_failure
    if getattr(handle, "handled_once", False):
        return

    def _trial_task_failure(self, trial, exception):
        state = trial.temporary_state  # not saved with the experiment
        if getattr(state, "failure", None) is exception:
            return  # the same failure, reported by the actor and by its task
        state.failure = exception
        self._resetting_trials.discard(trial)
        handle(self, trial, exception)

    _trial_task_failure.handled_once = True
    TuneController._trial_task_failure = _trial_task_failure
