"""Which model to keep: the weights at the first solve, an average of them (EMA), or those at the
end of the schedule; measured on many seeds of one setting in one pass each.

Usage: python scripts/stop_rules.py SPEC [--seeds 50000-50031] [--jobs 4] [--device cpu]
                                        [--out runs/stop-rules.jsonl] [--deadline SECONDS]

SPEC as in scripts/fresh_seeds.py (e.g. ``transformer-tuned:nines=0.2,heads=2``). Each seed
trains the whole schedule (``steps``) with adder.train's pieces, never stopping, and keeps beside
the weights two exponential moving averages of them (decay 0.99 and 0.998, warmed up as
min(decay, 1 - 1 / (t + 1)): the mean of all steps so far until the window fills), scored from
the first evaluation on (adder.train scores its average only once it spans its window,
1 / (1 - decay) steps). Every ``eval_every`` steps each of the three is put to the default
space's criterion on its own (all 1000 held-out 100-digit sums right 4 times in a row, then all
1000 held-out 1000-digit sums, a failure doubling the wait, as adder.train does). Each is scored
on 1000 fresh sums of 100 and of 1000 digits (seed 777001, the race's) at its first solve, at the
raw weights' first solve, 500 and 1000 steps after it, and at the end. One JSON line per seed
goes to --out (appended as each finishes); then a table of the seeds passed (>= 0.999 at both
lengths) by each rule. --deadline stops handing out seeds after that many seconds (the table
counts those finished).
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
sys.path.insert(0, str(ROOT / "scripts"))

DECAYS = (0.99, 0.998)
AFTER = (500, 1000)  # steps after the raw weights' first solve
PASS = 0.999


def _fresh(model, fresh) -> dict[str, float]:
    from adder.train import evaluate

    return {str(d): evaluate(model, b)["exact_match"] for d, b in fresh.items()}


class Criterion:
    """adder.train's SolveRule, put to one set of weights."""

    def __init__(self, cfg, test, confirm):
        from adder.train import SolveRule

        self.cfg, self.test, self.confirm, self.rule = cfg, test, confirm, SolveRule(cfg)

    def update(self, model, step: int) -> bool:
        """True at the evaluation where the weights first meet the criterion."""
        from adder.train import _evaluate, allowed_errors

        if self.rule.solved_step is not None:
            return False
        cfg = self.cfg
        t = _evaluate(model, self.test, allowed_errors(cfg.eval_size, cfg.solve_exact))[0]
        limit = allowed_errors(cfg.confirm_size, cfg.confirm_exact)
        self.rule.update(
            step, t["exact_match"], lambda: _evaluate(model, self.confirm, limit)[0]["exact_match"]
        )
        return self.rule.solved_step == step

    @property
    def solved(self) -> int | None:
        return self.rule.solved_step


def run(job: tuple[str, int, str]) -> dict[str, Any]:
    import torch
    from fresh_seeds import config

    from adder.config import VERIFY_SEED
    from adder.data import held_out, make_generator, sample
    from adder.train import WeightAverage, build, train_step

    spec, seed, device_name = job
    torch.set_num_threads(1)
    cfg = config(spec, seed)
    device = torch.device(device_name)
    model, opt, sched = build(cfg, device)
    gen = make_generator(cfg.seed, device)
    test = held_out(cfg.eval_size, cfg.test_digits, device)
    confirm = held_out(cfg.confirm_size, cfg.confirm_digits, device)
    fresh = {d: held_out(1000, d, device, seed=VERIFY_SEED + 1) for d in (100, 1000)}
    averages = [WeightAverage(model, d) for d in DECAYS]  # adder.train's, scored from step 1
    weights = {"raw": model, **{f"ema{a.decay}": a.model for a in averages}}
    rules = {name: Criterion(cfg, test, confirm) for name in weights}
    out: dict[str, Any] = {"spec": spec, "seed": seed, "device": device_name, "steps": cfg.steps}
    t0 = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        batch = sample(cfg.batch_size, cfg.train_digits, generator=gen, device=device,
                       nines=cfg.nines)  # fmt: skip
        train_step(model, opt, sched, batch, grad_clip=cfg.grad_clip)
        for average in averages:
            average.update(step)
        if step % cfg.eval_every and step != cfg.steps:
            continue
        raw_solved = rules["raw"].solved
        for name, m in weights.items():
            if rules[name].update(m, step):
                out[f"{name}@solve"] = {"step": step, **_fresh(m, fresh)}
        if raw_solved is None and rules["raw"].solved is not None:  # the EMAs at that moment
            for name, m in weights.items():
                if name != "raw":
                    out[f"{name}@raw_solve"] = {"step": step, **_fresh(m, fresh)}
        for k in AFTER:
            if raw_solved is not None and step == raw_solved + k:
                out[f"raw@solve+{k}"] = {"step": step, **_fresh(model, fresh)}
    for name, m in weights.items():
        out[f"{name}@end"] = {"step": cfg.steps, **_fresh(m, fresh)}
    out["seconds"] = time.perf_counter() - t0
    return out


def passed(r: dict[str, Any] | None) -> bool:
    return r is not None and all(r[str(d)] >= PASS for d in (100, 1000))


def table(rows: list[dict[str, Any]]) -> str:
    """Per set of weights: seeds passed as the race scores them (the model at its first solve,
    else at the end), then at its solve, at the end, and after the raw weights' solve."""
    names = ["raw", *(f"ema{d}" for d in DECAYS)]
    lines = ["| weights | solved | median solve step | passed (race) | at solve | at end | "
             "at the raw solve, +500, +1000 |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    n = len(rows)
    for name in names:
        solves = [r[f"{name}@solve"] for r in rows if f"{name}@solve" in r]
        race = sum(passed(r.get(f"{name}@solve", r[f"{name}@end"])) for r in rows)
        steps = sorted(x["step"] for x in solves)
        median = steps[len(steps) // 2] if steps else "-"
        later = [[r[k] for r in rows if k in r] for k in (f"{name}@raw_solve",
                 *(f"{name}@solve+{a}" for a in AFTER))]  # fmt: skip
        after = ", ".join(f"{sum(map(passed, xs))}/{len(xs)}" if xs else "-" for xs in later)
        lines.append(
            f"| {name} | {len(solves)}/{n} | {median} | {race}/{n} | "
            f"{sum(map(passed, solves))}/{len(solves)} | "
            f"{sum(passed(r[f'{name}@end']) for r in rows)}/{n} | {after} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--seeds", default="50000-50031", help="A-B (inclusive) or a,b,c")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "runs" / "stop-rules.jsonl"))
    ap.add_argument("--deadline", type=float, default=None, help="seconds")
    args = ap.parse_args()
    a, dash, b = args.seeds.partition("-")
    seeds = range(int(a), int(b) + 1) if dash else [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0, rows = time.time(), []
    jobs = [(args.spec, s, args.device) for s in seeds]
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        done = pool.imap_unordered(run, jobs)
        for _ in jobs:
            left = None if args.deadline is None else args.deadline - (time.time() - t0)
            try:
                r = done.next(timeout=left) if left is None or left > 0 else None
            except mp.TimeoutError:
                r = None
            if r is None:
                break
            rows.append(r)
            with out.open("a") as f:
                f.write(json.dumps(r) + "\n")
        pool.terminate()
    rows.sort(key=lambda r: r["seed"])
    print(f"{args.spec}: {len(rows)} seeds in {time.time() - t0:.0f} s")
    print(table(rows))


if __name__ == "__main__":
    main()
