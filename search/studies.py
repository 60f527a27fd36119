"""Optuna's side of a search: the sampler a space names, a warm start from an earlier search's
studies, and the export of each cell's in-memory study to sqlite (``optuna.db``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna

from adder.errors import UserError
from search._internals import fail_running
from search.layout import LEADERBOARD_JSON, OPTUNA_DB
from search.space import Space, distributions


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


def warm_trials(folder: Path, space: Space) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """The finished trials of an earlier search (``folder`` = RESULTS/NAME), per cell of
    ``space``, to add to its new studies. Its objective and, cell by cell, its parameters and
    their ranges must be the space's: otherwise one UserError line says what differs."""
    where = f"--warm-start {folder}"
    db, board_path = folder / OPTUNA_DB, folder / LEADERBOARD_JSON
    if not db.is_file() or not board_path.is_file():
        raise UserError(
            f"{where}: no {OPTUNA_DB} and {LEADERBOARD_JSON}; expected a finished search"
        )
    board = json.loads(board_path.read_text())
    old = board.get("objective", {}).get("metric", "val_loss")
    if old != space.metric:
        raise UserError(
            f"{where}: its objective is {old!r}, this space's {space.metric!r}; expected the same"
        )
    url = f"sqlite:///{db.resolve()}"
    names = set(optuna.get_all_study_names(url))
    out = {}
    for cell in space.cells:
        name = f"{board['name']}-{cell}"
        if name not in names:
            out[cell] = []
            continue
        want = distributions(space.params, cell)
        done = optuna.load_study(study_name=name, storage=url).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
        )
        for t in done:
            if t.distributions != want:
                diff = sorted(
                    k for k in set(want) | set(t.distributions)
                    if want.get(k) != t.distributions.get(k)
                )  # fmt: skip
                raise UserError(
                    f"{where}: {cell} parameter {diff[0]!r} is {_show(t.distributions, diff[0])} "
                    f"there and {_show(want, diff[0])} in this space; expected the same "
                    "parameter names and ranges"
                )
        out[cell] = [
            optuna.trial.create_trial(
                params=t.params,
                distributions=t.distributions,
                value=t.value,
                user_attrs={"warm_start": str(folder)},
            )
            for t in done
        ]
    return out


def _show(dists: dict, key: str) -> str:
    d = dists.get(key)
    if d is None:
        return "not searched"
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return f"a choice of {list(d.choices)}"
    return f"[{d.low}, {d.high}]" + (" (log)" if d.log else "")


def export_studies(studies: dict[str, optuna.Study], path: Path, name: str, metric: str) -> None:
    """Copy the in-memory studies to sqlite, one study per cell (``<name>-<cell>``).

    A trial still RUNNING (its worker died with the driver) is recorded as FAIL, so no reader of
    the database sees a trial that will never finish.
    """
    path.unlink(missing_ok=True)
    to = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")  # one for all the cells
    for cell, study in studies.items():
        optuna.copy_study(
            from_study_name=study.study_name,
            from_storage=fail_running(study),
            to_storage=to,
            to_study_name=f"{name}-{cell}",
        )
        copy = optuna.load_study(study_name=f"{name}-{cell}", storage=to)
        copy.set_user_attr("objective", metric)
    to.engine.dispose()
