"""The tuned transformer at 1000 digits: more steps, and training pairs that add to 9.

Usage: python scripts/transformer_carries.py [--seeds 20000,20001] [--runs steps-3000,nines-0.2]

The default space's transformer answer (3 blocks of 32, lr 0.003, cosine, ALiBi, the sink)
adds 100-digit sums and misses 1000-digit ones by a sum or two in 1000, each a carry handed on
through a run of digit pairs adding to 9 (scripts/carry_errors.py; docs/architectures.md).
Runs, each ``adder.train.train`` on the CPU with one thread, on the seeds given (the race's
first fresh seeds by default), then scored on fresh sums (seed 777001, ``adder eval CKPT
--digits D --n 1000 --seed 777001``; and 2000 1000-digit sums at seed 777002):

- ``steps-3000``, ``steps-6000``: under the search's criterion (an evaluation every 50 steps,
  every one of 1000 held-out 100-digit sums right 4 times in a row, then every one of 1000
  1000-digit sums), stopping when solved, up to that many steps;
- ``plain``: 3000 steps, no criterion (``adder train``'s evaluation every 500 steps);
- ``nines-0.2``, ``nines-0.5``: the same with that share of training digit pairs drawn to add
  to 9 (``--nines``);
- ``batch-256``, ``hidden-64``: ``plain`` with twice the sums per step, or twice the width.

Results go to runs/transformer-carries/ (one JSON per run; a finished run is not trained again).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "runs" / "transformer-carries"
SETTING = dict(cell="transformer", layers=3, hidden=32, lr=0.003, batch_size=128,
               schedule="cosine", train_digits=10, test_digits=100, device="cpu")  # fmt: skip
CRITERION = dict(eval_every=50, eval_size=1000, solve_exact=1.0, solve_patience=4,
                 confirm_digits=1000, confirm_size=1000, confirm_exact=1.0,
                 stop_when_solved=True)  # fmt: skip
RUNS: dict[str, dict[str, Any]] = {
    "steps-3000": {**CRITERION, "steps": 3000},
    "steps-6000": {**CRITERION, "steps": 6000},
    "plain": {"steps": 3000, "eval_every": 500},
    "nines-0.2": {"steps": 3000, "eval_every": 500, "nines": 0.2},
    "nines-0.5": {"steps": 3000, "eval_every": 500, "nines": 0.5},
    "batch-256": {"steps": 3000, "eval_every": 500, "batch_size": 256},
    "hidden-64": {"steps": 3000, "eval_every": 500, "hidden": 64},
}


def run(job: tuple[str, int]) -> dict[str, Any]:
    name, seed = job
    path = OUT / f"{name}-s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from fresh_seeds import train_to_stop  # scripts/, this script's folder

    from adder.config import VERIFY_SEED, TrainConfig
    from adder.data import held_out
    from adder.train import evaluate, save_checkpoint

    cfg = TrainConfig(**{**SETTING, **RUNS[name], "seed": seed})
    summary, state, model, seconds = train_to_stop(cfg)
    scores = {str(d): evaluate(model, held_out(1000, d, seed=VERIFY_SEED + 1))["exact_match"]
              for d in (100, 1000)}  # fmt: skip
    scores["1000 (2000 sums, seed 777002)"] = evaluate(
        model, held_out(2000, 1000, seed=VERIFY_SEED + 2)
    )["exact_match"]
    result = {"run": name, "seed": seed, "steps": summary["steps"],
              "solved_step": summary["solved_step"], "train_seconds": seconds,
              "exact_match": scores}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    save_checkpoint(state, OUT / f"{name}-s{seed}.pt")
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="20000,20001")
    ap.add_argument("--runs", default=",".join(RUNS), help=",".join(RUNS))
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    jobs = [(r, int(s)) for s in args.seeds.split(",") for r in args.runs.split(",")]
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        results = pool.map(run, jobs)
    print("| run | seed | steps | solved at | " + " | ".join(results[0]["exact_match"]) + " |")
    print("|---|---|---|---|" + "---|" * len(results[0]["exact_match"]))
    for r in results:
        em = " | ".join(f"{v:.4f}" for v in r["exact_match"].values())
        print(f"| {r['run']} | {r['seed']} | {r['steps']} | {r['solved_step'] or '-'} | {em} |")


if __name__ == "__main__":
    main()
