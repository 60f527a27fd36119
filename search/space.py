"""Search spaces: YAML -> a validated ``Space`` -> an Optuna define-by-run function per cell.

Everything a space says is checked here, before Ray starts: a mistake is one ``SpaceError`` line
naming the file and the key, and what was expected.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from adder.config import CELL_FIELDS, CELLS, SOLVED, TrainConfig, field_type
from adder.errors import UserError
from search.metrics import OBJECTIVES

TRIAL_SEEDS = "trial_seeds"  # a search trial's config key: its budget.trial_seeds, when > 1
BUDGET_OWNS = ("steps", "eval_every", "stop_when_solved", "cell")  # not settable in fixed/params


class SpaceError(UserError):
    pass


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int | float | choice
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: tuple = ()
    cells: tuple[str, ...] = ()  # empty: every cell (a setting of CELL_FIELDS: the cells it names)

    def applies_to(self, cell: str) -> bool:
        return not self.cells or cell in self.cells

    def values(self) -> list[Any]:
        """The extreme values, used to check the whole range against TrainConfig."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


@dataclass(frozen=True)
class Budget:
    # training steps of one trial at most; a mapping {cell: steps} gives each cell its own (the
    # transformer and the gru solve later, and on some seeds much later, than the rnn and lstm)
    max_steps: int | dict[str, int] = 3000
    eval_every: int = 100
    # ASHA's first rung, in training steps or (grace_gflop) in training GFLOP: with GFLOP, rungs
    # are compute, so a narrow model gets more steps than a wide one before it is compared.
    # Either may be a mapping {cell: value}: each cell's ASHA compares its own trials only.
    grace_steps: int | dict[str, int] | None = None  # neither given: 300 steps
    grace_gflop: float | dict[str, float] | None = None
    reduction_factor: float = 3.0
    stop_when_solved: bool = True
    # training seeds of one search trial, side by side: it scores as its worst seed and costs
    # them all (search.trainable.train_seeds); verification runs train one fresh seed each
    trial_seeds: int = 1
    time_s: float | None = None  # the whole search, verification included
    target: float | None = None  # in the objective's unit: a cell stops once verified there

    @property
    def rung_attr(self) -> str:
        """The reported metric ASHA's rungs are counted in."""
        return "gflop" if self.grace_gflop is not None else "step"

    def steps(self, cell: str) -> int:
        """The most training steps one trial of ``cell`` runs."""
        m = self.max_steps
        return m[cell] if isinstance(m, dict) else m

    def grace(self, cell: str) -> float:
        """ASHA's first rung for ``cell``'s trials, in ``rung_attr``."""
        g = self.grace_gflop if self.grace_gflop is not None else self.grace_steps
        if g is None:
            return 300
        return g[cell] if isinstance(g, dict) else g


BUDGET_TYPES = {
    "max_steps": (int, dict),  # a number, or one per cell
    "eval_every": int,
    "grace_steps": (int, dict),  # a number, or one per cell
    "grace_gflop": (float, dict),
    "reduction_factor": float,
    "stop_when_solved": bool,
    "trial_seeds": int,
    "time_s": float,
    "target": float,
}


@dataclass(frozen=True)
class Verify:
    """Fresh-seed verification of each cell's leading candidates (search.racing)."""

    top: int = 3  # candidates per cell: the search's best by its objective
    seeds: int = 5  # fresh training seeds each, at most (racing drops the ones that cannot win)
    digits: tuple[int, ...] = ()  # lengths scored on fresh sums; () = the space's test_digits
    n: int = 1000  # fresh sums per length
    threshold: float = SOLVED  # exact-match a seed must reach at every length to pass
    reserve: int = 3  # the next-ranked settings, entering one by one when every racer failed


VERIFY_TYPES = {
    "top": int,
    "seeds": int,
    "digits": list,
    "n": int,
    "threshold": float,
    "reserve": int,
}


@dataclass(frozen=True)
class Space:
    name: str
    cells: tuple[str, ...]
    trials: int
    metric: str
    mode: str
    budget: Budget
    fixed: dict[str, Any]
    params: tuple[Param, ...]
    seed: int = 0
    description: str = ""
    sampler: str = "tpe"  # tpe | random | grid (see search.percell.SAMPLERS)
    scheduler: str = "asha"  # asha | fifo (no early stopping)
    # Settings each cell's study tries first (Tune's and Optuna's points_to_evaluate): partial
    # mappings of searched parameters; what a point leaves out is sampled, as is the rest.
    points: tuple[dict[str, Any], ...] = ()
    verify: Verify | None = None  # None: the leaderboard is the search's, unverified
    source: str = "<space>"

    def trials_for(self, cell: str) -> int:
        """Trials of one cell: ``trials``, or the size of its grid under ``sampler: grid``."""
        if self.sampler != "grid":
            return self.trials
        return math.prod(len(p.choices) for p in self.params if p.applies_to(cell))

    def points_for(self, cell: str) -> list[dict[str, Any]]:
        """The points to evaluate first in one cell's study: each without the parameters that do
        not apply to the cell (``nonlinearity`` for an LSTM)."""
        own = {p.name for p in self.params if p.applies_to(cell)}
        return [{k: v for k, v in point.items() if k in own} for point in self.points]

    def grid(self, cell: str) -> dict[str, list[Any]]:
        return {p.name: list(p.choices) for p in self.params if p.applies_to(cell)}

    def base_config(self, cell: str) -> dict[str, Any]:
        """Every TrainConfig field that is not searched: fixed values plus the budget."""
        b = self.budget
        return {
            **TrainConfig().to_dict(),
            **self.fixed,
            "cell": cell,
            "steps": b.steps(cell),
            "eval_every": b.eval_every,
            "stop_when_solved": b.stop_when_solved,
        }

    def objective(self) -> dict[str, str]:
        return {"metric": self.metric, "mode": self.mode}

    def verify_digits(self) -> list[int]:
        """The lengths verification scores (the space's test length unless it names them)."""
        if self.verify and self.verify.digits:
            return list(self.verify.digits)
        return [self.base_config(self.cells[0])["test_digits"]]

    def override(self, **changes: Any) -> Space:
        """A copy with CLI overrides applied (``None`` means not given), checked again.
        ``verify=False`` turns verification off."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if changes.get("verify") is False:
            changes["verify"] = None
        budget = {k: changes.pop(k) for k in list(changes) if k in _names(Budget)}
        new = dataclasses.replace(
            self, budget=dataclasses.replace(self.budget, **budget), **changes
        )
        _check_space(new)
        return new


def _names(cls) -> set[str]:
    return {f.name for f in fields(cls)}


class Sampler:
    """Define-by-run: samples the parameters that apply to one cell. Picklable, for resume."""

    def __init__(self, params: tuple[Param, ...], cell: str):
        self.params = [p for p in params if p.applies_to(cell)]

    def __call__(self, trial) -> None:
        for p in self.params:
            if p.kind == "int":
                trial.suggest_int(p.name, p.low, p.high, step=p.step or 1, log=p.log)
            elif p.kind == "float":
                trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
            else:
                trial.suggest_categorical(p.name, list(p.choices))


def distributions(params: tuple[Param, ...], cell: str) -> dict[str, Any]:
    """The Optuna distribution of every parameter one cell's study searches."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for p in params:
        if not p.applies_to(cell):
            continue
        if p.kind == "int":
            out[p.name] = IntDistribution(p.low, p.high, log=p.log, step=p.step or 1)
        elif p.kind == "float":
            out[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[p.name] = CategoricalDistribution(list(p.choices))
    return out


def load_space(path: str | Path) -> Space:
    """Read and validate a space file. Raises SpaceError (one line) on any mistake."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise SpaceError(f"{where}: no such file; expected a search space YAML (see spaces/)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise SpaceError(f"{where}: YAML syntax error{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{where}: cannot be read ({e}); expected a UTF-8 YAML file") from None
    return parse_space(doc, where)


TOP = {
    "name",
    "description",
    "cells",
    "trials",
    "seed",
    "sampler",
    "scheduler",
    "objective",
    "budget",
    "fixed",
    "params",
    "points_to_evaluate",
    "verify",
}
SAMPLER_NAMES = ("tpe", "random", "grid")
SCHEDULER_NAMES = ("asha", "fifo")


def show_key(key: str) -> str:
    """A key as the one error line shows it: a newline or other control character escaped."""
    return key if key.isprintable() else key.encode("unicode_escape").decode("ascii")


def parse_space(doc: Any, where: str = "<space>") -> Space:
    def err(key: str, msg: str) -> SpaceError:
        return SpaceError(f"{show_key(where)}: {show_key(key)}: {msg}")

    if not isinstance(doc, dict):
        raise SpaceError(
            f"{where}: expected a mapping of {', '.join(sorted(TOP))}; got {_kind(doc)}"
        )
    for key in doc:
        if key not in TOP:
            raise err(str(key), f"unknown key; expected one of {', '.join(sorted(TOP))}")

    name = doc.get("name", Path(where).stem)
    cells = doc.get("cells", list(CELLS))
    if not isinstance(cells, list) or not cells:
        raise err(
            "cells", f"{cells!r} is invalid; expected a non-empty list of {', '.join(CELLS)}"
        )
    objective = _mapping(doc.get("objective", {}), "objective", err)
    for key in objective:
        if key not in ("metric", "mode"):
            raise err(f"objective.{key}", "unknown key; expected metric or mode")
    metric = objective.get("metric", "cost_to_solve")
    if not isinstance(metric, str) or metric not in OBJECTIVES:
        raise err(
            "objective.metric", f"{metric!r} is invalid; expected one of {', '.join(OBJECTIVES)}"
        )
    mode = objective.get("mode", OBJECTIVES[metric])
    budget = _mapping(doc.get("budget", {}), "budget", err)
    for key in budget:
        if key not in _names(Budget):
            raise err(f"budget.{key}", f"unknown key; expected one of {', '.join(_names(Budget))}")
    for key, value in budget.items():
        t = BUDGET_TYPES[key]
        if isinstance(t, tuple) and isinstance(value, dict):  # per cell: {cell: number}
            budget[key] = {
                c: _typecheck(v, t[0], f"budget.{key}.{c}", err) for c, v in value.items()
            }
        else:
            one = t[0] if isinstance(t, tuple) else t
            budget[key] = _typecheck(value, one, f"budget.{key}", err)
    verify = None
    if "verify" in doc:
        spec = _mapping(doc["verify"], "verify", err)
        for key, value in spec.items():
            if key not in VERIFY_TYPES:
                raise err(
                    f"verify.{key}", f"unknown key; expected one of {', '.join(VERIFY_TYPES)}"
                )
            spec[key] = _typecheck(value, VERIFY_TYPES[key], f"verify.{key}", err)
        digits = spec.pop("digits", [])
        for d in digits:
            _typecheck(d, int, "verify.digits", err)
        verify = Verify(**spec, digits=tuple(digits))

    fixed = _mapping(doc.get("fixed", {}), "fixed", err)
    for key, value in fixed.items():
        _train_field(key, "fixed", err)
        try:
            fixed[key] = TrainConfig.from_dict({key: value}, where="").__getattribute__(key)
        except UserError as e:
            raise err(f"fixed.{key}", str(e).lstrip(": ")) from None

    params = []
    for key, spec in _mapping(doc.get("params", {}), "params", err).items():
        _train_field(key, "params", err)
        if key in fixed:
            raise err(f"params.{key}", "is also in fixed; expected each setting in one place")
        if not isinstance(spec, list):
            params.append(_param(key, spec, err))
            continue
        # a list: one range per group of cells (the transformer's width on multiples of its
        # heads, the recurrent cells' anywhere), each with cells:, no cell in two
        if not spec:
            raise err(f"params.{key}", "[] is invalid; expected a spec, or a list of them")
        seen: set[str] = set()
        for i, one in enumerate(spec):
            at = f"params.{key}.{i}"
            if not isinstance(one, dict) or "cells" not in one:
                raise err(f"{at}.cells", "missing; expected each spec of a list to name cells")
            p = _param(key, one, err, where=at)
            if twice := seen & set(p.cells):
                raise err(f"{at}.cells", f"{sorted(twice)[0]} has a spec already; expected "
                          "each cell in one spec")  # fmt: skip
            seen |= set(p.cells)
            params.append(p)
    _check_read(cells, fixed, params, err)

    space = Space(
        name=name,
        cells=tuple(cells),
        trials=doc.get("trials", 24),
        metric=metric,
        mode=mode,
        budget=Budget(**budget),
        fixed=fixed,
        params=tuple(params),
        seed=doc.get("seed", 0),
        description=doc.get("description", ""),
        sampler=doc.get("sampler", "tpe"),
        scheduler=doc.get("scheduler", "asha"),
        points=_points(doc.get("points_to_evaluate", []), err),
        verify=verify,
        source=where,
    )
    _check_space(space)
    return space


def _check_space(s: Space) -> None:
    def err(key: str, msg: str) -> SpaceError:
        return SpaceError(f"{show_key(s.source)}: {show_key(key)}: {msg}")

    if not isinstance(s.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", s.name):
        raise err("name", f"{s.name!r} is invalid; expected letters, digits, '_', '.', '-'")
    for c in s.cells:
        if not isinstance(c, str) or c not in CELLS:
            raise err("cells", f"{c!r} is not a cell; expected one of {', '.join(CELLS)}")
    if len(set(s.cells)) != len(s.cells):
        raise err("cells", f"{list(s.cells)} repeats a cell; expected each at most once")
    _typecheck(s.trials, int, "trials", err)
    _typecheck(s.seed, int, "seed", err)
    if s.sampler not in SAMPLER_NAMES:
        raise err(
            "sampler", f"{s.sampler!r} is invalid; expected one of {', '.join(SAMPLER_NAMES)}"
        )
    if s.scheduler not in SCHEDULER_NAMES:
        raise err(
            "scheduler",
            f"{s.scheduler!r} is invalid; expected one of {', '.join(SCHEDULER_NAMES)}",
        )
    if s.sampler == "grid":
        for p in s.params:
            if p.kind != "choice":
                raise err(f"params.{p.name}", "sampler grid needs choice lists; expected choice")
    if s.trials < 1:
        raise err("trials", f"{s.trials!r} is invalid; expected an integer >= 1")
    _check_points(s, err)
    if s.mode not in ("min", "max"):
        raise err("objective.mode", f"{s.mode!r} is invalid; expected min or max")
    b = s.budget
    if b.eval_every < 1:
        raise err("budget.eval_every", f"{b.eval_every!r} is invalid; expected an integer >= 1")
    _check_max_steps(s, err)
    if b.grace_steps is not None and b.grace_gflop is not None:
        raise err("budget.grace_gflop", "grace_steps is given too; expected one of the two")
    _check_grace(s, err)
    if b.time_s is not None and not (math.isfinite(b.time_s) and b.time_s > 0):
        raise err("budget.time_s", f"{b.time_s!r} is invalid; expected a number > 0")
    if b.target is not None and not math.isfinite(b.target):
        raise err("budget.target", f"{b.target!r} is invalid; expected a finite number")
    if b.target is not None and s.verify is None:
        raise err("budget.target", "a target is reached by a verified candidate; expected verify")
    if not b.reduction_factor > 1:
        raise err("budget.reduction_factor", f"{b.reduction_factor!r} is invalid; expected > 1")
    if b.trial_seeds < 1:
        raise err("budget.trial_seeds", f"{b.trial_seeds!r} is invalid; expected an integer >= 1")
    if s.verify is not None:
        v = s.verify
        for key in ("top", "seeds", "n"):
            if getattr(v, key) < 1:
                raise err(
                    f"verify.{key}", f"{getattr(v, key)!r} is invalid; expected an integer >= 1"
                )
        if v.reserve < 0:
            raise err("verify.reserve", f"{v.reserve!r} is invalid; expected an integer >= 0")
        if not 0 < v.threshold <= 1:
            raise err(
                "verify.threshold", f"{v.threshold!r} is invalid; expected a number in (0, 1]"
            )
        for d in v.digits:
            if not 1 <= d <= 100_000:
                raise err("verify.digits", f"{d!r} is invalid; expected integers in [1, 100000]")
    for p in s.params:
        for c in p.cells:  # may name a cell that --cells left out, not an unknown one
            if not isinstance(c, str) or c not in CELLS:
                raise err(
                    f"params.{p.name}.cells", f"{c!r} is not a cell; expected {', '.join(CELLS)}"
                )
            readers = CELL_FIELDS.get(p.name, CELLS)
            if c not in readers:  # TPE would search a dimension the model never reads
                raise err(
                    f"params.{p.name}.cells",
                    f"{c} does not read {p.name} (only read by {', '.join(readers)}); "
                    f"expected cells among {', '.join(readers)}",
                )
    # Every value the space can produce must make a valid TrainConfig, for every cell.
    for cell in s.cells:
        base = s.base_config(cell)
        try:
            TrainConfig(**base)
        except UserError as e:
            raise err("fixed", str(e)) from None
        for p in s.params:
            if not p.applies_to(cell):
                continue
            for v in p.values():
                try:
                    TrainConfig(**{**base, p.name: v})
                except UserError as e:
                    raise err(f"params.{p.name}", str(e)) from None
        _check_joint(s, cell, base, err)


# Settings valid one by one and not together: the transformer's heads must divide hidden (and
# leave an even width per head for rope). Every combination the space can give is tried.
JOINT = ("hidden", "heads", "pos")


def _check_joint(s: Space, cell: str, base: dict[str, Any], err) -> None:
    searched = {p.name: p for p in s.params if p.applies_to(cell) and p.name in JOINT}
    if not searched or cell not in CELL_FIELDS["heads"]:
        return

    def every(p: Param) -> list[Any]:
        if p.kind == "int" and (p.high - p.low) // (p.step or 1) < 4096:
            return list(range(p.low, p.high + 1, p.step or 1))
        return p.values()

    options = {k: every(searched[k]) if k in searched else [base[k]] for k in JOINT}
    for combo in itertools.product(*options.values()):
        setting = dict(zip(JOINT, combo, strict=True))
        try:
            TrainConfig(**{**base, **setting})
        except UserError as e:
            shown = ", ".join(f"{k} {v}" for k, v in setting.items() if k in searched)
            raise err(
                "params",
                f"{cell} can be given {shown} together, which it refuses ({e}); expected "
                "ranges where every combination holds (e.g. hidden a choice of multiples of "
                "every heads)",
            ) from None


def _check_read(cells: list, fixed: dict[str, Any], params: list[Param], err) -> None:
    """Refuse a setting that no cell of the space reads: searched, it is a dimension TPE spends
    trials on for nothing; fixed, it says something that never happens. (Checked on the file's
    own cells: --cells may leave out the cells a parameter is for.)"""

    def known(names) -> bool:  # an unknown cell has its own message (_check_space)
        return all(isinstance(c, str) and c in CELLS for c in names)

    if not known(cells):
        return
    for key in fixed:
        readers = CELL_FIELDS.get(key, CELLS)
        if not set(readers) & set(cells):
            raise err(
                f"fixed.{key}",
                f"no cell of this space reads it (cells: {', '.join(cells)}; only read by "
                f"{', '.join(readers)}); expected it out of fixed, or one of those in cells",
            )
    for p in params:
        if known(p.cells) and not any(p.applies_to(c) for c in cells):
            raise err(
                f"params.{p.name}",
                f"searches nothing: it applies to {', '.join(p.cells)} only, and the space's "
                f"cells are {', '.join(cells)}; expected a cell in both, or it out of params",
            )


def _param(key: str, spec: Any, err, where: str = "") -> Param:
    where = where or f"params.{key}"
    spec = _mapping(spec, where, err)
    kinds = [k for k in ("int", "float", "choice") if k in spec]
    if len(kinds) != 1:
        raise err(where, "expected exactly one of int, float, choice")
    kind = kinds[0]
    allowed = {"choice", "cells"} if kind == "choice" else {kind, "log", "step", "cells"}
    for k in spec:
        if k not in allowed:
            raise err(f"{where}.{k}", f"unknown key; expected one of {', '.join(sorted(allowed))}")
    cells = spec.get("cells", [])
    if not isinstance(cells, list) or not cells and "cells" in spec:
        raise err(f"{where}.cells", f"{cells!r} is invalid; expected a non-empty list of cells")
    # a setting only some cells read is searched for those alone, unless cells: narrows it more
    cells = cells or list(CELL_FIELDS.get(key, ()))
    t = field_type(key)
    if kind == "choice":
        choices = spec["choice"]
        if not isinstance(choices, list) or not choices:
            raise err(f"{where}.choice", f"{choices!r} is invalid; expected a non-empty list")
        if len({repr(c) for c in choices}) != len(choices):
            raise err(f"{where}.choice", f"{choices!r} repeats a value; expected distinct values")
        for c in choices:
            _typecheck(c, t, f"{where}.choice", err)
        return Param(
            key,
            kind,
            choices=tuple(float(c) if t is float else c for c in choices),
            cells=tuple(cells),
        )
    if t is not int and t is not float or (kind == "int" and t is not int):
        raise err(
            where,
            f"{key} is a {t.__name__} setting; expected "
            + ("int, float or choice" if t is float else "choice"),
        )
    num = int if kind == "int" else float
    bounds = spec[kind]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise err(f"{where}.{kind}", f"{bounds!r} is invalid; expected [low, high]")
    low, high = (_typecheck(v, num, f"{where}.{kind}", err) for v in bounds)
    if not (math.isfinite(low) and math.isfinite(high)):
        raise err(f"{where}.{kind}", f"{bounds!r} is invalid; expected finite numbers")
    if low > high:
        raise err(f"{where}.{kind}", f"low {low} > high {high}; expected low <= high")
    log = _typecheck(spec.get("log", False), bool, f"{where}.log", err)
    if log and low <= 0:
        raise err(f"{where}.log", f"log scale needs low > 0; got low {low}")
    step = spec.get("step")
    if step is not None:
        step = _typecheck(step, num, f"{where}.step", err)
        if not 0 < step < math.inf:
            raise err(f"{where}.step", f"{step!r} is invalid; expected a finite number > 0")
        if log:
            raise err(f"{where}.step", "step and log cannot be combined; expected one of them")
    return Param(key, kind, low=low, high=high, log=log, step=step, cells=tuple(cells))


def _points(value: Any, err) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list):
        raise err("points_to_evaluate", f"expected a list of mappings; got {_kind(value)}")
    return tuple(_mapping(v, f"points_to_evaluate.{i}", err) for i, v in enumerate(value))


def _check_points(s: Space, err) -> None:
    """Each point names searched parameters only, each at a value its parameter can take."""
    if s.points and s.sampler == "grid":
        raise err("points_to_evaluate", "a grid runs every point already; expected none here")
    if len(s.points) > s.trials:
        raise err(
            "points_to_evaluate",
            f"{len(s.points)} points > trials {s.trials}; expected at most one per trial",
        )
    names = list(dict.fromkeys(p.name for p in s.params))
    for i, point in enumerate(s.points):
        for key, v in point.items():
            where = f"points_to_evaluate.{i}.{key}"
            if key not in names:
                raise err(where, f"is not searched; expected one of: {', '.join(names) or 'none'}")
            for p in s.params:  # each spec of the parameter: the value goes to its cells
                if p.name != key or not any(p.applies_to(c) for c in s.cells):
                    continue
                of = f" (the range of {', '.join(p.cells)})" if p.cells else ""
                if p.kind == "choice":
                    v = _typecheck(v, field_type(key), where, err)
                    if v not in p.choices:
                        raise err(
                            where, f"{v!r} is not a choice{of}; expected one of {list(p.choices)}"
                        )
                else:
                    v = _typecheck(v, int if p.kind == "int" else float, where, err)
                    if not p.low <= v <= p.high:
                        raise err(
                            where, f"{v!r} is outside [{p.low}, {p.high}]{of}; expected inside"
                        )
                    off = (v - p.low) / p.step if p.step else 0
                    if abs(off - round(off)) > 1e-8:
                        raise err(
                            where, f"{v!r} is off the step {p.step} from {p.low}{of}; expected on"
                        )


def _train_field(key: Any, section: str, err) -> None:
    names = [f.name for f in fields(TrainConfig)]
    if key not in names:
        raise err(
            f"{section}.{key}", f"is not a TrainConfig setting; expected one of {', '.join(names)}"
        )
    if key in BUDGET_OWNS:
        raise err(f"{section}.{key}", "is set by cells and budget; expected it there")


def _per_cell(s: Space, key: str, what: str, err) -> dict[str, str]:
    """A budget value that is one number or one per cell: a mapping must name known cells only,
    and every cell of the space (a cell --cells leaves out may keep its own). Returns where each
    cell's value is, for messages."""
    v = getattr(s.budget, key)
    for cell in v if isinstance(v, dict) else ():
        if cell not in CELLS:
            raise err(f"budget.{key}.{cell}", f"is not a cell; expected one of {', '.join(CELLS)}")
    for cell in s.cells:
        if isinstance(v, dict) and cell not in v:
            raise err(f"budget.{key}", f"names no {what} for {cell}; expected one for every cell")
    return {c: f"budget.{key}" + (f".{c}" if isinstance(v, dict) else "") for c in s.cells}


def _check_max_steps(s: Space, err) -> None:
    """Trial length, one or per cell: each at least one evaluation long."""
    for cell, where in _per_cell(s, "max_steps", "steps", err).items():
        v = s.budget.steps(cell)
        if v < 1:
            raise err(where, f"{v!r} is invalid; expected an integer >= 1")
        if s.budget.eval_every > v:
            raise err("budget.eval_every", f"{s.budget.eval_every} > max_steps {v}; expected <=")


def _check_grace(s: Space, err) -> None:
    """ASHA's first rung, one or per cell: within the trial's steps, or GFLOP > 0."""
    key = "grace_gflop" if s.budget.grace_gflop is not None else "grace_steps"
    if getattr(s.budget, key) is None:
        return
    for cell, where in _per_cell(s, key, "grace", err).items():
        v = s.budget.grace(cell)
        if key == "grace_steps" and not 1 <= v <= s.budget.steps(cell):
            raise err(where, f"{v!r} is invalid; expected an integer from 1 to max_steps "
                      f"{s.budget.steps(cell)}")  # fmt: skip
        if key == "grace_gflop" and not (math.isfinite(v) and v > 0):
            raise err(where, f"{v!r} is invalid; expected a number > 0")


def _mapping(value: Any, key: str, err) -> dict:
    if not isinstance(value, dict):
        raise err(key, f"expected a mapping; got {_kind(value)}")
    return dict(value)


def _typecheck(value: Any, t: type, key: str, err) -> Any:
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise err(key, f"{value!r} is a {_kind(value)}; expected {t.__name__}")
    return value


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )
