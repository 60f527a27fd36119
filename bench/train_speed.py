"""Training speed: `adder train` against a minimal hand-written PyTorch loop, and the cost of a
step as the numbers grow.

    python bench/train_speed.py           # 31 pairs of runs; parts; 10/100/1000 digits x 5;
                                          # a profile of one step at 1000 digits
                                          # the transformer: 15 pairs of runs
    python bench/train_speed.py --smoke   # tiny sizes: checks it runs

1. The same work on both sides: the same model (the project's default, a 2-layer GRU of 32 units),
   the same batch (128 sums of 10-digit operands, drawn on the fly on the device) and the same
   optimizer (Adam). One side is ``adder.train.train``, the loop `adder train` runs (with one
   evaluation, of one sum, at the end); the other is written out below with nothing from this
   project. Both run in this process with one thread, alternating A, B, B, A, ...; the ratio is
   taken per pair, then the median. Then part by part: making a batch, and the update (the
   project's ``sample`` and ``train_step``, with its model, optimizer and schedule, against the
   hand-written ones), each on its own.
2. Cost per step at 10, 100 and 1000 digits: ``adder.train.train`` and the hand-written loop,
   sizes interleaved round by round; a cost that grows no faster than the digits is linear or
   better. Then one step of each side at the largest size under torch.profiler, operator by
   operator: where their growth differs, whether the step is where.
3. The transformer cell against a hand-written loop as in 1: the same size (2 blocks of width
   32, 4 heads, ALiBi), the hand-written side built from PyTorch's own
   ``nn.TransformerEncoderLayer`` with ALiBi as its attention mask, as one would write it
   without this project.

The clock is the CPU time of this thread (``time.thread_time``): on a machine shared with other
people's jobs, wall time mostly measures them. Wall-clock figures are printed beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import median, save, single_thread, spread, table  # noqa: E402

SETTING = dict(cell="gru", hidden=32, layers=2, batch_size=128, train_digits=10, lr=0.001)


def hand_batch(g, B: int, D: int):
    """Operands as digits, LSD first, plus a zero position for the last carry; their sum."""
    import torch

    zero = torch.zeros(B, 1, dtype=torch.long)
    a = torch.cat([torch.randint(0, 10, (B, D), generator=g), zero], 1)
    b = torch.cat([torch.randint(0, 10, (B, D), generator=g), zero], 1)
    t = a + b
    pos = torch.arange(D + 1).expand_as(t)
    last = torch.where(t != 9, pos, -1).cummax(-1).values  # carry chain as a scan
    out = torch.where(last >= 0, (t >= 10).gather(-1, last.clamp(min=0)), False)
    carry = torch.cat([torch.zeros(B, 1, dtype=torch.bool), out[:, :-1]], 1)
    return a, b, (t + carry.long()) % 10


def hand_model(seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    H = SETTING["hidden"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, H)
            self.rnn = nn.GRU(2 * H, H, num_layers=SETTING["layers"], batch_first=True)
            self.head = nn.Linear(H, 10)

        def forward(self, a, b):
            return self.head(self.rnn(torch.cat([self.embed(a), self.embed(b)], -1))[0])

    net = Net()
    return net, torch.optim.Adam(net.parameters(), lr=SETTING["lr"])


def hand_step(net, opt, a, b, s) -> None:
    import torch.nn.functional as F

    loss = F.cross_entropy(net(a, b).flatten(0, 1), s.flatten())
    loss.item()  # the project checks every loss for divergence; so does this loop
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def hand_loop(steps: int, digits: int | None = None, seed: int = 0) -> None:
    """A minimal PyTorch loop doing the work of `adder train`'s steps."""
    import torch

    B, D = SETTING["batch_size"], digits or SETTING["train_digits"]
    net, opt = hand_model(seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        hand_step(net, opt, *hand_batch(g, B, D))


def adder_train(steps: int, digits: int | None = None, setting: dict | None = None) -> None:
    """What `adder train` runs: one evaluation, of one 1-digit sum, at the last step."""
    from adder.config import TrainConfig
    from adder.train import train

    setting = setting or SETTING
    setting = {**setting, "train_digits": digits or setting["train_digits"]}
    cfg = TrainConfig(
        **setting, steps=steps, eval_every=steps, eval_size=1, test_digits=1, device="cpu"
    )
    train(cfg)


def clocked(fn, *args) -> tuple[float, float]:
    """(CPU seconds of this thread, wall seconds) that ``fn(*args)`` took."""
    c, w = time.thread_time(), time.perf_counter()
    fn(*args)
    return time.thread_time() - c, time.perf_counter() - w


def alternate(adder, hand, pairs: int, steps: int) -> tuple[dict, list, list]:
    """``pairs`` runs of ``steps`` steps per side, A B B A ...: steps per CPU- and wall-second
    per run, and the per-pair ratios adder / hand (CPU, wall)."""
    adder(5), hand(5)  # warm both: lazy imports, allocator
    res = {k: [] for k in ("adder_cpu", "hand_cpu", "adder_wall", "hand_wall")}
    for i in range(pairs):
        order = [("adder", adder), ("hand", hand)]
        for side, fn in order if i % 2 == 0 else order[::-1]:
            cpu, wall = clocked(fn, steps)
            res[f"{side}_cpu"].append(steps / cpu)
            res[f"{side}_wall"].append(steps / wall)
    ratio_cpu = [a / h for a, h in zip(res["adder_cpu"], res["hand_cpu"], strict=True)]
    ratio_wall = [a / h for a, h in zip(res["adder_wall"], res["hand_wall"], strict=True)]
    return res, ratio_cpu, ratio_wall


def versus_hand(pairs: int, steps: int) -> tuple[dict, str]:
    res, ratio_cpu, ratio_wall = alternate(adder_train, hand_loop, pairs, steps)
    r = median(ratio_cpu)
    md = (
        f"`adder train`'s loop runs at **{r:.3f}x** the steps per CPU-second of the hand-written "
        f"loop (median of {pairs} pairs of {steps} steps; per-pair ratios {spread(ratio_cpu)}): "
        f"the abstractions cost **{100 * (1 - r):.1f}%**. By wall clock: "
        f"{median(ratio_wall):.3f}x ({spread(ratio_wall)}).\n\n"
        + table(
            ["side", "steps per CPU-s", "(min-max)", "steps per wall-s", "(min-max)"],
            [
                [
                    "`adder train` (adder.train.train)",
                    median(res["adder_cpu"]),
                    spread(res["adder_cpu"]),
                    median(res["adder_wall"]),
                    spread(res["adder_wall"]),
                ],
                [
                    "hand-written loop",
                    median(res["hand_cpu"]),
                    spread(res["hand_cpu"]),
                    median(res["hand_wall"]),
                    spread(res["hand_wall"]),
                ],
                ["ratio", r, spread(ratio_cpu), median(ratio_wall), spread(ratio_wall)],
            ],
        )
    )
    return {"steps": steps, "pairs": pairs, **res, "ratio_cpu": ratio_cpu}, md


def components(rounds: int, calls: int) -> tuple[dict, str]:
    """Where a step's CPU goes, part by part, the project's code against the hand-written one."""
    import torch

    from adder.config import TrainConfig
    from adder.data import sample
    from adder.train import build, train_step

    B, D = SETTING["batch_size"], SETTING["train_digits"]
    cfg = TrainConfig(**SETTING, device="cpu")
    model, opt, sched = build(cfg, torch.device("cpu"))
    net, hopt = hand_model()
    g = torch.Generator().manual_seed(0)
    fixed = sample(B, D, generator=g)

    parts = {
        "make a batch": (lambda: sample(B, D, generator=g), lambda: hand_batch(g, B, D)),
        "forward, backward, update (+ schedule)": (
            lambda: train_step(model, opt, sched, fixed),  # the step `adder train` takes
            lambda: hand_step(net, hopt, *fixed),
        ),
    }
    us: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in parts}
    for ours, hand in parts.values():  # warm: the optimizers' state, the allocator
        for _ in range(3):
            ours(), hand()
    for _ in range(rounds):
        for name, (ours, hand) in parts.items():
            spent = [0.0, 0.0]
            for i in range(calls):  # call by call, in turn, each side first half the time
                order = ((0, ours), (1, hand)) if i % 2 == 0 else ((1, hand), (0, ours))
                for side, fn in order:
                    c = time.thread_time()
                    fn()
                    spent[side] += time.thread_time() - c
            for side in (0, 1):
                us[name][side].append(1e6 * spent[side] / calls)
    step = sum(median(h) for _, h in us.values())
    rows = [
        [name, median(o), median(h), f"{100 * (median(o) - median(h)) / step:+.1f}%"]
        for name, (o, h) in us.items()
    ]
    md = (
        f"Part by part (CPU us per call, the two sides called in turn, median of {rounds} rounds "
        f"of {calls} calls; the difference as a share of the hand-written step). The project's "
        "side is its own code: `adder.data.sample` and `adder.train.train_step` with the model, "
        "optimizer and schedule of `adder.train.build`.\n\n"
        + table(["part of a step", "project", "hand-written", "difference"], rows)
    )
    return {k: {"project_us": o, "hand_us": h} for k, (o, h) in us.items()}, md


def per_digit_cost(rounds: int, digits: list[int], smoke: bool) -> tuple[dict, str]:
    # about the same number of digit positions per size, so each size is timed over a similar span
    steps = {d: max(3, (40 if smoke else 12000) // (d + 1)) for d in digits}
    ms: dict[int, list[float]] = {d: [] for d in digits}
    hand: dict[int, list[float]] = {d: [] for d in digits}
    for d in digits:
        adder_train(2, d), hand_loop(2, d)  # warm each size once
    for r in range(rounds):
        for i, d in enumerate(digits):  # each side first at each size half the time
            sides = [(ms, adder_train), (hand, hand_loop)]
            for out, fn in sides if (r + i) % 2 == 0 else sides[::-1]:
                out[d].append(1000 * clocked(fn, steps[d], d)[0] / steps[d])
    base = digits[0]
    rows = []
    for d in digits:
        m, h = median(ms[d]), median(hand[d])
        ratio = [a / b for a, b in zip(ms[d], hand[d], strict=True)]
        rows.append(
            [
                d,
                steps[d],
                m,
                spread(ms[d]),
                h,
                spread(hand[d]),
                median(ratio),
                spread(ratio),
                (d + 1) / (base + 1),
                m / median(ms[base]),
                h / median(hand[base]),
            ]
        )
    pairs = list(zip(digits, digits[1:], strict=False))

    def worst(xs):
        return max(median(xs[b]) / median(xs[a]) / ((b + 1) / (a + 1)) for a, b in pairs)

    md = (
        f"CPU time per training step of the same model and batch as the operands grow (median of "
        f"{rounds} rounds, sizes interleaved, each side first half the time; `adder train` "
        f"includes its set-up and one final evaluation of one sum). Growth relative to linear "
        f"in the digit positions, worst step: **{worst(ms):.2f}** for `adder train`, "
        f"{worst(hand):.2f} for the hand-written loop on the same sizes (<= 1: no faster than "
        "linear). The `project / hand` column is the ratio of the two, round by round: where "
        "its spread covers 1, the two grow alike within this machine's noise.\n\n"
        + table(
            [
                "digits",
                "steps timed",
                "project CPU ms/step",
                "(min-max)",
                "hand CPU ms/step",
                "(min-max)",
                "project / hand",
                "(min-max)",
                "x positions",
                f"project: x {base} digits",
                f"hand: x {base} digits",
            ],
            rows,
        )
    )
    return {
        "ms_per_step": ms,
        "hand_ms_per_step": hand,
        "steps": steps,
        "worst_vs_linear": worst(ms),
        "hand_worst_vs_linear": worst(hand),
    }, md


def profile_ops(digits: int, steps: int) -> tuple[dict, str]:
    """One step of each side at ``digits`` digits, operator by operator (torch.profiler): the
    project's batch and step (`adder.data.sample`, `adder.train.train_step`) against the
    hand-written ones. Where the two differ, it shows which operator; where they do not, a
    difference in their growth is not in the step."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from adder.config import TrainConfig
    from adder.data import sample
    from adder.train import build, train_step

    B = SETTING["batch_size"]
    cfg = TrainConfig(**{**SETTING, "train_digits": digits}, device="cpu")
    model, opt, sched = build(cfg, torch.device("cpu"))
    net, hopt = hand_model()
    g, gh = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    sides = {
        "project": lambda: train_step(model, opt, sched, sample(B, digits, generator=g)),
        "hand": lambda: hand_step(net, hopt, *hand_batch(gh, B, digits)),
    }
    ms: dict[str, dict[str, float]] = {}
    calls: dict[str, dict[str, float]] = {}
    for name, fn in sides.items():
        fn()  # warm: the optimizer's state, the allocator
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                fn()
        events = prof.key_averages()
        ms[name] = {e.key: e.self_cpu_time_total / 1000 / steps for e in events}
        calls[name] = {e.key: e.count / steps for e in events}
    total = {name: sum(v.values()) for name, v in ms.items()}
    keys = set(ms["project"]) | set(ms["hand"])

    def get(d: dict, side: str, k: str) -> float:
        return d[side].get(k, 0.0)

    differ = sorted(k for k in keys if get(calls, "project", k) != get(calls, "hand", k))
    rows = [
        [k, f"{get(calls, 'project', k):.10g}", f"{get(calls, 'hand', k):.10g}"] for k in differ
    ]
    every = [f"{sum(calls[side].values()):.10g}" for side in ("project", "hand")]
    rows += [[f"every operator ({len(keys)})", *every]]
    md = (
        f"One step at {digits} digits, operator by operator (torch.profiler, mean of {steps} "
        f"steps per side after one warm-up): of the {len(keys)} operators the two steps call, "
        f"{len(keys) - len(differ)} are called the same number of times on both sides; these "
        "differ (calls per step). The profiler's times per operator are in the JSON; on this "
        "shared machine they are mostly other jobs' noise, the counts are exact.\n\n"
        + table(["operator", "project calls", "hand calls"], rows)
    )
    result = {"self_cpu_ms": ms, "calls": calls, "total_ms": total, "calls_differ": differ}
    return {"digits": digits, "steps": steps, **result}, md


# -- 3. the transformer cell ----------------------------------------------------------------------

TRANSFORMER = {**SETTING, "cell": "transformer", "heads": 4, "ff_mult": 4, "pos": "alibi"}


def hand_transformer(seed: int = 0):
    """The transformer cell written with PyTorch's own pre-LayerNorm encoder layer."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    H, heads = TRANSFORMER["hidden"], TRANSFORMER["heads"]
    slopes = torch.tensor([2.0**-i for i in range(heads)])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, H)
            self.inp = nn.Linear(2 * H, H)
            layer = nn.TransformerEncoderLayer(
                H, heads, TRANSFORMER["ff_mult"] * H, dropout=0.0, activation="gelu",
                batch_first=True, norm_first=True,
            )  # fmt: skip
            self.blocks = nn.TransformerEncoder(
                layer, TRANSFORMER["layers"], enable_nested_tensor=False
            )
            self.norm = nn.LayerNorm(H)
            self.head = nn.Linear(H, 10)
            self.sink = nn.Parameter(torch.zeros(H))  # a learned position below the lowest digit

        def forward(self, a, b):
            B, T = a.shape
            dist = torch.arange(T + 1)[:, None] - torch.arange(T + 1)  # query - key
            alibi = (-slopes[:, None, None] * dist).masked_fill(dist < 0, float("-inf"))
            mask = alibi.repeat(B, 1, 1)  # (B * heads, T + 1, T + 1)
            x = self.inp(torch.cat([self.embed(a), self.embed(b)], -1))
            x = torch.cat([self.sink.expand(B, 1, H), x], 1)
            return self.head(self.norm(self.blocks(x, mask=mask)[:, 1:]))

    net = Net()
    return net, torch.optim.Adam(net.parameters(), lr=TRANSFORMER["lr"])


def hand_transformer_loop(steps: int, seed: int = 0) -> None:
    import torch

    B, D = TRANSFORMER["batch_size"], TRANSFORMER["train_digits"]
    net, opt = hand_transformer(seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        hand_step(net, opt, *hand_batch(g, B, D))


def adder_train_transformer(steps: int) -> None:
    adder_train(steps, setting=TRANSFORMER)


def versus_hand_transformer(pairs: int, steps: int) -> tuple[dict, str]:
    """As ``versus_hand``, for the transformer cell."""
    from adder.config import TrainConfig
    from adder.models import Adder, count_params

    ours = count_params(Adder(TrainConfig(**TRANSFORMER).model_config()))
    theirs = count_params(hand_transformer()[0])
    assert ours == theirs, (ours, theirs)  # the same model, or the comparison means nothing
    res, ratio, ratio_wall = alternate(
        adder_train_transformer, hand_transformer_loop, pairs, steps
    )
    r = median(ratio)
    md = (
        f"The transformer cell ({ours:,} parameters: 2 blocks of width 32, 4 heads, ALiBi, sink): "
        f"`adder train` runs at **{r:.3f}x** the steps per CPU-second of a hand-written loop "
        "around PyTorch's `nn.TransformerEncoderLayer` (ALiBi as its attention mask), median of "
        f"{pairs} pairs of {steps} steps (per-pair ratios {spread(ratio)}); by wall clock "
        f"{median(ratio_wall):.3f}x.\n\n"
        + table(
            ["side", "steps per CPU-s", "(min-max)"],
            [
                [
                    "`adder train --cell transformer`",
                    median(res["adder_cpu"]),
                    spread(res["adder_cpu"]),
                ],
                ["hand-written loop", median(res["hand_cpu"]), spread(res["hand_cpu"])],
                ["ratio", r, spread(ratio)],
            ],
        )
    )
    return {"steps": steps, "pairs": pairs, "params": ours, **res, "ratio_cpu": ratio}, md


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks it runs")
    args = ap.parse_args()
    single_thread()
    pairs, steps, rounds = (2, 20, 1) if args.smoke else (31, 100, 5)
    digits = [10, 100] if args.smoke else [10, 100, 1000]
    vs, md1 = versus_hand(pairs, steps)
    parts, md2 = components(2 if args.smoke else 7, 10 if args.smoke else 100)
    scale, md3 = per_digit_cost(rounds, digits, args.smoke)
    ops, md4 = profile_ops(digits[-1], 1 if args.smoke else 3)
    transformer, md5 = versus_hand_transformer(*((2, 20) if args.smoke else (15, 100)))
    md = f"{md1}\n\n{md2}\n\n{md3}\n\n{md4}\n\n{md5}"
    result = {
        "versus_hand": vs,
        "parts": parts,
        "per_digit": scale,
        "profile": ops,
        "transformer": transformer,
    }
    save("train_speed", result, md, smoke=args.smoke)


if __name__ == "__main__":
    main()
