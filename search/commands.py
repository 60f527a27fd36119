"""The search-side commands: ``adder search`` (and, later, report and verify)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adder.errors import UserError


def _number(t: type):
    def parse(text: str):
        try:
            return t(text)
        except ValueError:
            kind = "an integer" if t is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is invalid; expected {kind}") from None

    return parse


def cmd_search(args: argparse.Namespace) -> int:
    from search.space import load_space
    from search.tune import Interrupted, Options, run

    space = load_space(args.space)
    cells = None
    if args.cells is not None:
        cells = tuple(c.strip() for c in args.cells.split(",") if c.strip())
    space = space.override(
        name=args.name,
        trials=args.trials,
        cells=cells,
        max_steps=args.max_steps,
        seed=args.seed,
        time_s=args.time_budget,
        verify=False if args.no_verify else None,
    )
    opts = Options(
        warm_start=None if args.warm_start is None else Path(args.warm_start),
        results=Path(args.results),
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        resume=args.resume,
        wandb=args.wandb,
        wandb_project=args.wandb_project,
    )
    try:
        board = run(space, opts)
    except Interrupted as e:  # Ctrl-C: state saved, nothing half-written; 130 = 128 + SIGINT
        print(f"adder search: {e}", file=sys.stderr)
        return 130
    missing = [c for c in space.cells if c not in board["cells"]]
    if missing:
        print(f"adder search: no finished trial for {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from search.report import write_report

    report, plots = write_report(Path(args.folder))
    print(report)
    print("\n".join(str(p) for p in plots))
    return 0


def _digit_list(text: str) -> list[int]:
    try:
        digits = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        digits = []
    if not digits or min(digits) < 1 or max(digits) > 100_000:
        raise argparse.ArgumentTypeError(
            f"{text!r} is invalid; expected comma-separated digit counts in [1, 100000]"
        )
    return digits


def cmd_verify(args: argparse.Namespace) -> int:
    from search import verify
    from search.tune import Options

    folder = Path(args.folder)
    for flag in ("seeds", "n", "top"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag} {getattr(args, flag)} is invalid; expected an integer >= 1")
    verify.load_board(folder)  # a wrong folder stops here, before Ray starts
    opts = Options(
        results=folder.parent,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        wandb=args.wandb,
        wandb_project=args.wandb_project,
    )
    verify.run(folder, args.seeds, args.digits, args.n, opts, top=args.top)
    return 0


def _add_cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else local)")
    p.add_argument("--cpus-per-trial", type=_number(float), default=1.0, help="default: 1")
    p.add_argument(
        "--gpus-per-trial",
        type=_number(float),
        default=None,
        help="fraction of a GPU per trial (default: 0.25 where the cluster has GPUs, else 0)",
    )
    p.add_argument("--max-concurrent", type=_number(int), help="trials at once (default: fits)")
    p.add_argument("--wandb", default="auto", help="auto|online|offline|disabled (default: auto)")
    p.add_argument("--wandb-project", default="adder-search", help="W&B project")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "search",
        help="search hyperparameters per cell (Ray Tune + Optuna TPE + ASHA + W&B)",
        description="Search a YAML space: one Optuna study and one ASHA per cell, in one Ray "
        "Tune experiment. Writes results/<name>/leaderboard.{json,md}, trials.csv, optuna.db.",
    )
    s.add_argument("space", help="search space YAML (see spaces/)")
    s.add_argument("--name", help="search name (default: the space's name)")
    s.add_argument("--trials", type=_number(int), help="trials per cell")
    s.add_argument("--cells", help="comma-separated subset of the space's cells, e.g. rnn,gru")
    s.add_argument("--max-steps", type=_number(int), help="training steps per trial at most")
    s.add_argument("--seed", type=_number(int), help="search seed (TPE sampling)")
    s.add_argument("--results", default="results", help="results root (default: results)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted search")
    s.add_argument(
        "--time-budget",
        type=_number(float),
        metavar="SECONDS",
        help="bound the whole search, verification included (default: the space's "
        "budget.time_s, else none); what finished is written, marked partial",
    )
    s.add_argument(
        "--warm-start",
        metavar="RESULTS_DIR",
        help="add a finished search's trials (RESULTS/NAME) to each cell's new study; its "
        "objective, parameters and ranges must be this space's",
    )
    s.add_argument(
        "--no-verify", action="store_true", help="skip the space's fresh-seed verification"
    )
    _add_cluster_flags(s)
    s.set_defaults(fn=cmd_search)

    r = sub.add_parser(
        "report",
        help="write report.md and PNG plots for a search's results folder",
        description="Read a search's results folder (finished or interrupted) and write "
        "report.md and PNG plots beside it: learning curves, the objective against each "
        "parameter, parameter importances, what ASHA stopped, the leaderboard and compute.",
    )
    r.add_argument("folder", help="a search's results folder, RESULTS/NAME (e.g. results/default)")
    r.set_defaults(fn=cmd_report)

    v = sub.add_parser(
        "verify",
        help="retrain each cell's best setting with fresh seeds and score every length",
        description="Retrain each cell's best setting from a search's leaderboard with fresh "
        "seeds (in parallel on Ray, logged to W&B), evaluate each on fresh held-out sums of every "
        "length, and write verify.json and verify.md beside the leaderboard.",
    )
    v.add_argument("folder", help="a finished search's results folder, RESULTS/NAME")
    v.add_argument(
        "--seeds", type=_number(int), default=5, help="fresh seeds per cell (default 5)"
    )
    v.add_argument(
        "--digits",
        type=_digit_list,
        default=[10, 100, 1000],
        help="operand lengths to score (default: 10,100,1000)",
    )
    v.add_argument("--n", type=_number(int), default=1000, help="sums per length (default 1000)")
    v.add_argument(
        "--top",
        type=_number(int),
        default=1,
        help="verify each cell's best K settings and keep the one fresh seeds reproduce best "
        "(default 1: the leaderboard's best)",
    )
    _add_cluster_flags(v)
    v.set_defaults(fn=cmd_verify)
