"""Search overhead: the share of a search's core-time spent inside training steps.

    python bench/overhead.py           # spaces/default.yaml, smoke.yaml, bench/spaces/overhead*
    python bench/overhead.py --before 0e30566 --runs 2   # and the code at a git commit, in turn
    python bench/overhead.py --smoke   # one two-trial search: the measurement, end to end
    python bench/overhead.py --space spaces/default.yaml --runs 1 --keep results
        # make run's search, its results kept in results/default, its log in results/default.log

Each run is a real ``adder search`` (local Ray, W&B offline) in a child process. Its trainable is
wrapped with timers around the real code (the project's trainable and trainer run inside, not a
copy). A training step is what ``adder.train.train_step`` does plus drawing its batch, timed
where the training loop calls them; evaluation is every scoring of held-out sums (the quick
scoring of each report, the whole one, the confirmation, a verification run's fresh sums);
then checkpoint + report, and model and held-out set-up. Core-time is the command's wall time
x the CPUs Ray was given. The rest of the account: the driver's stamps (Ray start-up, writing
the results), the gaps between trials, and the CPU time of every process of the search
(driver, raylet, GCS, workers, W&B), read from /proc.
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

from bench._common import OUT, ROOT, TreeCPU, median, save, spread, table  # noqa: E402

SPACES = {  # (space, runs): the search make run starts, the smoke one, two bench sizes
    "full": [
        (ROOT / "spaces/default.yaml", 1),
        (ROOT / "spaces/smoke.yaml", 3),
        (ROOT / "bench/spaces/overhead.yaml", 3),
        (ROOT / "bench/spaces/overhead-long.yaml", 2),
    ],
    "smoke": [(ROOT / "bench/spaces/overhead-smoke.yaml", 1)],
}


# -- the child: one real search with a timed trainable ------------------------------------------


def make_timed_trainable(folder: str):
    """The project's trainable, with timers around its parts; one JSON file per trial run.

    The file is rewritten at every report, so a trial that ASHA stops (its thread ends inside
    ``tune.report``) still leaves its account.
    """

    def timed_trainable(config: dict[str, Any]) -> None:
        import importlib
        from time import perf_counter, thread_time

        from ray import tune

        T = importlib.import_module("adder.train")  # `adder.train` the attribute is a function
        S = importlib.import_module("search.trainable")

        parts = ("trainable", "train", "step", "setup", "evaluate", "confirm", "verify_eval",
                 "report", "save", "tune_report")  # fmt: skip
        wall, cpu = dict.fromkeys(parts, 0.0), dict.fromkeys(parts, 0.0)
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
            path.write_text(json.dumps({**meta, "wall": wall, "cpu": cpu, "end": time.time()}))

        inside: set[str] = set()  # parts being timed now: a nested call is not counted again

        def timed(name, fn, unless=("verify_eval",)):
            """Times ``fn`` as ``name``, unless inside ``name`` already or inside a part of
            ``unless`` (verification's scoring builds its sums and scores them: all of it is
            verify_eval, none of it setup or evaluate)."""

            def wrapper(*args, **kwargs):
                if name in inside or inside.intersection(unless):
                    return fn(*args, **kwargs)
                inside.add(name)
                t, c = perf_counter(), thread_time()
                try:
                    return fn(*args, **kwargs)
                finally:
                    wall[name] += perf_counter() - t
                    cpu[name] += thread_time() - c
                    inside.discard(name)

            return wrapper

        # where the trainable enters training: train_seeds (its seeds side by side), or, in a
        # version before it (--before), adder.train.train
        entry = "train_seeds" if hasattr(S, "train_seeds") else "train"
        # every function train() and the trainable call to score held-out sums, whichever path
        scoring = [(T, n) for n in ("score", "evaluate", "_evaluate") if hasattr(T, n)]
        # an older version (bench/overhead.py --before) may lack train_step and verify
        stepping = [(T, n) for n in ("train_step", "sample") if hasattr(T, "train_step")]
        verifying = [(S, "verify")] if hasattr(S, "verify") else []
        saved = {
            (T, "build"): T.build,
            (T, "held_out"): T.held_out,
            **{(m, n): getattr(m, n) for m, n in (*scoring, *stepping, *verifying)},
            (S, "save_checkpoint"): S.save_checkpoint,
            (S, entry): getattr(S, entry),
            (tune, "report"): tune.report,
        }
        real_train, real_report = getattr(S, entry), tune.report

        def timed_report(metrics, *args, **kwargs):
            meta["step"] = metrics.get("step", meta["step"])
            meta["reports"] += 1
            dump()
            return timed("tune_report", real_report)(metrics, *args, **kwargs)

        def timed_train(cfg, *args, report=None, resume=None):
            if entry == "train_seeds":  # train_seeds(cfg, seeds, report, resume=None)
                seeds, report, *rest = args
                return timed("train", real_train)(cfg, seeds, timed("report", report), *rest)
            report = timed("report", report) if report is not None else None
            return timed("train", real_train)(cfg, report=report, resume=resume)

        T.build = timed("setup", T.build)
        T.held_out = timed("setup", T.held_out)
        for module, name in stepping:  # the step, and its batch (held_out draws its own)
            setattr(module, name, timed("step", getattr(module, name)))
        for module, name in scoring:
            setattr(module, name, timed("evaluate", getattr(module, name)))
        if hasattr(T, "_evaluate") and config.get("confirm_digits"):
            # the confirmation, train()'s own call on the longer sums, is a part of its own
            test_or_iid, real = T._evaluate, saved[(T, "_evaluate")]
            confirming = timed("confirm", real, unless=("verify_eval", "evaluate"))

            def routed(model, batch, *args, **kwargs):
                if batch.s.shape[1] == config["confirm_digits"] + 1 and "evaluate" not in inside:
                    return confirming(model, batch, *args, **kwargs)
                return test_or_iid(model, batch, *args, **kwargs)

            T._evaluate = routed
        for module, name in verifying:
            setattr(module, name, timed("verify_eval", getattr(module, name)))
        S.save_checkpoint = timed("save", S.save_checkpoint)
        setattr(S, entry, timed_train)
        tune.report = timed_report
        try:
            timed("trainable", S.trainable)(config)
        finally:
            for (module, name), fn in saved.items():
                setattr(module, name, fn)
            dump()

    return timed_trainable


def child(space: str, results: str, timings: str, *extra: str) -> int:
    stamps: dict[str, float] = {"start": float(os.environ.get("BENCH_T0", time.time()))}
    if os.environ.get("BENCH_CODE"):
        sys.path.insert(0, os.environ["BENCH_CODE"])  # before this repository's copy

    import search.results as R
    import search.tune as TU

    def stamped(name, fn):
        def wrapper(*args, **kwargs):
            stamps[f"{name}_start"] = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                stamps[f"{name}_end"] = time.time()

        return wrapper

    def connect(*args, **kwargs):
        stamped("ray_init", real_connect)(*args, **kwargs)
        # only now: importing Ray before connect() sets its environment would change its auth
        import search.trainable as S

        S.trainable = make_timed_trainable(timings)  # run() imports it after connect()

    real_connect, TU.connect = TU.connect, connect
    R.write_results = stamped("results", R.write_results)
    from search.cli import main

    rc = main(["search", space, "--results", results, "--wandb", "offline", *extra])
    stamps["end"] = time.time()
    Path(timings, "driver.json").write_text(json.dumps({"rc": rc, **stamps}))
    return rc


# -- the parent: run, account, tabulate ---------------------------------------------------------


def run_once(
    space: Path, cpus: int, code: Path | None = None, keep: Path | None = None, extra=()
) -> dict[str, Any]:
    """One search; with ``code``, the project's packages come from there (an older version).
    With ``keep``, its results go there (as ``adder search --results``), its log beside them."""
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        timings = Path(tmp, "timings")
        timings.mkdir()
        t0 = time.time()
        env = {**os.environ, "BENCH_T0": repr(t0), "WANDB_SILENT": "true"}
        if code is not None:  # Ray's workers get the driver's cwd on their path: run from there
            env.update(BENCH_CODE=str(code), PYTHONPATH=str(code))
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(space),
            str(keep or Path(tmp, "results")),
            str(timings),
            *extra,
        ]
        log = Path(keep or tmp, f"{space.stem}.log")
        err = log.open("w")
        p = subprocess.Popen(
            cmd,
            cwd=code or ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        with TreeCPU(p.pid) as cpu:
            p.wait(timeout=6 * 3600)
        err.close()
        wall = time.time() - t0
        if p.returncode != 0:
            raise SystemExit(f"search failed ({p.returncode}):\n{log.read_text()[-3000:]}")
        driver = json.loads(Path(timings, "driver.json").read_text())
        trials = [json.loads(f.read_text()) for f in timings.glob("*-*.json")]
    first = min(t["start"] for t in trials)
    last = max(t["end"] for t in trials)
    return account(wall, cpus, driver, trials, cpu.by_kind(), cpu.cpu_between(first, last))


def trial_parts(trials: list[dict[str, Any]], clock: str) -> dict[str, float]:
    """Seconds of ``clock`` (wall or cpu) in each part of the trials, summed over trials."""
    s = {k: sum(t[clock].get(k, 0.0) for t in trials) for k in trials[0][clock]}
    rest = s["train"] - s["setup"] - s["report"] - s["evaluate"] - s.get("confirm", 0.0)
    step = s["step"] or rest  # an older version without train_step: all the rest of train()
    return {
        "training steps": step,
        "evaluation": s["evaluate"] + s.get("confirm", 0.0) + s.get("verify_eval", 0.0),
        "- of it, the held-out sets at every report": s["evaluate"],
        "- of it, the confirmation on longer sums": s.get("confirm", 0.0),
        "- of it, a verification run's fresh sums": s.get("verify_eval", 0.0),
        "checkpoint + report": s["report"],
        "model + held-out set-up": s["setup"],
        "train(), other (the loop around the steps)": rest - step,
        "trainable, outside train() and its scoring": s["trainable"]
        - s["train"]
        - s.get("verify_eval", 0.0),
        "(torch.save)": s["save"],
        "(tune.report)": s["tune_report"],
    }


def account(wall, cpus, driver, trials, cpu_by_kind, cpu_during_trials) -> dict[str, Any]:
    """Two accounts of one search.

    Core-time (wall x CPUs): what the issue asks, but on a shared machine other people's jobs
    stretch it. CPU time (every process of the search, from /proc; trial parts from the training
    thread's own clock): robust to other load, blind to cores left idle.
    """
    core = wall * cpus
    w, c = trial_parts(trials, "wall"), trial_parts(trials, "cpu")
    in_trials = sum(t["wall"]["trainable"] for t in trials)
    first = min(t["start"] for t in trials)
    last = max(t["end"] for t in trials)
    before = (first - driver["start"]) * cpus
    after = (driver["end"] - last) * cpus
    core_parts = {k: v for k, v in w.items() if not k.startswith("(")}
    core_parts["before the first trial (imports, Ray start-up)"] = before
    core_parts["after the last trial (results, shutdown)"] = after
    core_parts["between trials (trial start-up, gaps, idle slots)"] = (
        core - before - after - in_trials
    )
    total_cpu = sum(cpu_by_kind.values())
    trainable_cpu = sum(t["cpu"]["trainable"] for t in trials)
    cpu_parts = {k: v for k, v in c.items() if not k.startswith("(")}
    workers = cpu_by_kind.get("trial workers", 0.0)
    cpu_parts["trial workers, outside the trainable (start-up, Ray threads)"] = max(
        0.0, workers - trainable_cpu
    )
    for kind, v in cpu_by_kind.items():
        if kind != "trial workers":
            cpu_parts[f"process: {kind}"] = v
    return {
        "wall_s": wall,
        "cpus": cpus,
        "core_s": core,
        "cpu_s": total_cpu,
        "share_core": w["training steps"] / core,
        "share_core_during_trials": w["training steps"] / ((last - first) * cpus),
        "share_cpu": c["training steps"] / total_cpu,
        "share_cpu_during_trials": c["training steps"] / cpu_during_trials,
        "cpu_s_during_trials": cpu_during_trials,
        "core_parts": core_parts,
        "cpu_parts": cpu_parts,
        "detail": {
            "ray_init_s": driver.get("ray_init_end", 0) - driver.get("ray_init_start", 0),
            "write_results_s": driver.get("results_end", 0) - driver.get("results_start", 0),
            "torch_save_s": w["(torch.save)"],
            "tune_report_s": w["(tune.report)"],
            "trials": len({t["trial_id"] for t in trials}),
            "steps": sum(t["step"] for t in trials),
            "reports": sum(t["reports"] for t in trials),
            "load_avg_1m": os.getloadavg()[0],
        },
    }


def summarize(space: Path, runs: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    def pct(xs: list[float]) -> str:
        return f"{100 * median(xs):.1f}%"

    def rows(key: str, total: str) -> list[list[Any]]:
        names = list(dict.fromkeys(k for r in runs for k in r[key]))
        return [
            [
                name,
                pct([r[key].get(name, 0.0) / r[total] for r in runs]),
                f"{median([r[key].get(name, 0.0) for r in runs]):.1f}",
            ]
            for name in names
        ]

    d = {k: median([r["detail"][k] for r in runs]) for k in runs[0]["detail"]}
    name = space.relative_to(ROOT)
    share_cpu = [r["share_cpu"] for r in runs]
    share_core = [r["share_core"] for r in runs]
    walls = [r["wall_s"] for r in runs]
    md = [
        f"#### `{name}`: {len(runs)} runs on {runs[0]['cpus']} CPUs",
        "",
        f"- Share of the search's CPU time inside training steps: **{pct(share_cpu)}** "
        f"(runs: {', '.join(f'{100 * x:.1f}%' for x in share_cpu)}); from the first trial's "
        f"start to the last one's end: {pct([r['share_cpu_during_trials'] for r in runs])}.",
        f"- Share of core-time (wall x {runs[0]['cpus']} CPUs) inside training steps: "
        f"**{pct(share_core)}** (runs: {', '.join(f'{100 * x:.1f}%' for x in share_core)}); "
        f"from the first trial's start to the last one's end: "
        f"{pct([r['share_core_during_trials'] for r in runs])}.",
        f"- Wall time {median(walls):.0f} s ({spread(walls)}); 1-minute load average "
        f"{d['load_avg_1m']:.1f} at the end (other people's jobs included); {d['trials']:.0f} "
        f"trials, {d['steps']:.0f} training steps, {d['reports']:.0f} reports; `ray.init` "
        f"{d['ray_init_s']:.1f} s; writing the results {d['write_results_s']:.1f} s; in the "
        f"reports, torch.save {d['torch_save_s']:.1f} s and tune.report (Tune's checkpoint "
        f"copy, the wait for the driver) {d['tune_report_s']:.1f} s of wall time.",
        "",
        table(["CPU time of the search", "share", "CPU-s"], rows("cpu_parts", "cpu_s")),
        "",
        table(["core-time (wall x CPUs)", "share", "core-s"], rows("core_parts", "core_s")),
    ]
    result = {
        "space": str(name),
        "share_cpu": median(share_cpu),
        "share_core": median(share_core),
        "share_cpu_during_trials": median([r["share_cpu_during_trials"] for r in runs]),
        "share_core_during_trials": median([r["share_core_during_trials"] for r in runs]),
        "wall_s": median(walls),
        "runs": runs,
    }
    return result, "\n".join(md)


def export(ref: str, into: Path) -> Path:
    """The project's packages as they were at git ``ref``, for a side-by-side comparison."""
    archive = subprocess.run(
        ["git", "archive", ref, "adder", "search"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    if sys.argv[1:2] == ["--child"]:  # SPACE RESULTS TIMINGS, then adder search's own arguments
        sys.exit(child(*sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="one tiny search: checks it runs")
    ap.add_argument("--runs", type=int, default=None, help="runs per space (default: 3, 3, 2)")
    ap.add_argument("--space", type=Path, default=None, help="measure this space instead")
    ap.add_argument(
        "--before",
        metavar="REF",
        default=None,
        help="also measure the code at git REF, run for run alternating with this code",
    )
    ap.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the search's results under this folder (as adder search --results), its "
        "stderr in SPACE.log there",
    )
    ap.add_argument(
        "--search-args", default="", help="more arguments for adder search, e.g. '--trials 8'"
    )
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    extra = args.search_args.split()
    if args.keep is not None:
        args.keep = args.keep.resolve()
        args.keep.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cpus = os.cpu_count() or 1
    plan = SPACES["smoke" if args.smoke else "full"]
    if args.space is not None:
        plan = [(args.space.resolve(), 3)]
    results, md = [], []
    with tempfile.TemporaryDirectory(prefix="bench-before-") as old:
        code = export(args.before, Path(old)) if args.before else None
        for space, n in plan:
            runs, before = [], []
            for _ in range(args.runs or n):
                runs.append(run_once(space, cpus, keep=args.keep, extra=extra))
                if code is not None:
                    before.append(run_once(space, cpus, code))
                partial = OUT / f"overhead{'-smoke' if args.smoke else ''}.partial.json"
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps({"after": runs, "before": before}) + "\n")
            r, text = summarize(space, runs)
            if before:
                r["before"], old_text = summarize(space, before)
                text = compare(args.before, r, text, old_text)
            results.append(r)
            md.append(text)
    save("overhead", {"spaces": results}, "\n\n".join(md), smoke=args.smoke)


def compare(ref: str, r: dict[str, Any], text: str, old_text: str) -> str:
    """This code's account, the one of git ``ref`` below it, and the headline side by side."""
    b = r["before"]
    rows = [
        [
            what,
            f"{100 * b[key]:.1f}%",
            f"{100 * r[key]:.1f}%",
        ]
        for what, key in (
            ("share of CPU time in training steps", "share_cpu"),
            ("  from the first trial's start to the last one's end", "share_cpu_during_trials"),
            ("share of core-time in training steps", "share_core"),
            ("  from the first trial's start to the last one's end", "share_core_during_trials"),
        )
        if key in b and key in r
    ]
    parts = ("evaluation", "checkpoint + report", "training steps")
    for part in parts:
        old = median([x["cpu_parts"][part] for x in b["runs"]])
        new = median([x["cpu_parts"][part] for x in r["runs"]])
        rows.append([f"CPU-s in {part}", f"{old:.1f}", f"{new:.1f}"])
    head = table(["runs alternating, medians", f"before (`{ref}`)", "after (this code)"], rows)
    return f"{head}\n\nAfter:\n\n{text}\n\nBefore (`{ref}`):\n\n{old_text}"


if __name__ == "__main__":
    main()
