"""A setting on fresh seeds under the default space's criterion: when it solves, and whether the
model it stops at adds fresh sums (the question the race asks of each candidate).

Usage: python scripts/fresh_seeds.py SPEC [SPEC ...] [--seeds 20000,...,20004] [--jobs 2]

SPEC is NAME[:key=value,...]: a setting below with TrainConfig fields changed, e.g.
``gru-seed:steps=6000`` or ``transformer-tuned:nines=0.2,layers=4``. Each run is
``adder.train.train`` with one CPU thread (on the CPU unless the SPEC sets ``device``) under
the default space's criterion (an evaluation every 50 steps; every one of 1000 held-out 100-digit
sums right 4 times in a row, then every one of 1000 1000-digit sums), stopping when solved, up to
``steps`` (3000 unless changed);
the model it stops at is then scored on 1000 fresh sums of 100 and of 1000 digits (seed 777001:
the race's and ``adder verify``'s sums are drawn the same way, ``adder eval CKPT --digits D --n
1000 --seed 777001``). A seed passes at exact-match >= 0.999 at both lengths, as in the race.
The seeds default to ``adder verify``'s first five (20000-20004). Results go to
runs/fresh-seeds/ (one JSON per run; a finished run is not trained again), then a table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "runs" / "fresh-seeds"
CRITERION = dict(eval_every=50, eval_size=1000, solve_exact=1.0, solve_patience=4,
                 confirm_digits=1000, confirm_size=1000, confirm_exact=1.0,
                 stop_when_solved=True, train_digits=10, test_digits=100, steps=3000,
                 device="cpu")  # fmt: skip
SETTINGS = {
    "gru-seed": dict(cell="gru", layers=2, hidden=32, lr=0.001, batch_size=128),  # the report's
    "gru-3x32": dict(cell="gru", layers=3, hidden=32, lr=0.003, batch_size=128),  # the 2nd point
    "transformer-tuned": dict(
        cell="transformer", layers=3, hidden=32, lr=0.003, batch_size=128, schedule="cosine"
    ),  # fmt: skip
}
DIGITS = (100, 1000)
PASS = 0.999


def config(spec: str, seed: int):
    """The TrainConfig of one run; ValueError naming the bad part of ``spec``."""
    import yaml

    from adder.config import TrainConfig
    from adder.errors import UserError

    name, _, changes = spec.partition(":")
    if name not in SETTINGS:
        raise ValueError(
            f"{spec}: unknown setting {name!r}; expected one of {', '.join(SETTINGS)}"
        )
    d = {**CRITERION, **SETTINGS[name], "seed": seed}
    for kv in filter(None, changes.split(",")):
        key, _, value = kv.partition("=")
        d[key] = yaml.safe_load(value)  # 6000 an int, 0.2 a float, alibi a string
    try:
        return TrainConfig.from_dict(d, where=spec)
    except UserError as e:
        raise ValueError(str(e)) from None


def train_to_stop(cfg) -> tuple[dict[str, Any], dict[str, Any], Any, float]:
    """``adder.train.train`` with one CPU thread, as ``adder train`` runs it: its summary, its
    last checkpoint, the model it stopped at (on the run's device), and the seconds it took."""
    import torch

    from adder.models import Adder
    from adder.train import resolve_device, train

    torch.set_num_threads(1)
    state: dict[str, Any] = {}
    t0 = time.perf_counter()
    summary = train(cfg, report=lambda m, checkpoint: state.update(checkpoint()))
    seconds = time.perf_counter() - t0
    model = Adder(cfg.model_config()).to(resolve_device(cfg.device))
    model.load_state_dict(state["model"])
    return summary, state, model, seconds


def run(job: tuple[str, int]) -> dict[str, Any]:
    spec, seed = job
    path = OUT / f"{spec.replace(':', '_').replace(',', '_').replace('=', '-')}-s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from adder.config import VERIFY_SEED
    from adder.data import held_out
    from adder.train import evaluate

    summary, _, model, seconds = train_to_stop(config(spec, seed))
    device = next(model.parameters()).device
    scores = {str(d): evaluate(model, held_out(1000, d, device, VERIFY_SEED + 1))["exact_match"]
              for d in DIGITS}  # fmt: skip
    result = {"spec": spec, "seed": seed, "steps": summary["steps"],
              "solved_step": summary["solved_step"], "train_seconds": seconds,
              "exact_match": scores}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return result


def table(results: list[dict[str, Any]], specs: list[str]) -> str:
    lines = ["| setting | seeds passed | solved at step (- : not in its steps) | "
             + " | ".join(f"{d} digits" for d in DIGITS) + " |",
             "|---|---|---|" + "---|" * len(DIGITS)]  # fmt: skip
    for spec in specs:
        rs = [r for r in results if r["spec"] == spec]
        passed = sum(all(r["exact_match"][str(d)] >= PASS for d in DIGITS) for r in rs)
        solved = ", ".join(str(r["solved_step"] or "-") for r in rs)
        em = " | ".join(", ".join(f"{r['exact_match'][str(d)]:.3f}" for r in rs) for d in DIGITS)
        lines.append(f"| {spec} | {passed}/{len(rs)} | {solved} | {em} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("specs", nargs="+", metavar="SPEC")
    ap.add_argument("--seeds", default="20000,20001,20002,20003,20004")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    for spec in args.specs:  # a bad one stops here, before any training
        try:
            config(spec, 0)
        except ValueError as e:
            ap.error(str(e))
    jobs = [(spec, int(s)) for spec in args.specs for s in args.seeds.split(",")]
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        results = pool.map(run, jobs, chunksize=1)
    print(table(results, args.specs))


if __name__ == "__main__":
    main()
