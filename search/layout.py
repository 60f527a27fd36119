"""The names of what a results folder holds, ``<results>/<name>/``: one place, read by every
module that writes or reads a search (so that none of them imports another for a file name)."""

from __future__ import annotations

EXPERIMENT = "tune"  # Tune's experiment: trial folders and checkpoints, the state --resume reads
VERIFY_EXPERIMENT = "verify"  # adder verify's own Tune experiment, redone on every call
LEADERBOARD_JSON = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"
TRIALS_CSV = "trials.csv"
OPTUNA_DB = "optuna.db"  # one Optuna study per cell, "<name>-<cell>"
VERIFY_JSON = "verify.json"
VERIFY_MD = "verify.md"
REPORT_MD = "report.md"
SPACE_JSON = "space.json"  # the space as the search ran it, written when it starts
WANDB = "wandb"  # offline W&B runs, for `wandb sync`
