"""Where a trained adder's wrong digits are, and the carry each needed (docs/architectures.md).

Usage: python scripts/carry_errors.py CHECKPOINT [--digits 1000] [--n 1000] [--seed 777001]

Scores ``n`` held-out sums of ``digits`` digits (``adder eval CHECKPOINT --digits D --n N
--seed S`` scores the same ones) and prints, for every wrong digit: its position, what its own
digit pair adds to, the run of pairs adding to 9 right below it (each hands a carry on), the pair
that ends that run (its sum decides the carry: 10 or more gives one), the carry the digit needed
and the digit the model wrote. Then how many wrong digits follow a run of each length.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adder.data import Batch, held_out  # noqa: E402
from adder.train import load_model  # noqa: E402


def carry_context(batch: Batch, pred: torch.Tensor) -> list[dict[str, int | None]]:
    """One record per wrong digit of ``pred`` (B, T) against ``batch``'s sums."""
    pairs = batch.a + batch.b  # (B, T)
    out = []
    for i, p in (pred != batch.s).nonzero().tolist():
        k = p - 1
        while k >= 0 and pairs[i, k] == 9:
            k -= 1
        out.append({
            "sum": i, "pos": p, "pair": int(pairs[i, p]), "run_of_9": p - 1 - k,
            "ended_by": int(pairs[i, k]) if k >= 0 else None,
            "carry_in": int((batch.s[i, p] - pairs[i, p]) % 10),
            "wrote": int(pred[i, p]), "want": int(batch.s[i, p]),
        })  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--digits", type=int, default=1000)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=777001, help="held-out seed (adder eval --seed)")
    args = ap.parse_args()
    model, _ = load_model(args.checkpoint)
    batch = held_out(args.n, args.digits, seed=args.seed)
    with torch.inference_mode():  # 100 sums at a time: a 1000-digit batch's activations are large
        pred = torch.cat([model(batch.a[i : i + 100], batch.b[i : i + 100]).argmax(-1)
                          for i in range(0, args.n, 100)])  # fmt: skip
    wrong = carry_context(batch, pred)
    sums = len({w["sum"] for w in wrong})
    print(f"{args.digits} digits, {args.n} sums (seed {args.seed}): {sums} wrong, "
          f"{len(wrong)} wrong digits")  # fmt: skip
    for w in wrong:
        print("  " + ", ".join(f"{k} {v}" for k, v in w.items()))
    runs = collections.Counter(w["run_of_9"] for w in wrong)
    print("wrong digits by the run of 9-pairs below them: " + (
        ", ".join(f"{k}: {v}" for k, v in sorted(runs.items())) or "none"))  # fmt: skip


if __name__ == "__main__":
    main()
