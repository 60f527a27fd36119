"""One Ray Tune experiment, built one way for ``adder search`` and ``adder verify``.

The trainable with its resources, reused actors, trial names that say what ran, every checkpoint
kept while it runs (pruned at the end, see search.tune), retries from the last checkpoint,
Tune's own output off, and three callbacks: each trial's ``result.json``, its W&B run, and one
line of progress when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.search import ConcurrencyLimiter

from search._internals import patch_tune
from search.callbacks import ProgressCallback, WandbCallback
from search.trainable import trainable


def trial_name(trial) -> str:
    """``gru_1a2b3c4d``, and ``gru_v_1a2b3c4d`` for a verification run: names that say what ran."""
    cell = trial.config.get("cell", "trial")
    return (
        f"{cell}_v_{trial.trial_id}" if "verify_of" in trial.config else f"{cell}_{trial.trial_id}"
    )


def build(
    folder: Path,
    experiment: str,
    *,
    searcher,
    scheduler,
    per_trial: dict[str, float],
    max_concurrent: int,
    max_failures: int,
    wandb: tuple[str, str, str],  # mode, project, group
    total: int,
    callbacks: list | None = None,  # more, after ours (a benchmark's recorder)
) -> tune.Tuner:
    """A new experiment in ``folder/experiment``, driven by ``searcher`` and ``scheduler``."""
    patch_tune()
    mode, project, group = wandb
    return tune.Tuner(
        tune.with_resources(trainable, per_trial),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=max_concurrent),
            scheduler=scheduler,
            num_samples=-1,  # the searcher says when it is done (its quotas and races)
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=experiment,
            storage_path=str(folder),
            # Keep every checkpoint while the search runs: with num_to_keep, a driver killed
            # between Tune deleting a trial's old checkpoint and saving its state leaves a state
            # that names a deleted checkpoint, and --resume fails that trial (seen here).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            callbacks=[
                JsonLoggerCallback(),
                WandbCallback(mode, folder, project, group),
                ProgressCallback(total),
                *(callbacks or []),
            ],
            verbose=0,  # ProgressCallback says what matters, one line per trial
        ),
    )


def restore(folder: Path, experiment: str, per_trial: dict[str, float]) -> tune.Tuner:
    """The experiment in ``folder/experiment`` as it was saved, to run on to its end."""
    patch_tune()
    return tune.Tuner.restore(
        str(folder / experiment),
        trainable=tune.with_resources(trainable, per_trial),
        resume_unfinished=True,
        resume_errored=True,
    )


@dataclass(frozen=True)
class Saved:
    """A trial as Tune's saved experiment state holds it, and what --resume does with it."""

    ended: bool  # TERMINATED: never run again; any other status: run (again, from a checkpoint)
    result: dict[str, Any]  # its last result
    config: dict[str, Any]


def saved_trials(folder: Path, experiment: str) -> dict[str, Saved]:
    """The trials of ``folder/experiment`` as Tune's newest saved state holds them: the state
    ``restore`` continues from (the same file; nothing writes it in between)."""
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str((folder / experiment).resolve()))  # pyarrow: absolute
    return {
        t.trial_id: Saved(t.status == "TERMINATED", dict(t.last_result or {}), dict(t.config))
        for t in analysis.trials
    }


def results(grid: Any) -> list[dict[str, Any]]:
    """Each trial's last result and its config, from a finished ``Tuner.fit()``."""
    return [{**r.metrics, "config": r.config} for r in grid if r.metrics]
