"""Search overhead: the share of a search's core-time spent inside training steps.

    python bench/overhead.py            # bench/spaces/overhead.yaml x 3 runs, spaces/smoke.yaml x 2
    python bench/overhead.py --smoke    # one two-trial search: the measurement, end to end

Each run is a real ``adder search`` (local Ray, W&B offline) in a child process. Its trainable is
wrapped with timers around the real code (the project's trainable and trainer run inside, not a
copy): time inside training steps, evaluation, checkpoint + report, model set-up. Core-time is
the command's wall time x the CPUs Ray was given. The rest of the account: the driver's stamps
(Ray start-up, writing the results), the gaps between trials, and the CPU time of every process
of the search (driver, raylet, GCS, workers, W&B), read from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, TreeCPU, median, save, spread, table  # noqa: E402

SPACES = {
    "full": [(ROOT / "bench/spaces/overhead.yaml", 3), (ROOT / "spaces/smoke.yaml", 2)],
    "smoke": [(ROOT / "bench/spaces/overhead-smoke.yaml", 1)],
}


# -- the child: one real search with a timed trainable ------------------------------------------


def make_timed_trainable(folder: str):
    """The project's trainable, with timers around its parts; one JSON file per trial run.

    The file is rewritten at every report, so a trial that ASHA stops (its thread ends inside
    ``tune.report``) still leaves its account.
    """

    def timed_trainable(config: dict[str, Any]) -> None:
        from time import perf_counter

        from ray import tune

        import adder.train as T
        import search.trainable as S

        acc = dict.fromkeys(
            ("trainable", "train", "setup", "evaluate", "report", "save", "tune_report"), 0.0
        )
        meta = {
            "trial_id": tune.get_context().get_trial_id(),
            "cell": config.get("cell"),
            "batch_size": config.get("batch_size"),
            "pid": os.getpid(),
            "start": time.time(),
            "step": 0,
            "reports": 0,
        }
        path = Path(folder) / f"{meta['trial_id']}-{os.getpid()}-{time.time_ns()}.json"

        def dump() -> None:
            path.write_text(json.dumps({**meta, **acc, "end": time.time()}))

        def timed(name, fn):
            def wrapper(*args, **kwargs):
                t = perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    acc[name] += perf_counter() - t

            return wrapper

        saved = {
            (T, "build"): T.build,
            (T, "held_out"): T.held_out,
            (T, "evaluate"): T.evaluate,
            (S, "save_checkpoint"): S.save_checkpoint,
            (S, "train"): S.train,
            (tune, "report"): tune.report,
        }
        real_train, real_report = S.train, tune.report

        def timed_report(metrics, *args, **kwargs):
            meta["step"] = metrics.get("step", meta["step"])
            meta["reports"] += 1
            dump()
            return timed("tune_report", real_report)(metrics, *args, **kwargs)

        def timed_train(cfg, *, report=None, resume=None):
            report = timed("report", report) if report is not None else None
            return timed("train", real_train)(cfg, report=report, resume=resume)

        T.build = timed("setup", T.build)
        T.held_out = timed("setup", T.held_out)
        T.evaluate = timed("evaluate", T.evaluate)
        S.save_checkpoint = timed("save", S.save_checkpoint)
        S.train = timed_train
        tune.report = timed_report
        t0 = perf_counter()
        try:
            S.trainable(config)
        finally:
            acc["trainable"] += perf_counter() - t0
            for (module, name), fn in saved.items():
                setattr(module, name, fn)
            dump()

    return timed_trainable


def child(space: str, results: str, timings: str) -> int:
    stamps: dict[str, float] = {"start": float(os.environ.get("BENCH_T0", time.time()))}

    import search.results as R
    import search.trainable as S
    import search.tune as TU

    def stamped(name, fn):
        def wrapper(*args, **kwargs):
            stamps[f"{name}_start"] = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                stamps[f"{name}_end"] = time.time()

        return wrapper

    S.trainable = make_timed_trainable(timings)  # run() imports it at call time: it gets this
    TU.connect = stamped("ray_init", TU.connect)
    R.write_results = stamped("results", R.write_results)
    from search.cli import main

    rc = main(["search", space, "--results", results, "--wandb", "offline"])
    stamps["end"] = time.time()
    Path(timings, "driver.json").write_text(json.dumps({"rc": rc, **stamps}))
    return rc


# -- the parent: run, account, tabulate ---------------------------------------------------------


def run_once(space: Path, cpus: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        timings = Path(tmp, "timings")
        timings.mkdir()
        t0 = time.time()
        env = {**os.environ, "BENCH_T0": repr(t0), "WANDB_SILENT": "true"}
        cmd = [sys.executable, __file__, "--child", str(space), str(Path(tmp, "results")), str(timings)]
        p = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        with TreeCPU(p.pid) as cpu:
            _, err = p.communicate(timeout=1800)
        wall = time.time() - t0
        if p.returncode != 0:
            raise SystemExit(f"search failed ({p.returncode}):\n{err[-3000:]}")
        driver = json.loads(Path(timings, "driver.json").read_text())
        trials = [json.loads(f.read_text()) for f in timings.glob("*-*.json")]
    return account(wall, cpus, driver, trials, cpu.by_kind())


def account(wall, cpus, driver, trials, cpu_by_kind) -> dict[str, Any]:
    """Core-seconds, by where they went. Parts of a trial are wall time inside its process."""
    core = wall * cpus
    s = {k: sum(t[k] for t in trials) for k in ("trainable", "train", "setup", "evaluate")}
    s["report"] = sum(t["report"] for t in trials)
    s["save"] = sum(t["save"] for t in trials)
    s["tune_report"] = sum(t["tune_report"] for t in trials)
    steps = s["train"] - s["setup"] - s["evaluate"] - s["report"]
    first = min(t["start"] for t in trials)
    last = max(t["end"] for t in trials)
    before = (first - driver["start"]) * cpus
    after = (driver["end"] - last) * cpus
    parts = {
        "training steps": steps,
        "evaluation": s["evaluate"],
        "checkpoint + report (in trial)": s["report"],
        "model + held-out set-up": s["setup"],
        "trainable, outside train()": s["trainable"] - s["train"],
        "before the first trial (imports, Ray start-up)": before,
        "after the last trial (results, shutdown)": after,
        "between trials (trial start-up, gaps, idle slot)": core
        - before
        - after
        - s["trainable"],
    }
    return {
        "wall_s": wall,
        "cpus": cpus,
        "core_s": core,
        "share_training": steps / core,
        "share_training_during_trials": steps / ((last - first) * cpus),
        "parts_core_s": parts,
        "detail_s": {
            "ray_init": driver.get("ray_init_end", 0) - driver.get("ray_init_start", 0),
            "write_results": driver.get("results_end", 0) - driver.get("results_start", 0),
            "save_checkpoint": s["save"],
            "tune_report": s["tune_report"],
            "trials": len({t["trial_id"] for t in trials}),
            "steps": sum(t["step"] for t in trials),
            "reports": sum(t["reports"] for t in trials),
        },
        "cpu_s_by_process": cpu_by_kind,
        "cpu_s_total": sum(cpu_by_kind.values()),
    }


def summarize(space: Path, runs: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    parts = list(runs[0]["parts_core_s"])
    shares = [r["share_training"] for r in runs]
    during = [r["share_training_during_trials"] for r in runs]
    walls = [r["wall_s"] for r in runs]
    rows = []
    for part in parts:
        pct = [r["parts_core_s"][part] / r["core_s"] for r in runs]
        secs = [r["parts_core_s"][part] for r in runs]
        rows.append([part, f"{100 * median(pct):.1f}%", f"{median(secs):.1f}"])
    kinds = sorted({k for r in runs for k in r["cpu_s_by_process"]})
    cpu_rows = [
        [k, f"{median([r['cpu_s_by_process'].get(k, 0.0) for r in runs]):.1f}"] for k in kinds
    ]
    detail = {k: median([r["detail_s"][k] for r in runs]) for k in runs[0]["detail_s"]}
    name = space.relative_to(ROOT)
    md = [
        f"#### `{name}`: {len(runs)} runs, {runs[0]['cpus']} CPUs",
        "",
        f"Share of core-time inside training steps: **{100 * median(shares):.1f}%** "
        f"(runs: {', '.join(f'{100 * x:.1f}%' for x in shares)}); from the first trial's start "
        f"to the last one's end: {100 * median(during):.1f}%. Wall time {median(walls):.0f} s "
        f"({spread(walls)}).",
        "",
        table(["where the core-time went", "share (median)", "core-s (median)"], rows),
        "",
        f"Ray start-up (`ray.init`) {detail['ray_init']:.1f} s; writing the results "
        f"{detail['write_results']:.1f} s; {detail['trials']:.0f} trials, "
        f"{detail['steps']:.0f} training steps, {detail['reports']:.0f} reports; inside those "
        f"reports torch.save {detail['save_checkpoint']:.1f} s and tune.report (Tune's "
        f"checkpoint copy) {detail['tune_report']:.1f} s.",
        "",
        table(["CPU time by process (median of runs)", "CPU-s"], cpu_rows),
    ]
    result = {
        "space": str(name),
        "share_training": median(shares),
        "share_training_during_trials": median(during),
        "wall_s": median(walls),
        "runs": runs,
    }
    return result, "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="one tiny search: checks it runs")
    ap.add_argument("--runs", type=int, default=None, help="runs per space (default: 3 and 2)")
    ap.add_argument("--space", type=Path, default=None, help="measure this space instead")
    ap.add_argument("--child", nargs=3, metavar=("SPACE", "RESULTS", "TIMINGS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.exit(child(*args.child))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cpus = os.cpu_count() or 1
    plan = SPACES["smoke" if args.smoke else "full"]
    if args.space is not None:
        plan = [(args.space.resolve(), 3)]
    results, md = [], []
    for space, n in plan:
        runs = [run_once(space, cpus) for _ in range(args.runs or n)]
        r, text = summarize(space, runs)
        results.append(r)
        md.append(text)
    save("overhead", {"spaces": results}, "\n\n".join(md), smoke=args.smoke)


if __name__ == "__main__":
    main()
