"""The schedulers of a search: one ASHA per cell, or none (``fifo``), and under both the two
duties every search has: save Tune's state as soon as a trial ends, and end every running trial
once the time budget is spent.

A verification run (``verify_of`` in its config) is never stopped by ASHA: it retrains a chosen
setting to its end, so that its figures are the setting's, not a rung's.
"""

from __future__ import annotations

import itertools
import pickle

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from search._internals import asha_tracks, force_snapshot
from search.clock import Clock
from search.space import Space


class SnapshotOnEnd(FIFOScheduler):
    """Runs every trial to its end, with two duties:

    - Tune saves its experiment state as soon as a trial ends, not at its next periodic
      snapshot: a driver killed right after a trial finished must not have --resume run that
      trial again (one small JSON file per ended trial).
    - Once ``clock`` (the search's time budget, shared with the searcher) is spent, every
      running trial is stopped at its next report.
    """

    def __init__(self, clock: Clock | None = None):
        super().__init__()
        self.clock = clock

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.clock is not None and self.clock.over():
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        force_snapshot(tune_controller)


def max_gflop(space: Space) -> float:
    """The most training GFLOP any trial of ``space`` can spend: its largest setting, every
    step (ASHA's max_t when rungs are counted in GFLOP)."""
    from adder.config import TrainConfig
    from adder.models import train_flops

    shape = ("layers", "hidden", "embed", "batch_size", "train_digits", "heads", "ff_mult")
    most = 0.0
    for cell in space.cells:
        base = space.base_config(cell)
        ranges = {p.name: p.values() for p in space.params if p.applies_to(cell)}
        names = [k for k in shape if k in ranges]
        for values in itertools.product(*(ranges[k] for k in names)):
            cfg = TrainConfig.from_dict({**base, **dict(zip(names, values, strict=True))})
            per_step = train_flops(cfg.model_config(), cfg.train_digits + 1) * cfg.batch_size
            most = max(most, per_step * cfg.steps / 1e9)
    return most


class PerCellScheduler(SnapshotOnEnd):
    """One ASHA per cell: a trial is stopped only by comparison with its own cell's trials, at
    rungs counted in training steps or in training GFLOP (``budget.grace_gflop``)."""

    def __init__(self, space: Space, clock: Clock | None = None):
        super().__init__(clock)
        b = space.budget
        gflop = max_gflop(space) if b.rung_attr == "gflop" else 0.0
        self.asha = {
            cell: ASHAScheduler(
                time_attr=b.rung_attr,
                metric=space.metric,
                mode=space.mode,
                max_t=max(gflop or b.steps(cell), b.grace(cell)),
                grace_period=b.grace(cell),
                reduction_factor=b.reduction_factor,
            )
            for cell in space.cells
        }

    def _of(self, trial) -> ASHAScheduler | None:
        if "verify_of" in trial.config:
            return None
        return self.asha[trial.config["cell"]]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def on_trial_add(self, tune_controller, trial) -> None:
        if asha := self._of(trial):
            asha.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        if (asha := self._of(trial)) and asha_tracks(asha, trial):
            asha.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if super().on_trial_result(tune_controller, trial, result) == TrialScheduler.STOP:
            return TrialScheduler.STOP
        asha = self._of(trial)
        if asha is None:
            return TrialScheduler.CONTINUE
        if not asha_tracks(asha, trial):  # restored by --resume: the fresh ASHA never saw it
            asha.on_trial_add(tune_controller, trial)
        return asha.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if (asha := self._of(trial)) and asha_tracks(asha, trial):
            asha.on_trial_complete(tune_controller, trial, result)
        super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if (asha := self._of(trial)) and asha_tracks(asha, trial):
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


# Name -> factory(space, clock). "fifo" runs every trial to its end: grids, no-early-stop peers.
SCHEDULERS = {"asha": PerCellScheduler, "fifo": lambda space, clock=None: SnapshotOnEnd(clock)}
