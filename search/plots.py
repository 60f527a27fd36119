"""The plots of ``adder report``: readable PNGs (titled, labelled axes with units, legends, log
scales where a parameter was searched on one) from the trial records of a search."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from search.results import TrialRecord  # noqa: E402

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
    "solved_gflop": "training GFLOP to solve\n(unsolved: marked at the top)",
    "hidden": "hidden units per layer",
    "layers": "stacked layers",
    "lr": "peak learning rate",
    "batch_size": "batch size (sums per step)",
}


class Scale(NamedTuple):
    """How a parameter was searched: "log", "linear" or "choice"; its range where known."""

    kind: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None


def num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


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


def plot_curves(
    path: Path, by_cell: dict[str, list[TrialRecord]], curves: dict, metric: str, mode: str
) -> Path:
    """Test exact-match and val loss against step: each cell's TOP best trials (by the search's
    objective), others in grey."""
    fig, axes = _figure(2, len(by_cell), 5.5, 4)
    for j, (cell, records) in enumerate(by_cell.items()):
        ranked = sorted(records, key=lambda r: r.rank_key(metric, mode))
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


def plot_params(
    path: Path, cell: str, records: list[TrialRecord], scales: dict, metric: str = "val_loss"
) -> Path:
    """Each trial's objective and exact-match against each searched parameter of one cell.
    Under ``cost_to_solve`` the objective is drawn as GFLOP to solve, on a log axis, with the
    trials that did not solve marked along the top."""
    key0 = "solved_gflop" if metric == "cost_to_solve" else metric
    solved = [num(r.metrics.get("solved_gflop")) for r in records]
    top = max((g for g in solved if g is not None), default=1.0) * 2
    names = sorted(scales)
    fig, axes = _figure(2, len(names), 3.6, 3.4)
    for j, p in enumerate(names):
        scale = scales[p]
        choices = sorted(
            {*scale.choices, *(r.config.get(p) for r in records)} - {None},
            key=lambda c: (
                not isinstance(c, (int, float)),
                c if isinstance(c, (int, float)) else 0,
                str(c),
            ),
        )
        for row, key in enumerate((key0, "exact_match")):
            ax = axes[row, j]
            for k, r in enumerate(records):
                x, y = r.config.get(p), num(r.metrics.get(key))
                if key == "solved_gflop" and y is None:
                    y = top  # not solved: along the top, above every solver
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
            ylabel = LABEL.get(key, key) if j == 0 else ""
            ax.set(xlabel=f"{LABEL.get(p, p)} [{scale.kind}]", ylabel=ylabel)
            ax.grid(alpha=0.3)
        if key0 in ("solved_gflop", "val_loss", "iid_val_loss"):
            _log(axes[0, j], "y")
        if key0 == "solved_gflop":
            axes[0, j].axhline(top, color="0.6", lw=0.8, ls=":")
        axes[0, j].set(title=f"{key0.replace('_', ' ')} vs {p}")
        axes[1, j].set(title=f"exact-match vs {p}", ylim=(-0.03, 1.03))
    _status_legend(fig, records)
    return _save(
        fig, path, f"{cell}: each trial's last reported value against each searched parameter"
    )


def plot_importances(
    path: Path, imps: dict[str, dict[str, float]], metric: str = "val_loss"
) -> Path:
    fig, axes = _figure(1, len(imps), 4.5, 3.5)
    for ax, (cell, imp) in zip(axes[0], imps.items(), strict=True):
        names = list(imp)[::-1]  # most important on top
        bars = ax.barh(names, [imp[n] for n in names], color="tab:purple")
        ax.bar_label(bars, fmt="%.2f", padding=3)
        ax.set(title=cell, xlabel="importance (share of the total)", xlim=(0, 1.15))
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set(ylabel="searched parameter")
    return _save(fig, path, f"Parameter importances for {metric}, per cell (Optuna, PED-ANOVA)")


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
            y = num(r.metrics.get("val_loss"))
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
