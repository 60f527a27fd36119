"""Which stopping criterion makes "solved" mean a model that adds? Measured, for docs/solving.md.

Usage: python scripts/solve_criterion.py [--settings 40] [--jobs 2] [--out runs/solve-criterion]
       python scripts/solve_criterion.py --analyze runs/solve-criterion
       python scripts/solve_criterion.py --races results    # a finished search's race runs

Trains a population of settings drawn at random from spaces/default.yaml (its task: 10-digit
training operands, an evaluation every 50 steps on the search's 1000 held-out 100-digit sums),
plus the seed report's setting for each cell, up to 3000 steps each. From the first evaluation
where a run passes exact-match 0.999 on the search's sums, every evaluation also scores the model
on sums no search ever selects on (1000 fresh 100-digit sums, the seed ``adder verify`` uses)
and, where it passes 0.999 on the search's 100-digit sums (no criterion stops anywhere else),
on 1000 fresh 1000-digit sums; where every one of those is right, also on 1000 1000-digit sums
of the search's own family (the confirmation set a trial may use). A run ends 20 evaluations
(1000 steps) after its first pass, or at 3000 steps: criteria are replayed on the whole
recorded curve, never cut short by one of them. For each criterion: the step at which it
would have stopped the run, and whether the model at that step adds fresh sums at both
lengths (exact-match >= 0.999 on each).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AFTER = 20  # evaluations recorded after the first pass
MAX_GFLOP_PER_STEP = 1.5  # keeps the population within hours on 2 CPUs (see the doc)
SEED_SETTING = {"layers": 2, "hidden": 32, "lr": 0.001, "batch_size": 128, "nonlinearity": "tanh"}


def population(n: int, seed: int) -> list[dict[str, Any]]:
    from adder.config import TrainConfig
    from adder.models import train_flops
    from search.space import load_space

    space = load_space(ROOT / "spaces/default.yaml")
    rng = random.Random(seed)
    out = [{**space.base_config(c), **SEED_SETTING, "seed": 0} for c in space.cells]
    while len(out) < n + len(space.cells):
        cell = space.cells[len(out) % len(space.cells)]
        cfg = {**space.base_config(cell), "seed": len(out)}
        for p in space.params:
            if not p.applies_to(cell):
                continue
            if p.kind == "choice":
                cfg[p.name] = rng.choice(p.choices)
            elif p.log:
                v = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
                cfg[p.name] = round(v) if p.kind == "int" else v
            else:
                cfg[p.name] = (
                    rng.randint(p.low, p.high) if p.kind == "int" else rng.uniform(p.low, p.high)
                )
        t = TrainConfig(**cfg)
        if train_flops(t.model_config(), t.train_digits + 1) * t.batch_size / 1e9 <= (
            MAX_GFLOP_PER_STEP
        ):
            out.append(cfg)
    return out


def one(job: tuple[int, dict[str, Any], str]) -> None:
    import torch

    from adder.config import VERIFY_SEED, TrainConfig
    from adder.data import held_out
    from adder.models import Adder
    from adder.train import evaluate, train

    torch.set_num_threads(1)
    i, config, out = job
    path = Path(out) / f"run-{i:03d}.jsonl"
    if path.exists():
        return
    cfg = TrainConfig(**{**config, "eval_every": 50, "stop_when_solved": False, "device": "cpu"})
    fresh = {d: held_out(1000, d, seed=VERIFY_SEED) for d in (100, 1000)}
    confirm = held_out(1000, 1000)  # the search's own family (HELD_OUT_SEED)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def report(m: dict[str, Any], checkpoint) -> bool:
        row = {k: m[k] for k in ("step", "exact_match", "val_loss")}
        if m["exact_match"] >= 0.999 or any("fresh_100" in r for r in rows):
            model = Adder(cfg.model_config())
            model.load_state_dict(checkpoint()["model"])
            row["fresh_100"] = evaluate(model, fresh[100])["exact_match"]
            if m["exact_match"] >= 0.999:
                row["fresh_1000"] = evaluate(model, fresh[1000])["exact_match"]
            if m["exact_match"] >= 1.0:
                row["confirm_1000"] = evaluate(model, confirm)["exact_match"]
        rows.append(row)
        return sum("fresh_100" in r for r in rows) > AFTER

    train(cfg, report=report)
    path.write_text(
        json.dumps({"config": config, "seconds": time.perf_counter() - t0, "evals": rows}) + "\n"
    )


# -- the criteria, replayed on a recorded run ---------------------------------------------------


def _consecutive(rows, ok, k: int) -> int | None:
    run = 0
    for i, r in enumerate(rows):
        run = run + 1 if ok(r) else 0
        if run >= k:
            return i
    return None


def _confirmed(exact: float, k: int, c: int, confirm: float = 1.0):
    """The test set at ``exact`` or above for ``k`` evaluations in a row, then the 1000-digit
    confirmation set at ``confirm`` or above (1.0: all right) at ``c`` evaluations in a row
    (each with the test set passed); a failed confirmation starts both counts again."""

    def rule(rows) -> int | None:
        run = conf = 0
        for i, r in enumerate(rows):
            run = run + 1 if r["exact_match"] >= exact else 0
            if run < k:
                conf = 0
                continue
            if r.get("confirm_1000", 0) >= confirm:
                conf += 1
                if conf >= c:
                    return i
            else:
                run = conf = 0
        return None

    return rule


CRITERIA = {
    "0.999 once (before)": lambda rows: _consecutive(rows, lambda r: r["exact_match"] >= 0.999, 1),
    "1.0 once": lambda rows: _consecutive(rows, lambda r: r["exact_match"] >= 1.0, 1),
    "1.0 twice in a row": lambda rows: _consecutive(rows, lambda r: r["exact_match"] >= 1.0, 2),
    "1.0 four times in a row": lambda rows: _consecutive(
        rows, lambda r: r["exact_match"] >= 1.0, 4
    ),
    "1.0 once, then 1000-digit set all right": _confirmed(1.0, 1, 1),
    "1.0 twice, then 1000-digit set all right": _confirmed(1.0, 2, 1),
    "1.0 twice, then 1000-digit set all right twice in a row": _confirmed(1.0, 2, 2),
    "1.0 twice, then 1000-digit set all right 3 times in a row": _confirmed(1.0, 2, 3),
    "1.0 three times, then 1000-digit set all right": _confirmed(1.0, 3, 1),
    "1.0 four times, then 1000-digit set all right": _confirmed(1.0, 4, 1),
    "1.0 four times, then 1000-digit set >= 0.999 (shipped)": _confirmed(1.0, 4, 1, 0.999),
    "1.0 four times, then 1000-digit set all right twice in a row": _confirmed(1.0, 4, 2),
}


def analyze(out: Path) -> str:
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("run-*.jsonl"))]
    lines = [
        f"{len(runs)} runs; {sum(any('fresh_100' in r for r in x['evals']) for x in runs)} "
        "passed 0.999 on the search's sums at least once.",
        "",
        "| criterion | runs it stops | of those, fresh 100 and 1000 digits >= 0.999 | "
        "fresh 100 only | median stop step | stop step / before |",
        "|---|---|---|---|---|---|",
    ]
    base = {}
    for name, rule in CRITERIA.items():
        stops, good, good100, steps, ratio = 0, 0, 0, [], []
        for x in runs:
            rows = x["evals"]
            i = rule(rows)
            if i is None:
                continue
            r = rows[i]
            if "fresh_1000" not in r:
                continue
            stops += 1
            good += r["fresh_100"] >= 0.999 and r["fresh_1000"] >= 0.999
            good100 += r["fresh_100"] >= 0.999
            steps.append(r["step"])
            key = json.dumps(x["config"], sort_keys=True)
            if name.endswith("(before)"):
                base[key] = r["step"]
            elif key in base:
                ratio.append(r["step"] / base[key])
        med = statistics.median(steps) if steps else None
        rat = f"{statistics.median(ratio):.2f}" if ratio else "1"
        lines.append(
            f"| {name} | {stops} | {good} ({100 * good / max(stops, 1):.0f}%) | "
            f"{good100} ({100 * good100 / max(stops, 1):.0f}%) | {med} | {rat} |"
        )
    return "\n".join(lines)


def races(results: Path) -> str:
    """The criterion checked where it matters: every race run of a finished search that it
    stopped (solved), by the figure of its passing confirmation, against the run's own fresh
    sums (race seeds are never selected on)."""
    groups: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted(results.glob("*/tune/*_v_*/result.json")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        last = rows[-1]
        if last.get("solved_step") is None or "exact_match_1000" not in last:
            continue
        confirm = last.get("confirm_exact_match")
        key = "all right" if confirm == 1.0 else f"{confirm:.3f}"
        ok = last["exact_match_100"] >= 0.999 and last["exact_match_1000"] >= 0.999
        groups.setdefault(key, []).append((last["config"]["cell"], ok))
    lines = [
        "| confirmation at the stop | race runs stopped | of those, fresh 100 and 1000 digits "
        ">= 0.999 | by cell (passed/stopped) |",
        "|---|---|---|---|",
    ]
    for key, runs in sorted(groups.items(), reverse=True):
        cells = sorted({c for c, _ in runs})
        by = ", ".join(
            f"{c} {sum(ok for x, ok in runs if x == c)}/{sum(x == c for x, _ in runs)}"
            for c in cells
        )
        good = sum(ok for _, ok in runs)
        lines.append(f"| {key} | {len(runs)} | {good} ({100 * good / len(runs):.0f}%) | {by} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", type=int, default=40, help="random settings (default 40)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the population draw")
    ap.add_argument("--out", type=Path, default=ROOT / "runs/solve-criterion")
    ap.add_argument("--analyze", type=Path, help="only analyze this folder")
    ap.add_argument("--races", type=Path, help="only check a search's race runs (its results)")
    args = ap.parse_args()
    if args.races:
        print(races(args.races))
        return
    if args.analyze:
        print(analyze(args.analyze))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, c, str(args.out)) for i, c in enumerate(population(args.settings, args.seed))]
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for _ in pool.imap_unordered(one, jobs):
            print(".", end="", flush=True, file=sys.stderr)
    print(analyze(args.out))


if __name__ == "__main__":
    main()
