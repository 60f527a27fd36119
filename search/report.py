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
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from adder.errors import UserError  # noqa: E402
from search.results import COLUMNS, TrialRecord, leaderboard, load_trials, table_rows  # noqa: E402
from search.tune import EXPERIMENT  # noqa: E402

TOP = 3  # best trials per cell in the learning curves
STATUSES = ("completed", "stopped", "diverged", "errored", "running")
STYLE = {  # status -> (colour, marker)
    "completed": ("tab:green", "o"),
    "stopped": ("tab:orange", "s"),
    "diverged": ("tab:red", "X"),
    "errored": ("black", "v"),
    "running": ("tab:blue", "^"),
}
LABEL = {
    "step": "training step",
    "exact_match": "exact-match\n(fraction of sums with every digit right)",
    "val_loss": "validation loss\n(cross-entropy per digit)",
    "hidden": "hidden units per layer",
    "layers": "stacked layers",
    "lr": "peak learning rate",
    "batch_size": "batch size (sums per step)",
}
# Optuna 5's default evaluator: unlike fANOVA, it needs no scikit-learn and weighs conditional
# parameters (nonlinearity, rnn only) too.
EVALUATOR = optuna.importance.PedAnovaImportanceEvaluator
CURVE_KEYS = ("step", "exact_match", "val_loss", "digit_acc", "train_loss", "time_total_s")


class Scale(NamedTuple):
    """How a parameter was searched: "log", "linear" or "choice"; its range where known."""

    kind: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None


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
        rows.append({k: _num(r.get(k)) for k in (*CURVE_KEYS, "timestamp")})
    return [r for r in rows if r["step"] is not None]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _started(curve: list[dict[str, float | None]]) -> float:
    """When a trial started: its first report's time less the time it had run; never: last."""
    first = curve[0] if curve else {}
    if first.get("timestamp") is None or first.get("time_total_s") is None:
        return math.inf
    return first["timestamp"] - first["time_total_s"]


def load_studies(folder: Path, name: str, cells: list[str]) -> dict[str, optuna.Study]:
    """The per-cell studies of ``optuna.db`` (``<name>-<cell>``); {} where there is none yet."""
    db = folder / "optuna.db"
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


# -- plot helpers ---------------------------------------------------------------------------------


def _figure(rows: int, cols: int, w: float, h: float) -> tuple[plt.Figure, Any]:
    return plt.subplots(
        rows, cols, figsize=(w * cols, h * rows), squeeze=False, layout="constrained"
    )


def _save(fig: plt.Figure, path: Path, title: str) -> Path:
    fig.suptitle(title, fontsize=13)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _log(ax: plt.Axes, which: str, limits: tuple[float, float] | None = None) -> None:
    """A log axis labelled 0.001, 0.002, 0.005, ... rather than 2x10^-3, as densely as fits."""
    getattr(ax, f"set_{which}scale")("log")
    if limits:
        getattr(ax, f"set_{which}lim")(limits)
    lo, hi = getattr(ax, f"get_{which}lim")()
    decades = math.log10(hi / lo)
    wide = 1.8 if which == "x" else 3.0  # x labels are wider than they are tall
    axis = getattr(ax, f"{which}axis")
    if decades < 0.7:  # within one decade a log locator has too few ticks to read
        axis.set_major_locator(MaxNLocator(nbins=4))
    else:
        subs = (1.0, 2.0, 3.0, 5.0) if decades < 1.5 else (1.0, 2.0, 5.0)
        axis.set_major_locator(LogLocator(subs=subs if decades < wide else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _status_legend(fig: plt.Figure, records: list[TrialRecord]) -> None:
    seen = {r.status for r in records}
    handles = [
        plt.Line2D([], [], ls="", color=STYLE[s][0], marker=STYLE[s][1], markersize=8, label=s)
        for s in STATUSES
        if s in seen
    ]
    fig.legend(handles=handles, title="trial status", loc="outside lower center", ncols=5)


def _short(r: TrialRecord) -> str:
    c = r.config
    return (
        f"{r.trial_id}: h={c.get('hidden')} l={c.get('layers')} lr={c.get('lr', 0):.2g} "
        f"bs={c.get('batch_size')} ({r.status})"
    )


# -- the plots ------------------------------------------------------------------------------------


def plot_curves(path: Path, by_cell: dict[str, list[TrialRecord]], curves: dict) -> Path:
    """Test exact-match and val loss against step: each cell's TOP best trials, others in grey."""
    fig, axes = _figure(2, len(by_cell), 5.5, 4)
    for j, (cell, records) in enumerate(by_cell.items()):
        ranked = sorted(records, key=TrialRecord.rank_key)
        for row, key in enumerate(("exact_match", "val_loss")):
            ax = axes[row, j]
            for i, r in enumerate(ranked):
                pts = [(c["step"], c[key]) for c in curves[r.trial_id] if c[key] is not None]
                top = i < TOP
                ax.plot(
                    *zip(*pts, strict=True) if pts else ([], []),
                    color=f"C{i}" if top else "0.75",
                    lw=2 if top else 0.8,
                    marker="." if top else None,
                    zorder=3 if top else 1,
                    label=_short(r) if top else "other trials",
                )
            ax.set(xlabel=LABEL["step"], ylabel=LABEL[key], xlim=(0, None))
            ax.grid(alpha=0.3)
        axes[0, j].set(title=f"{cell}: test exact-match", ylim=(-0.03, 1.03))
        axes[1, j].set(title=f"{cell}: validation loss")
        _log(axes[1, j], "y")
        handles, labels = axes[1, j].get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))  # one "other trials"
        axes[1, j].legend(
            unique.values(),
            unique.keys(),
            fontsize=8,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.2),
        )  # below the plot: curves fill the corners
    return _save(fig, path, f"Learning curves of the {TOP} best trials per cell")


def plot_params(path: Path, cell: str, records: list[TrialRecord], scales: dict) -> Path:
    """Each trial's last val loss and exact-match against each searched parameter of one cell."""
    names = sorted(scales)
    fig, axes = _figure(2, len(names), 3.6, 3.4)
    for j, p in enumerate(names):
        scale = scales[p]
        choices = sorted({*scale.choices, *(r.config.get(p) for r in records)} - {None}, key=str)
        for row, key in enumerate(("val_loss", "exact_match")):
            ax = axes[row, j]
            for k, r in enumerate(records):
                x, y = r.config.get(p), _num(r.metrics.get(key))
                if x is None or y is None:
                    continue
                if scale.kind == "choice":  # spread points that share a choice a little
                    x = choices.index(x) + 0.06 * ((k % 5) - 2)
                color, marker = STYLE[r.status]
                ax.scatter(x, y, color=color, marker=marker, s=40, alpha=0.8)
            if scale.kind == "choice":
                ax.set_xticks(range(len(choices)), [str(c) for c in choices])
                ax.set_xlim(-0.5, len(choices) - 0.5)
            elif scale.kind == "log":  # the searched range, to show how it was covered
                known = scale.low is not None
                _log(ax, "x", (scale.low / 1.15, scale.high * 1.15) if known else None)
            else:
                if scale.low is not None:
                    margin = 0.05 * (scale.high - scale.low)
                    ax.set_xlim(scale.low - margin, scale.high + margin)
                if all(isinstance(r.config.get(p), int) for r in records):
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set(xlabel=f"{LABEL.get(p, p)} [{scale.kind}]", ylabel=LABEL[key] if j == 0 else "")
            ax.grid(alpha=0.3)
        _log(axes[0, j], "y")
        axes[0, j].set(title=f"val loss vs {p}")
        axes[1, j].set(title=f"exact-match vs {p}", ylim=(-0.03, 1.03))
    _status_legend(fig, records)
    return _save(
        fig, path, f"{cell}: each trial's last reported value against each searched parameter"
    )


def plot_importances(path: Path, imps: dict[str, dict[str, float]]) -> Path:
    fig, axes = _figure(1, len(imps), 4.5, 3.5)
    for ax, (cell, imp) in zip(axes[0], imps.items(), strict=True):
        names = list(imp)[::-1]  # most important on top
        bars = ax.barh(names, [imp[n] for n in names], color="tab:purple")
        ax.bar_label(bars, fmt="%.2f", padding=3)
        ax.set(title=cell, xlabel="importance (share of the total)", xlim=(0, 1.15))
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set(ylabel="searched parameter")
    return _save(fig, path, "Parameter importances for val_loss, per cell (Optuna, PED-ANOVA)")


def plot_asha(path: Path, by_cell: dict[str, list[TrialRecord]]) -> Path:
    """Where each trial stopped: steps run in launch order, and steps run against final loss."""
    fig, axes = _figure(2, len(by_cell), 5, 3.6)
    most = max(r.steps for rs in by_cell.values() for r in rs) or 1
    for j, (cell, records) in enumerate(by_cell.items()):
        top, bottom = axes[0, j], axes[1, j]
        top.bar(
            range(1, len(records) + 1),
            [r.steps for r in records],
            color=[STYLE[r.status][0] for r in records],
        )
        top.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.set(
            title=f"{cell}: steps each trial ran", xlabel="trial of this cell, in launch order"
        )
        for r in records:
            y = _num(r.metrics.get("val_loss"))
            if y is not None:
                bottom.scatter(r.steps, y, color=STYLE[r.status][0], marker=STYLE[r.status][1])
        _log(bottom, "y")
        bottom.set(title=f"{cell}: last val loss against steps run", xlim=(0, most * 1.05))
        bottom.set(xlabel=f"{LABEL['step']}s run", ylabel=LABEL["val_loss"])
        top.set(ylabel=f"{LABEL['step']}s run", ylim=(0, most * 1.05))
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    _status_legend(fig, [r for rs in by_cell.values() for r in rs])
    return _save(fig, path, "What ASHA did: where each trial was stopped")


# -- report.md ------------------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows), ""]


def _verify_section(folder: Path) -> list[str]:
    path = folder / "verify.json"
    if not path.is_file():
        return ["Not verified yet: run adder verify."]
    rows, seeds = [], []
    for cell, v in json.loads(path.read_text()).get("cells", {}).items():
        seeds.append(f"- {cell}: seeds {v.get('seeds', [])}")
        for digits, d in sorted(v.get("digits", {}).items(), key=lambda kv: int(kv[0])):
            rows.append([cell, digits, *(d.get(k) for k in ("mean", "min", "solved_frac", "n"))])
    header = ["cell", "digits", "mean exact-match", "min exact-match", "solved fraction", "n"]
    return ["From verify.json:", "", *_table(header, rows), *seeds]


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


def load_search(folder: Path) -> Search:
    folder = find_search(folder)
    records = load_trials(folder)
    if not records:
        raise UserError(f"{str(folder)!r} holds a search with no trials yet; expected one or more")
    saved_path = folder / "leaderboard.json"
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else None
    name = saved["name"] if saved else folder.name
    curves = {r.trial_id: read_curve(r.path) for r in records}
    records.sort(key=lambda r: _started(curves[r.trial_id]))  # stable: unstarted ones by id
    cells = list(dict.fromkeys(r.cell for r in records))  # in the order they started
    if saved:  # the space's order
        cells.sort(key=lambda c: [*saved["cells"], c].index(c))
    by_cell = {c: [r for r in records if r.cell == c] for c in cells}
    board = leaderboard(name, cells, records)
    return Search(folder, name, by_cell, curves, board, saved, load_studies(folder, name, cells))


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
    md += ["Best = highest test exact-match, then fewest samples to solve, then fewest params."]
    md += ["", "## Trials and compute per cell", ""]
    rows = [[c, *(sum(r.status == k for r in rs) for k in STATUSES),
             s.board["compute"][c]["training_steps"], s.board["compute"][c]["trial_seconds"]]
            for c, rs in s.by_cell.items()]  # fmt: skip
    return md + _table(["cell", *STATUSES, "training steps", "trial-seconds"], rows), []


def _curves(s: Search) -> Section:
    plot = plot_curves(s.folder / "curves.png", s.by_cell, s.curves)
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
        plots.append(plot_params(s.folder / f"params-{c}.png", c, records, scales))
        src = "optuna.db" if c in s.studies else "inferred from the trials"
        kinds = ", ".join(f"{k} {v.kind}" for k, v in sorted(scales.items()))
        md += [f"![{c}]({plots[-1].name})", "", f"{c}: searched as ({src}): {kinds}", ""]
    return md, plots


def _importances(s: Search) -> Section:
    md, plots = ["## Parameter importances", ""], []
    found = {c: importances(s.studies.get(c)) for c in s.by_cell}
    imps = {c: imp for c, (imp, _) in found.items() if imp is not None}
    if imps:
        plots.append(plot_importances(s.folder / "importances.png", imps))
        params = sorted({p for imp in imps.values() for p in imp})
        md += ["How much each parameter decides whether a trial lands in its cell's best 10% by "
               "val_loss (Optuna's PED-ANOVA; ASHA-stopped trials count with their value when "
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
    md += ["## Verification", "", *_verify_section(s.folder)]
    out = s.folder / "report.md"
    out.write_text("\n".join(md).rstrip() + "\n")
    return out, plots
