"""docs/architectures.md's figures: the four cells side by side, and the transformer's positions.

Usage: python scripts/architectures.py [--seeds 5] [--jobs 2] [--part cells|positions] [--smoke]

1. cells: each cell at the seed report's setting (2 layers, hidden 32, Adam lr 0.001, batch
   128; the transformer with its defaults besides: 4 heads, ff_mult 4, ALiBi), and the
   transformer as tuned for 3000 steps (the default space's second start point: 3 blocks, lr
   0.003, cosine), trained on 10-digit operands and, the seed report's hard case, on 2-digit
   ones; 3000 steps, seeds 0..4. Scored on 1000 held-out sums of 10, 100 and 1000
   digits that no training uses (seed 777000, as `adder verify`; `adder eval CKPT --digits D
   --n 1000 --seed 777000` scores the same sums), and the training compute to solve: the first
   evaluation (every 100 steps) with exact-match >= 0.999 on the run's own held-out sums.
2. positions: the transformer at its defaults with each position scheme, trained on 10-digit
   operands, seeds 0..4; scored the same way (a learned table cannot read past 10 digits).

Every run is ``adder.train.train`` on the CPU with one thread, the loop `adder train` runs: each
can be rerun alone with the ``adder train`` command the tables print. A finished run is kept in
runs/architectures/ (checkpoint and scores), and a second invocation skips it, so an interrupted
one goes on where it stopped. Then: docs/architectures/tables.md and the plots beside it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "architectures"
DOCS = ROOT / "docs" / "architectures"
DIGITS = (10, 100, 1000)
SEED_SETTING = dict(layers=2, hidden=32, lr=0.001, batch_size=128)  # the seed report's
CELLS = {  # name -> setting
    "rnn": dict(cell="rnn", **SEED_SETTING),
    "lstm": dict(cell="lstm", **SEED_SETTING),
    "gru": dict(cell="gru", **SEED_SETTING),
    # its defaults besides: 4 heads, ff_mult 4, ALiBi, the sink, cosine (the auto schedule)
    "transformer": dict(cell="transformer", **SEED_SETTING),
    "transformer-tuned": dict(
        cell="transformer", **{**SEED_SETTING, "layers": 3, "lr": 0.003}, schedule="cosine"
    ),
    # both as they were before the sink (and, at the defaults, before the auto schedule)
    "transformer-no-sink": dict(
        cell="transformer", **SEED_SETTING, schedule="constant", sink=False
    ),
    "transformer-tuned-no-sink": dict(
        cell="transformer",
        **{**SEED_SETTING, "layers": 3, "lr": 0.003},
        schedule="cosine",
        sink=False,
    ),  # fmt: skip
}
SKIP = {("transformer-tuned", "2-digit")}  # tuned for 10-digit operands; its old row has them
TASKS = {  # trained on, and the run's own held-out sums (what "solved" is measured on)
    "10-digit": dict(train_digits=10, test_digits=100, steps=3000),
    "2-digit": dict(train_digits=2, test_digits=10, steps=3000),
}
POSITIONS = ("none", "learned", "sinusoidal", "alibi", "rope")
COMMON = dict(eval_every=100, eval_size=1000, device="cpu")


def jobs(part: str, seeds: range, smoke: bool) -> list[tuple[str, dict[str, Any]]]:
    """(name, TrainConfig fields) of every run of a part."""
    out = []
    steps = {"steps": 100, "eval_every": 50, "eval_size": 100} if smoke else {}
    if part == "cells":
        for cell, setting in CELLS.items():
            for task, data in TASKS.items():
                for s in seeds if (cell, task) not in SKIP else ():
                    cfg = {**setting, **data, **COMMON, **steps, "seed": s}
                    out.append((f"cells-{cell}-{task}-s{s}", cfg))
    else:
        for pos in POSITIONS:
            for s in seeds:
                # scored during training on 100-digit sums, as in part 1, but for a learned
                # table: it cannot read them, 10-digit ones instead
                test = {"test_digits": 10} if pos == "learned" else {}
                cfg = {
                    **CELLS["transformer-no-sink"], "pos": pos, **TASKS["10-digit"], **test,
                    **COMMON, **steps, "seed": s,
                }  # fmt: skip
                out.append((positions_run(pos, s), cfg))
    return out


def positions_run(pos: str, seed: int | str) -> str:
    """ALiBi is the transformer's default: that run is part 1's, not trained twice."""
    if pos == "alibi":
        return f"cells-transformer-no-sink-10-digit-s{seed}"
    return f"positions-{pos}-s{seed}"


def run(job: tuple[str, dict[str, Any], int, Path]) -> dict[str, Any]:
    """Train one model, then score it on held-out sums of every length."""
    import torch

    from adder.config import VERIFY_SEED, TrainConfig
    from adder.data import held_out
    from adder.errors import UserError
    from adder.models import Adder, train_flops
    from adder.train import evaluate, save_checkpoint, train

    torch.set_num_threads(1)
    name, fields, n, runs = job
    cfg = TrainConfig(**fields)
    state: dict[str, Any] = {}
    t0 = time.perf_counter()
    summary = train(cfg, report=lambda m, checkpoint: state.update(checkpoint()))
    seconds = time.perf_counter() - t0
    folder = runs / name
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, folder / "checkpoint.pt")
    model = Adder(cfg.model_config())
    model.load_state_dict(state["model"])
    model.eval()
    scores: dict[str, Any] = {}
    for d in DIGITS:
        try:
            m = evaluate(model, held_out(n, d, seed=VERIFY_SEED))
            scores[str(d)] = {"exact_match": m["exact_match"], "digit_acc": m["digit_acc"]}
        except UserError as e:  # a learned position table ends at the training length
            scores[str(d)] = {"refused": str(e)}
    per_step = train_flops(cfg.model_config(), cfg.train_digits + 1) * cfg.batch_size
    solved = summary["solved_step"]
    result = {
        "name": name,
        "config": cfg.to_dict(),
        "params": summary["params"],
        "solved_step": solved,
        "flops_to_solve": None if solved is None else solved * per_step,
        "flops": summary["steps"] * per_step,
        "train_seconds": seconds,
        "last": {k: summary.get(k) for k in ("exact_match", "digit_acc", "loss", "status")},
        "held_out": scores,
    }
    (folder / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def command(cfg: dict[str, Any], name: str) -> str:
    flags = {k: v for k, v in cfg.items() if k != "device"}
    args = " ".join(
        (f"--{'' if v else 'no-'}{k}" if isinstance(v, bool) else f"--{k.replace('_', '-')} {v}")
        for k, v in flags.items()
    )
    return f"adder train {args} --wandb disabled --out runs/architectures/{name}"


# -- tables and plots ---------------------------------------------------------------------------


def load(runs: Path, pattern: str) -> list[dict[str, Any]]:
    """The results of the runs whose names match ``pattern`` (a glob: ``*`` for the seed)."""
    return [json.loads(p.read_text()) for p in sorted(runs.glob(f"{pattern}/result.json"))]


def exact(runs: list[dict[str, Any]], d: int) -> list[float]:
    return [
        r["held_out"][str(d)]["exact_match"]
        for r in runs
        if "exact_match" in r["held_out"][str(d)]
    ]


def fmt(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{statistics.fmean(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def table(groups: dict[str, list[dict[str, Any]]], label: str) -> str:
    head = " | ".join(f"{d} digits" for d in DIGITS)
    lines = [
        f"| {label} | seeds | {head} | >= 0.99 on 100 digits | solved (step) | FLOPs to solve "
        "| FLOPs spent | params |",
        "|---|---|" + "---|" * len(DIGITS) + "---|---|---|---|---|",
    ]
    for name, runs in groups.items():
        if not runs:
            continue
        cells = [fmt(exact(runs, d)) if exact(runs, d) else "refused" for d in DIGITS]
        e100 = exact(runs, 100)
        ok = f"{sum(x >= 0.99 for x in e100)} of {len(runs)}" if e100 else "-"
        steps = [r["solved_step"] for r in runs if r["solved_step"] is not None]
        solved = f"{len(steps)} of {len(runs)}" + (
            f" ({statistics.median(steps):.0f})" if steps else ""
        )
        flops = [r["flops_to_solve"] for r in runs if r["flops_to_solve"] is not None]
        f = f"{statistics.median(flops):.2e}" if flops else "-"
        spent = f"{statistics.median(r['flops'] for r in runs):.2e}"
        seeds = ",".join(str(r["config"]["seed"]) for r in runs)
        lines.append(
            f"| {name} | {seeds} | " + " | ".join(cells) + f" | {ok} | {solved} | {f} | {spent} "
            f"| {runs[0]['params']:,} |"
        )
    return "\n".join(lines)


def plot(groups: dict[str, list[dict[str, Any]]], ax, title: str) -> None:
    for name, runs in groups.items():
        xs, mean, lo, hi = [], [], [], []
        for d in DIGITS:
            e = exact(runs, d)
            if e:
                (
                    xs.append(d),
                    mean.append(statistics.fmean(e)),
                    lo.append(min(e)),
                    hi.append(max(e)),
                )
        if not xs:
            continue
        (line,) = ax.plot(xs, mean, marker="o", label=name)
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_xticks(DIGITS, [str(d) for d in DIGITS])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("operand digits (held-out sums)")
    ax.set_ylabel("exact-match")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def write_docs(runs: Path, docs: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs.mkdir(parents=True, exist_ok=True)
    md = []
    cells = {t: {c: load(runs, f"cells-{c}-{t}-s*") for c in CELLS} for t in TASKS}
    if any(any(g.values()) for g in cells.values()):
        fig, axes = plt.subplots(1, len(TASKS), figsize=(10, 4), sharey=True)
        for ax, (task, groups) in zip(axes, cells.items(), strict=True):
            plot(groups, ax, f"trained on {task} operands (mean, band: min-max over seeds)")
            md += [f"Trained on {task} operands:\n", table(groups, "cell"), ""]
        fig.tight_layout()
        fig.savefig(docs / "cells.png", dpi=120)
        plt.close(fig)
    positions = {p: load(runs, positions_run(p, "*")) for p in POSITIONS}
    if any(positions.values()):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        plot(positions, ax, "transformer, trained on 10-digit operands, by positions")
        fig.tight_layout()
        fig.savefig(docs / "positions.png", dpi=120)
        plt.close(fig)
        md += ["Transformer position schemes, trained on 10-digit operands:\n"]
        md += [table(positions, "pos"), ""]
    md += ["Every run again, alone (one per row and seed; the seed changes):\n", "```"]
    every = [job for part in ("cells", "positions") for job in jobs(part, range(1), smoke=False)]
    md += {name: command(cfg, name) for name, cfg in every}.values()  # alibi's run is part 1's
    md.append("```")
    (docs / "tables.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (default 2: the CPUs)")
    ap.add_argument("--part", choices=("cells", "positions"), action="append")
    ap.add_argument(
        "--smoke", action="store_true", help="100 steps, 1 seed, into runs/architectures-smoke"
    )
    args = ap.parse_args()
    seeds = range(1 if args.smoke else args.seeds)
    runs = RUNS.with_name("architectures-smoke") if args.smoke else RUNS
    todo = {
        name: (name, cfg, 100 if args.smoke else 1000, runs)
        for part in args.part or ("cells", "positions")
        for name, cfg in jobs(part, seeds, args.smoke)
        if not (runs / name / "result.json").is_file()
    }.values()
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for r in pool.imap_unordered(run, list(todo)):
            print(f"{r['name']}: {json.dumps(r['held_out'])} ({r['train_seconds']:.0f} s)")
    print(f"{len(todo)} runs, {time.perf_counter() - t0:.0f} s on {args.jobs} processes")
    write_docs(runs, runs if args.smoke else DOCS)


if __name__ == "__main__":
    main()
