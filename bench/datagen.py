"""Data generation: the project's vectorized sums against the seed's way (operands drawn as Python
integers, added, and split into digits).

    python bench/datagen.py           # batches of 128 at 10, 100, 1000 digits, 7 rounds
    python bench/datagen.py --smoke   # tiny sizes: checks it runs

Both sides produce the same thing: three (B, d + 1) int64 tensors of digits, least significant
first (operands and sum). Rounds alternate the two sides; the figure is the median of per-round
ratios of CPU time (one thread).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import median, save, single_thread, spread, table  # noqa: E402

BATCH = 128


def python_ints(n: int, digits: int, rng: random.Random):
    """The seed's handout: draw the operands as integers, add, write each as LSD-first digits."""
    import torch

    a = [rng.randrange(10**digits) for _ in range(n)]
    b = [rng.randrange(10**digits) for _ in range(n)]
    s = [x + y for x, y in zip(a, b, strict=False)]

    def split(xs):
        return torch.tensor([[int(c) for c in reversed(str(x).zfill(digits + 1))] for x in xs])

    return split(a), split(b), split(s)


def time_per_batch(fn, batches: int) -> float:
    """CPU seconds of this thread per call: other people's jobs on the machine do not count."""
    t0 = time.thread_time()
    for _ in range(batches):
        fn()
    return (time.thread_time() - t0) / batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks it runs")
    args = ap.parse_args()
    single_thread()
    import torch

    from adder.data import add_digits, sample

    sys.set_int_max_str_digits(0)
    rounds, digits = (1, [10, 100]) if args.smoke else (7, [10, 100, 1000])
    g, rng = torch.Generator().manual_seed(0), random.Random(0)
    # both sides do the same work: the same shapes, and the project's carry gives Python's sums
    a, b, s = python_ints(4, 30, random.Random(1))
    assert a.shape == sample(4, 30, generator=g).a.shape
    assert torch.equal(add_digits(a, b), s)
    ours: dict[int, list[float]] = {d: [] for d in digits}
    seed: dict[int, list[float]] = {d: [] for d in digits}
    for i in range(rounds):
        for d in digits:
            batches = max(3, (20 if args.smoke else 5000) // d)

            def project(d=d):
                return sample(BATCH, d, generator=g)

            def handout(d=d):
                return python_ints(BATCH, d, rng)

            first, second = (project, handout) if i % 2 == 0 else (handout, project)
            t1, t2 = time_per_batch(first, batches), time_per_batch(second, batches)
            tp, th = (t1, t2) if first is project else (t2, t1)
            ours[d].append(tp)
            seed[d].append(th)
    rows = []
    for d in digits:
        ratio = [h / p for p, h in zip(ours[d], seed[d], strict=False)]
        rows.append(
            [d, 1e3 * median(ours[d]), 1e3 * median(seed[d]), median(ratio), spread(ratio)]
        )
    md = (
        f"CPU time to make one batch of {BATCH} sums (operands and sum as digit tensors), median "
        "of "
        f"{rounds} rounds. At {digits[-1]} digits the project's generator is "
        f"**{rows[-1][3]:.0f}x** faster than Python integers.\n\n"
        + table(
            ["digits", "project ms/batch", "Python ints ms/batch", "speed-up", "runs (min-max)"],
            rows,
        )
    )
    save(
        "datagen", {"batch": BATCH, "project_s": ours, "python_ints_s": seed}, md, smoke=args.smoke
    )


if __name__ == "__main__":
    main()
