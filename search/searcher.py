"""The searchers: which trial Tune runs next.

``PerCellSearch`` is ``adder search``'s: one Optuna study per cell, handed trials round-robin
until each cell has its quota; then, per cell, the race that verifies its leading candidates on
fresh seeds (search.racing), in the same Tune experiment, so that the cluster stays busy, one
folder holds everything and --resume continues whichever stage was running. With
``budget.target``, a search trial that reaches the target is verified at once, and its cell
stops searching once one is verified there. With ``budget.time_s``, no search trial starts
once what is left is needed to verify, and no trial at all once it is spent.

``VerifySearch`` is ``adder verify``'s: the same races, every candidate on every seed.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import statistics
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search._internals import optuna_study
from search.clock import Clock
from search.metrics import rank_key, sort_value
from search.racing import SEED_BASE, VERIFY_KEYS, Candidate, Race, run_figures
from search.space import TRIAL_SEEDS, Sampler, Space, Verify, distributions
from search.studies import SAMPLERS


class Races:
    """Each cell's race, as Tune trials: the configs to run and the results they bring back."""

    def __init__(
        self, verify: Verify, digits: list[int], metric: str, mode: str, seed_base: int = SEED_BASE
    ):
        self.verify, self.digits, self.metric, self.mode = verify, digits, metric, mode
        self.seed_base = seed_base
        self.races: dict[str, Race] = {}
        self.run_of: dict[str, tuple[str, str, int]] = {}  # trial -> cell, candidate, seed index

    def start(
        self,
        cell: str,
        candidates: list[Candidate],
        *,
        racing: bool = True,
        reserve: list[Candidate] = (),
    ) -> Race:
        self.races[cell] = Race(candidates, self.verify.seeds, racing=racing, reserve=reserve)
        return self.races[cell]

    def next_config(self, cell: str, trial_id: str, ahead: bool = False) -> dict[str, Any] | None:
        race = self.races.get(cell)
        nxt = race.next_run(ahead=ahead) if race else None
        if nxt is None:
            return None
        candidate, j = nxt
        self.run_of[trial_id] = (cell, candidate.trial_id, j)
        setting = {k: v for k, v in candidate.config.items() if k != TRIAL_SEEDS}
        return {  # one fresh seed per run, however many a search trial trained
            **setting,
            "seed": self.seed_base + j,
            "verify_digits": self.digits,
            "verify_n": self.verify.n,
            "verify_of": candidate.trial_id,
        }

    def record(self, trial_id: str, result: dict[str, Any] | None) -> str | None:
        """A verification run ended (``result`` None: it failed); returns its cell. A run
        stopped before its scoring (the time budget ran out) is not recorded: its seed is
        offered again, should the search go on (a --resume with a larger budget)."""
        if trial_id not in self.run_of:
            return None
        if result is not None and f"exact_match_{self.digits[0]}" not in result:
            return self.release(trial_id)
        cell, candidate, j = self.run_of.pop(trial_id)
        figures = run_figures(
            {**(result or {}), "seed": self.seed_base + j},
            self.digits,
            self.verify.threshold,
            self.metric,
            self.mode,
        )
        self.races[cell].record(candidate, j, figures)
        return cell

    def release(self, trial_id: str) -> str:
        """A run that will bring back no figures: its seed is offered again. Returns its cell."""
        cell, candidate, j = self.run_of.pop(trial_id)
        race = self.races[cell]
        next(c for c in race.candidates if c.trial_id == candidate).issued.discard(j)
        return cell

    def adopt(self, trial_id: str, config: dict[str, Any]) -> bool:
        """Take ``trial_id``, a run Tune holds that was never handed out here (its state saved
        after this one's), as the run of its candidate's seed, if that seed is not out: else
        the race would hand it out again and the same run would run twice."""
        race = self.races.get(config.get("cell"))
        of, seed = config.get("verify_of"), config.get("seed")
        if race is None or of is None or seed is None:
            return False
        c = next((c for c in race.candidates if c.trial_id == of), None)
        j = seed - self.seed_base
        if c is None or j in c.issued or not 0 <= j < race.seeds:
            return False
        c.issued.add(j)
        self.run_of[trial_id] = (config["cell"], of, j)
        return True

    def finished(self, cell: str) -> bool:
        return cell in self.races and self.races[cell].finished()


class PerCellSearch(Searcher):
    """Round-robin over cells, each with its own Optuna study, then each cell's race."""

    limit: int | None = None  # trials at once, once Tune sets it (set_max_concurrency)

    def __init__(
        self,
        space: Space,
        *,
        slots: int = 1,
        warm: dict[str, list] | None = None,
    ):
        super().__init__(metric=space.metric, mode=space.mode)
        self.space = space
        self.slots = slots  # trials at once (Tune's max_concurrent_trials, set_max_concurrency)
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
        for cell, trials in (warm or {}).items():
            optuna_study(self.studies[cell]).add_trials(trials)
        self.cell_of: dict[str, str] = {}  # search trial -> its cell
        self.given: dict[str, dict[str, Any]] = {}  # every trial -> the config it was given
        self.ended: dict[str, dict[str, Any]] = {}  # search trial -> its final result ({}: failed)
        self.saved = None  # --resume: Tune's saved trials, to reconcile with (see restore)
        self.strays: dict[str, Any] = {}  # Tune's verification runs for races not started here
        self.foreign: set[str] = set()  # Tune's search trials not handed out here, still running
        self.races = (
            Races(space.verify, space.verify_digits(), space.metric, space.mode)
            if space.verify
            else None
        )
        self.checking: dict[str, str] = {}  # cell -> candidate being verified against the target
        self.reached: dict[str, str] = {}  # cell -> candidate verified at budget.target
        self.verified_runs: dict[str, dict[int, dict]] = {}  # candidate -> runs, for reuse
        self.clock = Clock(space.budget.time_s)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space is ours; metric and mode come from it

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Limit the trials at once here, not in Tune's ConcurrencyLimiter: its count of live
        trials is saved in a file of its own, and --resume must not restore it from another
        moment than this searcher's (see reconcile)."""
        self.slots = self.limit = max_concurrent
        return True

    # -- which trial next ---------------------------------------------------------------------

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id in self.given:  # asked again for the same trial
            return self.given[trial_id]
        if self.clock.over():
            return Searcher.FINISHED
        if self.limit is not None and len(self.open) >= self.limit:
            return None
        cells = sorted(self.space.cells, key=lambda c: sum(self._cell(t) == c for t in self.given))
        for cell in cells:
            config = self._race_run(cell, trial_id) or self._search_trial(cell, trial_id)
            if config is not None:
                return self._give(trial_id, config)
        for cell in cells:  # nothing else to run: a leader's next seed, not an idle worker
            if self.races is not None and (config := self.races.next_config(cell, trial_id, True)):
                return self._give(trial_id, config)
        if all(self._cell_done(c) for c in self.space.cells):
            return Searcher.FINISHED
        return None  # a running trial must end first

    def _give(self, trial_id: str, config: dict[str, Any]) -> dict[str, Any]:
        self.given[trial_id] = config
        return config

    def _cell(self, trial_id: str) -> str:
        if trial_id in self.cell_of:
            return self.cell_of[trial_id]
        return self.given[trial_id]["cell"]

    def _searching(self, cell: str) -> bool:
        """Whether ``cell`` may start another search trial."""
        issued = sum(c == cell for c in self.cell_of.values())
        return (
            cell not in self.reached
            and issued < self.space.trials_for(cell)
            and self.clock.left() > self._time_to_verify()
        )

    def _search_trial(self, cell: str, trial_id: str) -> dict[str, Any] | None:
        if not self._searching(cell):
            return None
        sampled = self.studies[cell].suggest(trial_id)
        if sampled is None:
            return None
        self.cell_of[trial_id] = cell
        seeds = self.space.budget.trial_seeds
        return {
            **self.space.base_config(cell),
            **sampled,
            **({TRIAL_SEEDS: seeds} if seeds > 1 else {}),
        }

    def _search_over(self, cell: str) -> bool:
        running = [t for t, c in self.cell_of.items() if c == cell and t not in self.ended]
        return not self._searching(cell) and not running

    def _race_run(self, cell: str, trial_id: str) -> dict[str, Any] | None:
        """The next seed of the cell's race; the race starts once its search is over."""
        if self.races is None:
            return None
        if cell not in self.races.races and cell not in self.reached and self._search_over(cell):
            ranked = self._candidates(cell)
            top = self.space.verify.top
            self.races.start(cell, ranked[:top], reserve=ranked[top:])
            self._adopt(cell)
        return self.races.next_config(cell, trial_id)

    def _candidates(self, cell: str) -> list[Candidate]:
        """The cell's ``verify.top`` best search trials and the ``verify.reserve`` after them,
        with any seeds already run for them."""
        metric, mode = self.space.metric, self.space.mode
        done = [
            (t, r)
            for t, r in self.ended.items()
            if self.cell_of.get(t) == cell and r and math.isfinite(r.get(metric, math.nan))
        ]
        done.sort(key=lambda tr: rank_key(metric, mode, tr[1]))
        out = []
        for rank, (t, _) in enumerate(
            done[: self.space.verify.top + self.space.verify.reserve], start=1
        ):
            config = {k: v for k, v in self.given[t].items() if k not in VERIFY_KEYS}
            out.append(Candidate(t, config, rank, runs=dict(self.verified_runs.get(t, {}))))
            out[-1].issued = set(out[-1].runs)
        return out

    def _cell_done(self, cell: str) -> bool:
        if self.clock.over() or self.races is None:
            return self.clock.over() or self._search_over(cell)
        if cell in self.reached:
            return True
        return self._search_over(cell) and cell not in self.checking and self.races.finished(cell)

    def complete(self) -> bool:
        """Whether every cell ran its plan to the end (not cut short by the time budget)."""

        def done(cell: str) -> bool:
            mine = [t for t, c in self.cell_of.items() if c == cell]
            searched = len(mine) >= self.space.trials_for(cell) and all(
                t in self.ended for t in mine
            )
            if self.races is None:
                return searched
            return cell in self.reached or (searched and self.races.finished(cell))

        return all(done(c) for c in self.space.cells)

    def _time_to_verify(self) -> float:
        """Seconds to keep for verification under a time budget: per cell still to verify,
        (top + seeds - 1) runs of its leading trials' median length (a run is one of a trial's
        ``trial_seeds``), spread over the slots."""
        if self.races is None or self.clock.limit_s is None:
            return 0.0
        v, need = self.space.verify, 0.0
        for cell in self.space.cells:
            if cell in self.reached or self.races.finished(cell):
                continue
            secs = [r.get("time_total_s", 0.0) for t, r in self.ended.items() if r
                    and self.cell_of.get(t) == cell]  # fmt: skip
            if secs:
                need += (v.top + v.seeds - 1) * statistics.median(secs)
        return need / self.space.budget.trial_seeds / max(1, self.slots)

    # -- what Tune tells us -------------------------------------------------------------------

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.foreign or trial_id in self.ended or trial_id not in self.cell_of:
            return
        if self.metric in result:
            self.studies[self.cell_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self.strays:  # ended before its race started: taken when it starts
            stray = self.strays[trial_id]
            self.strays[trial_id] = dataclasses.replace(stray, ended=True, result=result or {})
        if self.races is not None and trial_id in self.races.run_of:
            cell = self.races.record(trial_id, None if error else result)
            self._after_check(cell)
            return
        if trial_id in self.cell_of and trial_id not in self.ended:
            cell = self.cell_of[trial_id]
            if trial_id in self.foreign:
                self._tell_foreign(cell, trial_id, result, error)
            else:
                self.studies[cell].on_trial_complete(trial_id, result, error)
            self.ended[trial_id] = {} if error or not result else dict(result)
            self._maybe_check(cell, trial_id)

    def _maybe_check(self, cell: str, trial_id: str) -> None:
        """Under ``budget.target``: a trial that reaches it is verified now, if none is."""
        target = self.space.budget.target
        result = self.ended[trial_id]
        if target is None or self.races is None or not result or cell in self.races.races:
            return  # no target, or a race (a check, or the final one) under way
        value = result.get(self.space.metric)
        if value is None or sort_value(self.space.mode, value) > sort_value(
            self.space.mode, target
        ):
            return
        config = {k: v for k, v in self.given[trial_id].items() if k not in VERIFY_KEYS}
        self.checking[cell] = trial_id
        self.races.start(cell, [Candidate(trial_id, config, 1)])

    def _after_check(self, cell: str) -> None:
        if cell not in self.checking or not self.races.finished(cell):
            return
        candidate = self.checking.pop(cell)
        race = self.races.races.pop(cell)
        c = race.candidates[0]
        self.verified_runs[candidate] = dict(c.runs)
        target = self.space.budget.target
        value = c.value(range(race.seeds))
        if c.passed() and value <= sort_value(self.space.mode, target):
            self.reached[cell] = candidate
            self.races.races[cell] = race  # its race: the cell's answer

    def optuna_studies(self):
        return {cell: optuna_study(s) for cell, s in self.studies.items()}

    def save(self, checkpoint_path: str) -> None:
        state = {k: v for k, v in self.__dict__.items() if k not in ("studies", "saved")}
        state["studies"] = {c: s.__dict__.copy() for c, s in self.studies.items()}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        for cell, d in state.pop("studies").items():
            self.studies[cell].__dict__.update(d)
        clock = self.clock  # the limit this invocation set; the scheduler shares this object
        self.strays, self.foreign = {}, set()  # a state saved before they existed has none
        self.__dict__.update(state)
        clock.carry_on(self.clock)
        self.clock = clock
        if self.saved is not None:
            self.reconcile(self.saved)

    @property
    def open(self) -> set[str]:
        """The trials handed out whose end this searcher has not had."""
        runs = set(self.races.run_of) if self.races is not None else set()
        return {t for t in self.cell_of if t not in self.ended} | runs

    def reconcile(self, saved: dict[str, Any]) -> None:
        """Agree with the trials Tune restored for --resume (``saved``: trial id -> its
        search.experiment.Saved). Tune saves its experiment state and this searcher's as two
        files, copied to the results folder one after the other in the background: a driver
        killed in between leaves them from different moments, and a restored race waited
        forever on a run Tune had already ended. So, for each trial this searcher waits on:

        - ended in Tune's state: its end is taken now, from its last result;
        - absent from it (handed out after Tune's state was saved): it will never run; a search
          trial's Optuna trial fails and its cell's quota hands the slot out again, a
          verification run's seed is offered again;
        - else Tune runs it (again), and its end comes as usual.

        A trial Tune holds that was never handed out here (Tune's state the newer) is taken: a
        search trial counts in its cell's quota and its end goes to its study, a verification
        run is its seed's run (at once, or when its race starts), so that none runs twice.
        """
        for t in sorted(self.open):
            if t not in saved:
                self._forget(t)
            elif saved[t].ended:
                self.on_trial_complete(t, saved[t].result)
        if self.races is not None:
            self.strays = {t: s for t, s in saved.items()
                           if t not in self.given and "verify_of" in s.config}  # fmt: skip
            for cell in list(self.races.races):
                self._adopt(cell)
        for t, s in saved.items():
            cell = s.config.get("cell")
            if t not in self.given and "verify_of" not in s.config and cell in self.studies:
                self.cell_of[t], self.given[t] = cell, s.config
                self.foreign.add(t)
                if s.ended:
                    self.on_trial_complete(t, s.result)

    def _tell_foreign(self, cell: str, trial_id: str, result: dict | None, error: bool) -> None:
        """A search trial its study never handed out ended: added to the study, as a warm
        start's trials are (OptunaSearch knows only the trials it asked for)."""
        import optuna

        self.foreign.discard(trial_id)
        value = (result or {}).get(self.metric)
        done = not error and isinstance(value, (int, float)) and math.isfinite(value)
        dists = distributions(self.space.params, cell)
        optuna_study(self.studies[cell]).add_trial(
            optuna.trial.create_trial(
                params={k: self.given[trial_id][k] for k in dists},
                distributions=dists,
                value=value if done else None,
                state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.FAIL,
            )
        )

    def _adopt(self, cell: str) -> None:
        """Take the strays of ``cell``'s race that it has a seed for (Races.adopt)."""
        for t, s in list(self.strays.items()):
            if s.config.get("cell") == cell and self.races.adopt(t, s.config):
                del self.strays[t]
                self.given[t] = s.config
                if s.ended:
                    self.on_trial_complete(t, s.result)

    def _forget(self, trial_id: str) -> None:
        if trial_id in self.cell_of:
            self.studies[self.cell_of.pop(trial_id)].on_trial_complete(trial_id, None, error=True)
        else:
            self.races.release(trial_id)
        self.given.pop(trial_id, None)


class VerifySearch(Searcher):
    """``adder verify``: every candidate of every cell on every seed (no racing)."""

    def __init__(self, races: Races, candidates: dict[str, list[Candidate]]):
        super().__init__()
        self.races = races
        self.cells = list(candidates)
        for cell, cands in candidates.items():
            races.start(cell, cands, racing=False)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for cell in self.cells:
            if (config := self.races.next_config(cell, trial_id)) is not None:
                return config
        if all(self.races.finished(c) for c in self.cells):
            return Searcher.FINISHED
        return None

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.races.record(trial_id, None if error else result)
