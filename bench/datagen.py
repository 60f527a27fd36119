"""Data generation: the project's vectorized sums against two fair baselines on the CPU, the
seed's way done well (Python integers, added, written out as digits with no per-character
loop) and NumPy (digits drawn as arrays, the carry taken position by position for the whole
batch at once).

    python bench/datagen.py           # batches of 128 at 10 to 10,000 digits, 7 rounds
    python bench/datagen.py --smoke   # tiny sizes: checks it runs

Every side produces the same thing: three (B, d + 1) int64 tensors of digits, least significant
first (operands and sum), checked against Python's integers before timing. Rounds rotate the
order of the sides; the figure is the median of per-round ratios of CPU time (one thread).
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
    """The seed's handout, done well: the operands drawn as integers and added (both in C), then
    every number of the batch written out at once (``str`` in C, one join, one array view)."""
    import numpy as np
    import torch

    a = [rng.randrange(10**digits) for _ in range(n)]
    b = [rng.randrange(10**digits) for _ in range(n)]
    s = [x + y for x, y in zip(a, b, strict=True)]

    def split(xs):
        text = "".join([str(x).zfill(digits + 1) for x in xs]).encode("ascii")
        msd_first = np.frombuffer(text, dtype=np.uint8).reshape(n, digits + 1)
        return torch.from_numpy(msd_first[:, ::-1] - np.int64(48))  # LSD first, int64

    return split(a), split(b), split(s)


def numpy_digits(n: int, digits: int, rng):
    """NumPy: uniform digits (a zero column on top for the last carry), and the sum's carry
    taken one position at a time, for all ``n`` problems at once."""
    import numpy as np
    import torch

    a = np.zeros((n, digits + 1), dtype=np.int64)
    b = np.zeros((n, digits + 1), dtype=np.int64)
    a[:, :digits] = rng.integers(0, 10, (n, digits))
    b[:, :digits] = rng.integers(0, 10, (n, digits))
    t = a + b
    s = np.empty_like(t)
    carry = np.zeros(n, dtype=np.int64)
    for i in range(digits + 1):
        carry, s[:, i] = np.divmod(t[:, i] + carry, 10)
    return torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(s)


def as_ints(digits) -> list[int]:
    """LSD-first digit rows -> Python integers (for the check, not timed)."""
    return [int("".join(map(str, reversed(row))) or "0") for row in digits.tolist()]


def check(make, digits: int) -> None:
    """``make`` returns operands and sums that Python's integers agree with, in the shape and type
    of the project's batches."""
    a, b, s = make(8, digits)
    for x in (a, b, s):
        assert tuple(x.shape) == (8, digits + 1) and str(x.dtype) == "torch.int64", x.shape
    assert all(x < 10**digits for x in as_ints(a) + as_ints(b))
    assert [x + y for x, y in zip(as_ints(a), as_ints(b), strict=True)] == as_ints(s)


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
    import numpy as np
    import torch

    from adder.data import sample

    sys.set_int_max_str_digits(0)
    rounds, digits = (1, [10, 100]) if args.smoke else (7, [10, 100, 1000, 10000])
    g, rng, npr = torch.Generator().manual_seed(0), random.Random(0), np.random.default_rng(0)
    sides = {
        "project": lambda n, d: sample(n, d, generator=g),
        "python_ints": lambda n, d: python_ints(n, d, rng),
        "numpy": lambda n, d: numpy_digits(n, d, npr),
    }
    for make in sides.values():
        for d in (1, 30):
            check(make, d)
    times: dict[str, dict[int, list[float]]] = {k: {d: [] for d in digits} for k in sides}
    order = list(sides)
    for i in range(rounds):
        for d in digits:
            batches = max(3, (20 if args.smoke else 5000) // d)
            for name in order[i % 3 :] + order[: i % 3]:  # each side first in turn
                times[name][d].append(
                    time_per_batch(lambda m=sides[name], d=d: m(BATCH, d), batches)
                )
    rows = []
    for d in digits:
        ours = times["project"][d]
        ratios = {k: [t / p for p, t in zip(ours, times[k][d], strict=True)] for k in sides}
        py, nu = ratios["python_ints"], ratios["numpy"]
        ms = [1e3 * median(times[k][d]) for k in sides]
        rows.append([d, *ms, median(py), spread(py), median(nu), spread(nu)])
    last = rows[-1]
    md = (
        f"CPU time to make one batch of {BATCH} sums (operands and sum as int64 digit tensors), "
        f"median of {rounds} rounds. At {digits[-1]} digits the project's generator runs at "
        f"**{last[4]:.2g}x** the speed of Python integers and **{last[6]:.2g}x** that of NumPy "
        "(the speed-up is the baseline's time over the project's: above 1, the project is "
        "faster).\n\n"
        + table(
            [
                "digits",
                "project ms/batch",
                "Python ints ms/batch",
                "NumPy ms/batch",
                "speed-up vs Python ints",
                "(min-max)",
                "speed-up vs NumPy",
                "(min-max)",
            ],
            rows,
        )
    )
    save(
        "datagen",
        {"batch": BATCH, **{f"{k}_s": v for k, v in times.items()}},
        md,
        smoke=args.smoke,
    )


if __name__ == "__main__":
    main()
