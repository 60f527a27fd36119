"""``adder report``: a search's results folder -> ``report.md`` and PNG plots beside it.

It reads the folder alone (Tune's state, each trial's ``result.json``, ``optuna.db``,
``leaderboard.json``, ``verify.json``), so it works on a finished search, an interrupted one
(trials still RUNNING, no ``optuna.db`` yet) and one copied off a cluster.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from adder.errors import UserError
from search.layout import (
    EXPERIMENT,
    LEADERBOARD_JSON,
    OPTUNA_DB,
    REPORT_MD,
    SPACE_JSON,
    VERIFY_JSON,
)
from search.plots import (
    STATUSES,
    TOP,
    Scale,
    fmt,
    num,
    plot_asha,
    plot_curves,
    plot_importances,
    plot_params,
)
from search.results import (
    COLUMNS,
    TrialRecord,
    leaderboard,
    load_trials,
    table_rows,
    verify_lines,
)

# Optuna 5's default evaluator: unlike fANOVA, it needs no scikit-learn and weighs conditional
# parameters (nonlinearity, rnn only) too.
EVALUATOR = optuna.importance.PedAnovaImportanceEvaluator
CURVE_KEYS = ("step", "exact_match", "val_loss", "digit_acc", "train_loss", "time_total_s")


# -- reading the folder ---------------------------------------------------------------------------


def find_search(folder: Path) -> Path:
    """``folder`` if it holds a search (``tune/experiment_state-*.json``), else a UserError."""
    if not folder.is_dir():
        raise UserError(f"{str(folder)!r} does not exist; expected a search folder RESULTS/NAME")
    if not any((folder / EXPERIMENT).glob("experiment_state*.json")):
        inside = sorted({p.parent.parent.name for p in folder.glob("*/tune/experiment_state*")})
        hint = f" (it holds the searches {', '.join(inside)})" if inside else ""
        raise UserError(
            f"{str(folder)!r} holds no search{hint}; expected a folder RESULTS/NAME "
            f"with {EXPERIMENT}/experiment_state-*.json, as adder search writes"
        )
    return folder.resolve()


def read_curve(trial_path: str) -> list[dict[str, float | None]]:
    """One dict per evaluation from a trial's ``result.json``; a torn last line is skipped."""
    path = Path(trial_path) / "result.json"
    rows = []
    for line in path.read_text().splitlines() if trial_path and path.is_file() else []:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows.append({k: num(r.get(k)) for k in (*CURVE_KEYS, "timestamp")})
    return [r for r in rows if r["step"] is not None]


def _started(curve: list[dict[str, float | None]]) -> float:
    """When a trial started: its first report's time less the time it had run; never: last."""
    first = curve[0] if curve else {}
    if first.get("timestamp") is None or first.get("time_total_s") is None:
        return math.inf
    return first["timestamp"] - first["time_total_s"]


def load_studies(folder: Path, name: str, cells: list[str]) -> dict[str, optuna.Study]:
    """The per-cell studies of ``optuna.db`` (``<name>-<cell>``); {} where there is none yet."""
    db = folder / OPTUNA_DB
    if not db.is_file():  # load_study would create an empty database
        return {}
    url = f"sqlite:///{db}"
    names = set(optuna.get_all_study_names(url))
    return {c: optuna.load_study(study_name=f"{name}-{c}", storage=url) for c in cells
            if f"{name}-{c}" in names}  # fmt: skip


def param_scales(records: list[TrialRecord], study: optuna.Study | None) -> dict[str, Scale]:
    """Each searched parameter of one cell: from its Optuna study, else inferred from the trials
    (the parameters that vary; log where all are > 0 and max/min >= 20)."""
    if study is not None:
        dists = {k: d for t in study.trials for k, d in t.distributions.items()}
        return {
            k: Scale("choice", tuple(d.choices))
            if isinstance(d, optuna.distributions.CategoricalDistribution)
            else Scale("log" if d.log else "linear", low=d.low, high=d.high)
            for k, d in dists.items()
        }
    scales = {}
    for k in records[0].config if records else ():
        values = {r.config.get(k) for r in records}
        if len(values) < 2:
            continue  # not searched, or not visibly so
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            scales[k] = Scale("choice", tuple(values))
        elif min(values) > 0 and max(values) / min(values) >= 20:
            scales[k] = Scale("log")
        else:
            scales[k] = Scale("linear")
    return scales


def importances(study: optuna.Study | None) -> tuple[dict[str, float] | None, str]:
    """Parameter importances of one cell's study for its objective, or None and why not."""
    if study is None:
        return None, "no optuna.db for this cell yet (adder search writes it when it finishes)"
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2:
        return None, f"{len(done)} completed trial(s) in its study; importances need 2 or more"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            imp = optuna.importance.get_param_importances(study, evaluator=EVALUATOR())
        except (ValueError, RuntimeError) as e:  # other evaluators: too few trials, no variance
            return None, f"not computed: {e}"
    # Where the trials cannot tell parameters apart Optuna warns and returns equal importances.
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if said or not imp:
        return None, "not computed: " + (" ".join(said) or "no parameters")
    return imp, ""


# -- report.md ------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(fmt(v) for v in row) + " |" for row in rows), ""]


def _verify_section(s: Search) -> list[str]:
    """The search's own verification (leaderboard.json), then adder verify's (verify.json)."""
    if s.saved is None:
        md = ["The search has not finished: its verification (where its space asks for one) "
              "comes with its leaderboard."]  # fmt: skip
    else:
        md = verify_lines(s.saved) or ["The search ran no verification (its space has no "
                                       "`verify:`)."]  # fmt: skip
    path = s.folder / VERIFY_JSON
    if not path.is_file():
        return [*md, "", "No `adder verify` run yet (more seeds or lengths after the fact)."]
    rows, seeds = [], []
    for cell, v in json.loads(path.read_text()).get("cells", {}).items():
        seeds.append(f"- {cell}: seeds {v.get('seeds', [])}")
        for digits, d in sorted(v.get("digits", {}).items(), key=lambda kv: int(kv[0])):
            rows.append([cell, digits, *(d.get(k) for k in ("mean", "min", "solved", "n"))])
    header = ["cell", "digits", "mean exact-match", "min exact-match", "seeds solved", "n"]
    return [*md, "", "From adder verify (verify.json):", "", *_table(header, rows), *seeds]


def _stops(records: list[TrialRecord]) -> str:
    at = Counter(r.steps for r in records if r.status == "stopped")
    stops = ", ".join(f"step {s} ({n} trial{'s' * (n > 1)})" for s, n in sorted(at.items()))
    return f"stopped at {stops}" if stops else "none stopped"


@dataclass
class Search:
    """Everything the report reads from one search folder."""

    folder: Path
    name: str
    by_cell: dict[str, list[TrialRecord]]  # cells and their trials in launch order
    curves: dict[str, list[dict[str, float | None]]]  # trial id -> one row per evaluation
    board: dict[str, Any]  # the leaderboard as of now, from Tune's state
    saved: dict[str, Any] | None  # leaderboard.json, written when the search finished
    studies: dict[str, optuna.Study]  # cell -> its study in optuna.db, where there is one
    metric: str  # the search's objective
    mode: str


def objective(folder: Path, saved: dict[str, Any] | None) -> tuple[str, str]:
    """The search's objective: from its leaderboard, else the space it saved when it started
    (an interrupted search), else val_loss (a folder from before either existed)."""
    for doc in (saved, _read(folder / SPACE_JSON)):
        if doc and "objective" in doc:
            return doc["objective"]["metric"], doc["objective"]["mode"]
    return "val_loss", "min"


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_search(folder: Path) -> Search:
    folder = find_search(folder)
    records = load_trials(folder)
    if not records:
        raise UserError(f"{str(folder)!r} holds a search with no trials yet; expected one or more")
    saved = _read(folder / LEADERBOARD_JSON)
    name = saved["name"] if saved else folder.name
    metric, mode = objective(folder, saved)
    verify_runs = [r for r in records if r.verify_of is not None]
    records = [r for r in records if r.verify_of is None]
    curves = {r.trial_id: read_curve(r.path) for r in records}
    records.sort(key=lambda r: _started(curves[r.trial_id]))  # stable: unstarted ones by id
    cells = list(dict.fromkeys(r.cell for r in records))  # in the order they started
    if saved:  # the space's order
        cells.sort(key=lambda c: [*saved["cells"], c].index(c))
    by_cell = {c: [r for r in records if r.cell == c] for c in cells}
    board = leaderboard(name, cells, records + verify_runs, metric, mode)
    studies = load_studies(folder, name, cells)
    return Search(folder, name, by_cell, curves, board, saved, studies, metric, mode)


Section = tuple[list[str], list[Path]]  # markdown lines, plots written


def _summary(s: Search) -> Section:
    t, cells = s.board["trials"], list(s.by_cell)
    md = [f"# Search report: {s.name}", "", f"Folder: `{s.folder}`", ""]
    md.append(f"{t['total']} trials in {len(cells)} cells ({', '.join(cells)}): "
              + ", ".join(f"{t[k]} {k}" for k in STATUSES) + ".")  # fmt: skip
    if t["running"]:
        md += ["", f"**Not finished**: {t['running']} trial(s) still running or interrupted."]
    source = "leaderboard.json" if s.saved else "from Tune's state: no leaderboard.json yet"
    md += ["", f"## Leaderboard ({source})", ""]
    md += _table(list(COLUMNS), table_rows(s.saved or s.board))
    md += [
        f"Search rank = by the objective, {s.metric} ({s.mode}), then fewer parameters; the "
        "answer per cell is the winner of its verification where there is one (below)."
    ]
    md += ["", "## Trials and compute per cell", ""]
    rows = []
    for c, rs in s.by_cell.items():
        cost = s.board["compute"][c]
        rows.append([c, *(sum(r.status == k for r in rs) for k in STATUSES),
                     cost["search"]["gflop"], cost["search"]["trial_seconds"],
                     cost["verify"]["trials"], cost["verify"]["gflop"],
                     cost["verify"]["trial_seconds"]])  # fmt: skip
    header = ["cell", *STATUSES, "search GFLOP", "search trial-s", "verification runs",
              "verification GFLOP", "verification trial-s"]  # fmt: skip
    return md + _table(header, rows), []


def _curves(s: Search) -> Section:
    plot = plot_curves(s.folder / "curves.png", s.by_cell, s.curves, s.metric, s.mode)
    return [
        "## Learning curves", "", f"![learning curves]({plot.name})", "",
        f"Each cell's {TOP} best trials (leaderboard order) on the test sums; others in grey.", "",
    ], [plot]  # fmt: skip


def _params(s: Search) -> Section:
    md = ["## The objective against each searched parameter", ""]
    md += ["Stopped trials show their value at the step where ASHA stopped them.", ""]
    plots = []
    for c, records in s.by_cell.items():
        scales = param_scales(records, s.studies.get(c))
        if not scales:
            md += [f"- {c}: no parameter took two values; nothing to plot.", ""]
            continue
        plots.append(plot_params(s.folder / f"params-{c}.png", c, records, scales, s.metric))
        src = "optuna.db" if c in s.studies else "inferred from the trials"
        kinds = ", ".join(f"{k} {v.kind}" for k, v in sorted(scales.items()))
        md += [f"![{c}]({plots[-1].name})", "", f"{c}: searched as ({src}): {kinds}", ""]
    return md, plots


def _importances(s: Search) -> Section:
    md, plots = ["## Parameter importances", ""], []
    found = {c: importances(s.studies.get(c)) for c in s.by_cell}
    imps = {c: imp for c, (imp, _) in found.items() if imp is not None}
    if imps:
        plots.append(plot_importances(s.folder / "importances.png", imps, s.metric))
        params = sorted({p for imp in imps.values() for p in imp})
        md += ["How much each parameter decides whether a trial lands in its cell's best 10% by "
               f"{s.metric} (Optuna's PED-ANOVA; ASHA-stopped trials count with their value when "
               "stopped).", ""]  # fmt: skip
        md += _table(
            ["parameter", *imps],
            [[p, *(round(i.get(p, math.nan), 3) for i in imps.values())] for p in params],
        )
        md += [f"![parameter importances]({plots[-1].name})", ""]
    return md + [f"- {c}: {why}" for c, (imp, why) in found.items() if imp is None] + [""], plots


def _asha(s: Search) -> Section:
    plot = plot_asha(s.folder / "asha.png", s.by_cell)
    md = ["## What ASHA did", "", f"![ASHA]({plot.name})", ""]
    return md + [f"- {c}: {_stops(rs)}" for c, rs in s.by_cell.items()] + [""], [plot]


def write_report(folder: Path) -> tuple[Path, list[Path]]:
    """Write ``report.md`` and its plots into the search folder ``folder``; return their paths."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = load_search(folder)
    md, plots = [], []
    for section in (_summary, _curves, _params, _importances, _asha):
        lines, figs = section(s)
        md, plots = md + lines, plots + figs
    md += ["## Verification", "", *_verify_section(s)]
    out = s.folder / REPORT_MD
    out.write_text("\n".join(md).rstrip() + "\n")
    return out, plots
