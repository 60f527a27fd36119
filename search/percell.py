"""One independent study per cell type, inside one Ray Tune experiment.

``PerCellSearch`` holds one ``OptunaSearch`` (seeded TPE) per cell and hands out trials
round-robin until each cell has its quota; ``PerCellScheduler`` holds one ASHA per cell, so a
trial is only ever compared with trials of its own cell. One experiment keeps the whole cluster
busy (no cell waits for another to finish) and gives one place to resume from.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.space import Sampler, Space


def _tpe(space: Space, cell: str, seed: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():  # multivariate/group/constant_liar are "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=min(10, max(2, space.trials // 3)),
            multivariate=True,
            group=True,  # conditional parameters (nonlinearity for rnn only)
            constant_liar=True,  # parallel trials don't all sample the same point
        )


def _random(space: Space, cell: str, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid, without its ``study.stop()`` once every point is taken: under Tune there
    is no optimize loop to stop (Optuna 5 raises outside one, and Tune prints that); the trial
    count, the size of the grid, ends the search."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def _grid(space: Space, cell: str, seed: int) -> optuna.samplers.BaseSampler:
    return _GridSampler(space.grid(cell), seed=seed)


# Name -> factory(space, cell, seed). The space names one; an unknown name is refused there.
SAMPLERS = {"tpe": _tpe, "random": _random, "grid": _grid}


class PerCellSearch(Searcher):
    """Round-robin over cells, each with its own Optuna study; FINISHED when all quotas are met."""

    def __init__(self, space: Space):
        super().__init__(metric=space.metric, mode=space.mode)
        self.space = space
        self.studies = {
            cell: OptunaSearch(
                space=Sampler(space.params, cell),
                metric=space.metric,
                mode=space.mode,
                sampler=SAMPLERS[space.sampler](space, cell, space.seed + i),
                study_name=f"{space.name}-{cell}",
                points_to_evaluate=space.points_for(cell),  # enqueued: the study's first trials
            )
            for i, cell in enumerate(space.cells)
        }
        self.cell_of: dict[str, str] = {}
        self.done: set[str] = set()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space is ours; metric and mode come from it

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self.cell_of:
            counts = {c: 0 for c in self.space.cells}
            for c in self.cell_of.values():
                counts[c] += 1
            open_cells = [c for c in self.space.cells if counts[c] < self.space.trials_for(c)]
            if not open_cells:
                return Searcher.FINISHED
            self.cell_of[trial_id] = min(open_cells, key=lambda c: counts[c])
        cell = self.cell_of[trial_id]
        sampled = self.studies[cell].suggest(trial_id)
        return {**self.space.base_config(cell), **sampled}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.cell_of and self.metric in result:
            self.studies[self.cell_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self.cell_of and trial_id not in self.done:
            self.studies[self.cell_of[trial_id]].on_trial_complete(trial_id, result, error)
            self.done.add(trial_id)

    def optuna_studies(self) -> dict[str, optuna.Study]:
        return {cell: s._ot_study for cell, s in self.studies.items()}

    def save(self, checkpoint_path: str) -> None:
        state = {
            "cell_of": self.cell_of,
            "done": self.done,
            "studies": {c: s.__dict__.copy() for c, s in self.studies.items()},
        }
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.cell_of, self.done = state["cell_of"], state["done"]
        for cell, d in state["studies"].items():
            self.studies[cell].__dict__.update(d)


def export_studies(studies: dict[str, optuna.Study], path: Path, name: str) -> None:
    """Copy the in-memory studies to sqlite, one study per cell (``<name>-<cell>``).

    A trial still RUNNING (its worker died with the driver) is recorded as FAIL, so no reader of
    the database sees a trial that will never finish.
    """
    path.unlink(missing_ok=True)
    to = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")  # one for all the cells
    for cell, study in studies.items():
        storage = study._storage
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        optuna.copy_study(
            from_study_name=study.study_name,
            from_storage=storage,
            to_storage=to,
            to_study_name=f"{name}-{cell}",
        )
    to.engine.dispose()


class SnapshotOnEnd(FIFOScheduler):
    """Runs every trial to its end, and has Tune save its experiment state as soon as a trial
    ends, not at its next periodic snapshot: a driver killed right after a trial finished must
    not have --resume run that trial again. (Tune calls on_trial_complete just before it marks
    the trial TERMINATED, and saves at the end of the same step; a private flag of Tune's asks
    for that save to happen now. One small JSON file per ended trial.)"""

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        manager = getattr(tune_controller, "_checkpoint_manager", None)
        if hasattr(manager, "_should_force_sync_up"):
            manager._should_force_sync_up = True


class PerCellScheduler(SnapshotOnEnd):
    """One ASHA per cell: a trial is stopped only by comparison with its own cell's trials."""

    def __init__(self, space: Space):
        super().__init__()
        b = space.budget
        self.asha = {
            cell: ASHAScheduler(
                time_attr="step",
                metric=space.metric,
                mode=space.mode,
                max_t=b.max_steps,
                grace_period=b.grace_steps,
                reduction_factor=b.reduction_factor,
            )
            for cell in space.cells
        }

    def _of(self, trial) -> ASHAScheduler:
        return self.asha[trial.config["cell"]]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)
        super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        asha = self._of(trial)
        if trial.trial_id in asha._trial_info:
            asha.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{cell}: {a.debug_string()}" for cell, a in self.asha.items())

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({c: a.__dict__ for c, a in self.asha.items()}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        for cell, d in state.items():
            self.asha[cell].__dict__.update(d)


# Name -> factory(space). "fifo" runs every trial to its end: grids, no-early-stop baselines.
SCHEDULERS = {"asha": PerCellScheduler, "fifo": lambda space: SnapshotOnEnd()}


class ListSearch(Searcher):
    """Hands out a fixed list of configs, in order (``adder verify``'s seeds)."""

    def __init__(self, configs: list[dict[str, Any]]):
        super().__init__()
        self.configs = list(configs)
        self.given = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.given >= len(self.configs):
            return Searcher.FINISHED
        self.given += 1
        return self.configs[self.given - 1]

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass
