"""GPU throughput: samples/s of one trial alone on the GPU, and the aggregate samples/s of 1, 2,
4, 8 and 16 trials sharing it through fractional GPUs (what ``--gpus-per-trial`` asks Ray for).

    bash bench/gpu.sh              # on a GPU machine: about 4 minutes on one H200-class GPU
    bash bench/gpu.sh --smoke      # a few seconds per phase
    (no GPU visible: the CPU fallback, 1 and 2 concurrent trials of a tiny model, says so)

Each phase runs N copies of one trial (the project's trainable, seeds 0..N-1) at once in one Ray
Tune experiment, each with ``{"gpu": 1/N, "cpu": 1}``, for a fixed time.
A trial's throughput is the median of the samples/s it reports (its training steps only,
evaluations excluded), leaving out its first report (CUDA start-up); the aggregate is their sum.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import median, save, table  # noqa: E402

# A trial of the default space's task, sized like its mid-range settings.
GPU_TRIAL = dict(cell="gru", hidden=128, layers=2, batch_size=256, lr=0.001, train_digits=10)
CPU_TRIAL = dict(cell="gru", hidden=16, layers=1, batch_size=32, lr=0.001, train_digits=5)


def phase(n: int, trial: dict, seconds: float, eval_every: int, gpu: bool) -> dict:
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from search.trainable import trainable

    # one CPU each, the project's default --cpus-per-trial; fractions where there are too few
    cpus = ray.cluster_resources().get("CPU", 1)
    per_trial = {"cpu": min(1.0, cpus / n), "gpu": 1 / n if gpu else 0}
    config = {
        **trial,
        "steps": 10**7,  # the phase's time limit ends it
        "eval_every": eval_every,
        "eval_size": 200,
        "test_digits": 20,
        "device": "cuda" if gpu else "cpu",
        "seed": tune.grid_search(list(range(n))),
    }
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        t0 = time.time()
        grid = tune.Tuner(
            tune.with_resources(trainable, per_trial),
            param_space=config,
            tune_config=tune.TuneConfig(max_concurrent_trials=n),
            run_config=tune.RunConfig(
                storage_path=tmp,
                stop={"time_total_s": seconds},
                callbacks=[JsonLoggerCallback()],  # connect() turns Tune's default loggers off
                verbose=0,
            ),
        ).fit()
        wall = time.time() - t0
        per = []
        for r in grid:
            df = r.metrics_dataframe
            rates = [] if df is None or "samples_per_s" not in df else list(df["samples_per_s"])
            rates = rates[1:] or rates  # the first report holds CUDA's start-up
            per.append(median(rates) if rates else 0.0)
    return {
        "n": n,
        "resources": per_trial,
        "per_trial": per,
        "aggregate": sum(per),
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few seconds per phase")
    ap.add_argument("--cpu", action="store_true", help="the CPU fallback even where a GPU is")
    ap.add_argument("--seconds", type=float, default=None, help="training time per phase")
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables per phase
    import torch

    gpu = torch.cuda.is_available() and not args.cpu
    if gpu:
        counts, trial, seconds, every = [1, 2, 4, 8, 16], GPU_TRIAL, 30.0, 200
        if args.smoke:
            counts, seconds = [1, 2], 8.0
    else:
        print("bench/gpu.py: no GPU visible: the CPU fallback (1 and 2 trials)", file=sys.stderr)
        counts, trial, seconds, every = [1, 2], CPU_TRIAL, (2.0 if args.smoke else 20.0), 20
    seconds = args.seconds or seconds
    from search.tune import connect

    connect(None)
    phases = [phase(n, trial, seconds, every, gpu) for n in counts]
    import ray

    ray.shutdown()
    base = phases[0]["aggregate"]
    rows = [
        [
            p["n"],
            p["resources"]["gpu"],
            p["resources"]["cpu"],
            median(p["per_trial"]),
            p["aggregate"],
            p["aggregate"] / base,
        ]
        for p in phases
    ]
    where = torch.cuda.get_device_name(0) if gpu else "CPU fallback (no GPU)"
    md = f"{where}; trial: {trial}, {seconds:.0f} s per phase.\n\n" + table(
        [
            "concurrent trials",
            "gpus per trial",
            "cpus per trial",
            "samples/s per trial (median)",
            "aggregate samples/s",
            "x one trial",
        ],
        rows,
    )
    save("gpu", {"device": where, "trial": trial, "phases": phases}, md, smoke=args.smoke)


if __name__ == "__main__":
    main()
