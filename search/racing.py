"""Racing: each cell's leading candidates retrained on fresh seeds, until only the winner is left.

A search ranks its trials on one training seed each, scored on the held-out sums it selected
them on; its best may be a lucky seed. Before the answer is written, each cell's ``top`` best
settings are retrained with fresh training seeds (the same seeds for every candidate, so they are
compared pair by pair) and scored on fresh held-out sums at every verified length. A candidate
stops getting seeds as soon as it can no longer win, as in SMAC's intensification and F-race:

1. A candidate with a seed that fails (below the threshold at some length) cannot be verified;
   it is dropped as soon as another candidate has no failure.
2. From the second seed on, a candidate whose mean over the seeds that every live candidate has
   run is worse than the leader's on the same seeds is dropped (SMAC's rule, with F-race's two
   seeds before the first comparison).

When every candidate racing has failed a seed, the ones dropped by rule 2 come back (each passed
every seed it ran; it lost only to a leader that has failed since); when there are none, the
next setting in the search's ranking (from ``reserve``, up to ``verify.reserve`` of them) enters
the race, one at a time, and runs from the first seed: an answer that fails is only written when
no setting near the top passes. Once no reserve is left either, the race is lost: no seed can
make a candidate pass any more, so none is handed out; of every candidate that ran, the one
whose runs fell least short of the threshold on average is the cell's unverified answer.

Seeds are handed out in rounds: seed ``j`` goes to a candidate once every live candidate has
finished seeds ``0..j-1``; once one candidate is left it takes its remaining seeds all at once.
A worker that would idle waiting for a round to end runs the leader's next seed instead.
With ``racing=False`` every candidate runs every seed (``adder verify``).

This module is plain Python: the searcher (search.searcher) turns runs into Tune trials.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from search.metrics import UNSOLVED

FIRST_COMPARISON = 2  # seeds every live candidate has run before rule 2 compares means
SEED_BASE = 10_000  # fresh training seeds of the search's race: far from its trials' own
AFTER_SEED_BASE = 20_000  # adder verify's: not the race's, which chose the winner on theirs
# Keys a trial's config carries besides TrainConfig's in a verification run: the lengths and the
# number of fresh sums to score after training, and the search trial whose setting it retrains.
VERIFY_KEYS = ("verify_digits", "verify_n", "verify_of")


@dataclass
class Candidate:
    trial_id: str  # the search trial whose setting this is
    config: dict[str, Any]
    rank: int  # 1 = the search's best by its objective
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed index -> run_figures
    issued: set[int] = field(default_factory=set)
    dropped: str = ""  # why it stopped getting seeds; "" while it races

    def value(self, seeds) -> float:
        return statistics.fmean(self.runs[j]["value"] for j in seeds)

    def passed(self) -> bool:
        return bool(self.runs) and all(r["passed"] for r in self.runs.values())

    def shortfall(self) -> float:
        """How far its runs fell below the threshold, at their worst length, on average (0 for
        a run that passed): how close a candidate that failed came, whatever its cost."""
        return statistics.fmean(
            r.get("shortfall", 0.0 if r["passed"] else 1.0) for r in self.runs.values()
        )  # runs recorded before the field existed: a failure counts as a whole miss


class Race:
    reserve: list[Candidate] = []  # a race pickled before reserves existed has none

    def __init__(
        self,
        candidates: list[Candidate],
        seeds: int,
        *,
        racing: bool = True,
        reserve: list[Candidate] = (),
    ):
        self.candidates = sorted(candidates, key=lambda c: c.rank)
        self.seeds = seeds
        self.racing = racing
        self.reserve = sorted(reserve, key=lambda c: c.rank)  # enter when every racer failed

    def alive(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.dropped]

    def _done_rounds(self, c: Candidate) -> int:
        """How many seeds, from the first, ``c`` has finished without a gap."""
        n = 0
        while n in c.runs:
            n += 1
        return n

    def next_run(self, *, ahead: bool = False) -> tuple[Candidate, int] | None:
        """The next (candidate, seed index) to run, or None until a running one finishes.

        ``ahead``: when a worker would otherwise idle, the leader may run its next seed one
        round before the others have finished theirs (the seed it would get next anyway;
        wasted only if it is dropped). The leader is a candidate with no failed seed where
        there is one: a setting that entered after every racer failed runs two seeds at a time,
        not one beside an idle worker."""
        if self.lost():
            return None
        alive = self.alive()
        gated = self.racing and len(alive) > 1
        done = min((self._done_rounds(c) for c in alive), default=0)
        for c in sorted(alive, key=lambda c: (len(c.issued), c.rank)):
            todo = [j for j in range(self.seeds) if j not in c.issued]
            if todo and (not gated or todo[0] <= done):
                c.issued.add(todo[0])
                return c, todo[0]
        if ahead and gated:
            clean = [c for c in alive if self._clean(c)] or alive
            lead = min(clean, key=lambda c: (c.value(range(done)) if done else 0, c.rank))
            todo = [j for j in range(self.seeds) if j not in lead.issued]
            if todo and todo[0] <= done + 1:
                lead.issued.add(todo[0])
                return lead, todo[0]
        return None

    def record(self, trial_id: str, seed_index: int, figures: dict[str, Any]) -> None:
        """A run ended: keep its figures and drop the candidates that can no longer win."""
        c = next(c for c in self.candidates if c.trial_id == trial_id)
        c.runs[seed_index] = figures
        c.issued.add(seed_index)
        if self.racing:
            self._drop()
            if not any(self._clean(c) for c in self.alive()):
                # a candidate dropped for costing more than a leader that has since failed
                # passed every seed it ran: it comes back before any new setting enters
                back = [c for c in self.candidates if c.dropped and self._clean(c)]
                for c in back:
                    c.dropped = ""
                if not back and self.reserve:
                    self.candidates.append(self.reserve.pop(0))

    @staticmethod
    def _clean(c: Candidate) -> bool:
        return all(r["passed"] for r in c.runs.values())

    def _drop(self) -> None:
        alive = self.alive()
        rounds = min(self._done_rounds(c) for c in alive)
        if rounds == 0:
            return
        clean = [c for c in alive if self._clean(c)]
        if clean:
            for c in alive:
                if c not in clean:
                    bad = min(j for j, r in c.runs.items() if not r["passed"])
                    c.dropped = f"failed on fresh seed #{bad + 1}; another candidate has not"
        alive = self.alive()
        if rounds >= FIRST_COMPARISON and len(alive) > 1:
            seeds = range(rounds)
            lead = min(alive, key=lambda c: (c.value(seeds), c.rank))
            for c in alive:
                if c is not lead and c.value(seeds) > lead.value(seeds):
                    c.dropped = (
                        f"worse than #{lead.rank} over fresh seeds 1-{rounds} "
                        f"({show(c.value(seeds))} against {show(lead.value(seeds))})"
                    )

    def lost(self) -> bool:
        """Every candidate racing has failed a seed and no setting is left to enter: none can
        be verified, and more seeds would only say by how much."""
        alive = self.alive()
        return (
            self.racing
            and not self.reserve
            and bool(alive)
            and not any(self._clean(c) for c in alive)
        )

    def finished(self) -> bool:
        if self.lost():  # once the runs still out have come back
            return all(c.issued <= c.runs.keys() for c in self.alive())
        return all(len(c.runs) >= self.seeds for c in self.alive())

    def winner(self) -> Candidate | None:
        if self.lost():  # the closest of all that ran, by its misses, not its costs
            ran = [c for c in self.candidates if c.runs]
            return min(ran, key=lambda c: (c.shortfall(), c.value(c.runs.keys()), c.rank),
                       default=None)  # fmt: skip
        full = [c for c in self.alive() if len(c.runs) >= self.seeds]
        if not full:
            return None
        return min(full, key=lambda c: (not c.passed(), c.value(range(self.seeds)), c.rank))


def show(value: float) -> str:
    """A race value as a person reads it."""
    if value >= UNSOLVED:
        return f"unsolved, {value - UNSOLVED:.3f} short of every length right"
    if value < 0:  # an objective to maximize: minus the mean exact-match
        return f"mean exact-match {-value:.4f}"
    return f"{value:.4g}"


def run_figures(
    result: dict[str, Any], digits: list[int], threshold: float, metric: str, mode: str
) -> dict[str, Any]:
    """One verification run's figures, and its value for the race (lower is better).

    It passes when fresh exact-match reaches ``threshold`` at every length. Its value: under
    the ``cost_to_solve`` objective, the training GFLOP it took (to its solve, else all of it)
    when it passed, else ``UNSOLVED`` + how far its worst length fell short; under an objective
    to maximize, minus its mean exact-match over the lengths; to minimize, its mean loss.
    """
    exact = {d: result.get(f"exact_match_{d}", 0.0) for d in digits}
    passed = all(e >= threshold for e in exact.values())
    # what the seed cost to train: to its solve, else all its steps (it may pass unsolved)
    spent = result.get("solved_gflop") or result.get("gflop") or math.inf
    if metric == "cost_to_solve":
        value = spent if passed else UNSOLVED + 1 - min(exact.values())
    elif mode == "max":
        value = -statistics.fmean(exact.values())
    else:
        value = statistics.fmean(result.get(f"loss_{d}", math.inf) for d in digits)
    return {
        "seed": result.get("seed"),
        "value": value,
        "passed": passed,
        "shortfall": max(0.0, threshold - min(exact.values(), default=0.0)),
        "exact_match": {str(d): e for d, e in exact.items()},
        "solved_step": result.get("solved_step"),
        "gflop_to_solve": spent if passed else None,
        "steps": result.get("step"),
        "gflop": result.get("gflop"),
    }


def summary(c: Candidate, digits: list[int], threshold: float) -> dict[str, Any]:
    """A candidate's verification as the leaderboard and verify.json show it."""
    runs = [c.runs[j] for j in sorted(c.runs)]
    per_len = {}
    for d in map(str, digits):
        ems = [r["exact_match"][d] for r in runs]
        per_len[d] = {
            "mean": statistics.fmean(ems) if ems else None,
            "min": min(ems) if ems else None,
            "solved": sum(e >= threshold for e in ems),
            "n": len(ems),
        }
    costs = [r["gflop_to_solve"] for r in runs]
    return {
        "trial_id": c.trial_id,
        "rank": c.rank,
        "config": c.config,
        "seeds": [r["seed"] for r in runs],
        "digits": per_len,
        "gflop_to_solve": costs,  # per seed; None where the seed did not pass
        "mean_gflop_to_solve": statistics.fmean(costs) if runs and None not in costs else None,
        "passed": c.passed(),
        "dropped": c.dropped,
        "runs": runs,
    }
