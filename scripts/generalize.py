"""The hard case's figures for docs/generalize.md: what weight decay does, and where errors sit.

Usage: python scripts/generalize.py [--seeds 5] [--jobs 2] [--smoke]
       python scripts/generalize.py --variant weight_decay=0.5 --variant steps=8000,weight_decay=1

1. Ablation: one LSTM setting (1 layer, hidden 128, AdamW lr 0.0046, batch 64, cosine, 4000
   steps), trained only on operands < 10^2, with weight decay 0 (none), 0.01, 0.1, 0.3, 1 and 3,
   each over the same seeds; scored on 1000 held-out sums of 10, 100 and 1000 digits.
2. Where the errors are: for the model without weight decay and the one with 1, the wrong
   digits of 1000 100-digit sums counted by whether a carry came into that position and by the
   fifth of the number they sit in.

With ``--variant``, instead: the setting with the given TrainConfig fields changed (each
``--variant`` one row), over the same seeds, scored the same way, with how many seeds reach
exact-match 0.99 on 100-digit sums (the generalize space's verification threshold).

Every run is ``adder.train.train`` on the CPU, one thread, the same code ``adder train`` runs:
each row can be rerun alone with the ``adder train`` command printed under the table.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from typing import Any

SETTING = dict(
    cell="lstm",
    layers=1,
    hidden=128,
    lr=0.0046,
    batch_size=64,
    optimizer="adamw",
    schedule="cosine",
    steps=4000,
    eval_every=4000,
    train_digits=2,
    test_digits=100,
    eval_size=1000,
    device="cpu",
)
DECAYS = (0.0, 0.01, 0.1, 0.3, 1.0, 3.0)
DIGITS = (10, 100, 1000)


def one(job: tuple[dict[str, Any], float, int]) -> dict[str, Any]:
    """One run: ``setting`` with weight decay ``wd`` (None: the setting's own) and ``seed``."""
    import torch

    from adder.config import VERIFY_SEED, TrainConfig
    from adder.data import held_out
    from adder.models import Adder
    from adder.train import train

    torch.set_num_threads(1)
    setting, wd, seed = job
    cfg = TrainConfig(**{**setting, **({} if wd is None else {"weight_decay": wd}), "seed": seed})
    state: dict[str, Any] = {}
    t0 = time.perf_counter()
    train(cfg, report=lambda m, checkpoint: state.update(checkpoint()))
    model = Adder(cfg.model_config())
    model.load_state_dict(state["model"])
    model.eval()
    out = {"wd": cfg.weight_decay, "seed": seed, "seconds": time.perf_counter() - t0}
    for d in DIGITS:
        b = held_out(1000, d, seed=VERIFY_SEED)  # adder verify's held-out sets
        with torch.inference_mode():
            wrong = model(b.a, b.b).argmax(-1) != b.s  # (n, d + 1)
        out[f"exact_{d}"] = 1 - wrong.any(-1).float().mean().item()
        if d == 100:
            t = b.a + b.b
            carry_in = torch.zeros_like(wrong)
            carry_in[:, 1:] = b.s[:, 1:] != t[:, 1:] % 10
            fifths = wrong.float().sum(0).tensor_split(5)
            out["errors"] = {
                "with_carry_in": int((wrong & carry_in).sum()),
                "without": int((wrong & ~carry_in).sum()),
                "by_fifth": [int(f.sum()) for f in fifths],
            }
    return out


def variant(spec: str) -> dict[str, Any]:
    """SETTING with ``key=value,...`` changed, checked; ValueError naming the bad part."""
    import yaml

    from adder.config import TrainConfig
    from adder.errors import UserError

    d = dict(SETTING)
    for kv in filter(None, spec.split(",")):
        key, eq, value = kv.partition("=")
        if not eq:
            raise ValueError(f"--variant {spec}: {kv!r} is not FIELD=VALUE")
        d[key] = yaml.safe_load(value)  # 8000 an int, 0.5 a float
    try:
        TrainConfig.from_dict(d, where=f"--variant {spec}")
    except UserError as e:
        raise ValueError(str(e)) from None
    return d


def variants(specs: list[str], seeds: range, jobs: int, smoke: bool) -> None:
    rows = [(spec, variant(spec)) for spec in specs]  # every one checked before any runs
    if smoke:
        rows = [(spec, {**s, "steps": 200, "eval_every": 200}) for spec, s in rows]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(jobs) as pool:
        runs = pool.map(one, [(s, None, seed) for _, s in rows for seed in seeds], chunksize=1)
    wall = time.perf_counter() - t0
    print(
        "LSTM, 1 layer, hidden 128, AdamW lr 0.0046, batch 64, cosine, 4000 steps unless "
        "changed, trained on operands < 10^2; exact-match on 1000 held-out sums per length, "
        f"seeds {', '.join(map(str, seeds))}: mean (min-max).\n"
    )
    head = " | ".join(f"{d} digits" for d in DIGITS)
    print(f"| changed | {head} | per seed, 100 digits | seeds >= 0.99 at 100 digits |")
    print("|---|" + "---|" * len(DIGITS) + "---|---|")
    for i, (spec, _) in enumerate(rows):
        mine = runs[i * len(seeds) : (i + 1) * len(seeds)]
        cells = []
        for d in DIGITS:
            xs = [r[f"exact_{d}"] for r in mine]
            cells.append(f"{statistics.fmean(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})")
        per_seed = [r["exact_100"] for r in mine]
        passed = sum(x >= 0.99 for x in per_seed)
        print(
            f"| {spec} | " + " | ".join(cells) + f" | {', '.join(f'{x:.3f}' for x in per_seed)} "
            f"| {passed} of {len(mine)} |"
        )
    print(f"\n{len(runs)} runs, {wall:.0f} s on {jobs} processes.")


def command(wd: float, seed: int) -> str:
    flags = {**SETTING, "weight_decay": wd, "seed": seed, "eval_every": 1000}
    flags.pop("device")
    args = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in flags.items())
    return f"adder train {args} --wandb disabled"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (default 2: the CPUs)")
    ap.add_argument("--smoke", action="store_true", help="200 steps, 2 seeds: checks it runs")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="FIELD=VALUE,...",
        help="instead of the ablation: the setting with these TrainConfig fields changed "
        "(one row per --variant)",
    )
    args = ap.parse_args()
    setting = {**SETTING, "steps": 200, "eval_every": 200} if args.smoke else SETTING
    seeds = range(2 if args.smoke else args.seeds)
    if args.variant:
        try:
            variants(args.variant, seeds, args.jobs, args.smoke)
        except ValueError as e:
            print(f"generalize.py: {e}", file=sys.stderr)
            sys.exit(2)
        return
    jobs = [(setting, wd, s) for wd in DECAYS for s in seeds]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        runs = pool.map(one, jobs, chunksize=1)
    wall = time.perf_counter() - t0

    print(
        f"LSTM, 1 layer, hidden 128, AdamW lr 0.0046, batch 64, cosine, {setting['steps']} "
        f"steps, trained on operands < 10^2; exact-match on 1000 held-out sums per length, "
        f"seeds {', '.join(map(str, seeds))}: mean (min-max).\n"
    )
    head = " | ".join(f"{d} digits" for d in DIGITS)
    print(f"| weight decay | {head} | per seed, 100 digits |")
    print("|---|" + "---|" * len(DIGITS) + "---|")
    for wd in DECAYS:
        mine = [r for r in runs if r["wd"] == wd]
        cells = []
        for d in DIGITS:
            xs = [r[f"exact_{d}"] for r in mine]
            cells.append(f"{statistics.fmean(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})")
        per_seed = ", ".join(f"{r['exact_100']:.3f}" for r in mine)
        print(f"| {wd:g} | " + " | ".join(cells) + f" | {per_seed} |")
    print("\nWhere the wrong digits of the 100-digit sums are (all seeds together):\n")
    print(
        "| weight decay | wrong digits | with a carry coming in | without "
        "| by fifth of the number (lowest first) |"
    )
    print("|---|---|---|---|---|")
    for wd in DECAYS:
        mine = [r["errors"] for r in runs if r["wd"] == wd]
        w = sum(e["with_carry_in"] for e in mine)
        wo = sum(e["without"] for e in mine)
        fifths = [sum(e["by_fifth"][i] for e in mine) for i in range(5)]
        print(f"| {wd:g} | {w + wo} | {w} | {wo} | {', '.join(map(str, fifths))} |")
    print(f"\n{len(runs)} runs, {wall:.0f} s on {args.jobs} processes. One row again, e.g.:")
    print(f"\n    {command(1.0, 0)}")


if __name__ == "__main__":
    main()
