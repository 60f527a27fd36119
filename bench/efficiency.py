"""Search efficiency: how much compute each way of searching spends to find what it looks for.

    python bench/efficiency.py           # 5 methods x 3 search seeds x 2 tasks (15 minutes here)
    python bench/efficiency.py --smoke   # every method once, at toy size

Methods, each with the same space, trial count, step budget and 2 CPUs:

- ``tpe+asha``: this project's search: per-cell Optuna TPE + per-cell ASHA in one Ray Tune
  experiment (search.percell, search.trainable, reused actors, a checkpoint at every report).
- ``tpe+asha+seed``: the same, with the seed report's setting (below, clamped to the space's
  ranges) as each cell's first trial (``points_to_evaluate``, as in spaces/default.yaml).
- ``random``: Ray Tune's random search (BasicVariantGenerator) over the same ranges, no early
  stopping, the same trainable.
- ``optuna+hyperband``: Optuna alone, no Ray: TPE (the project's sampler settings) with Optuna's
  own HyperbandPruner, two worker processes sharing one sqlite study per cell.
- ``seed grid``: the seed report's way, one factor at a time around its setting (hidden 32,
  layers 2, lr 0.001, batch 128): hidden 16/64, layers 1/4/8, lr 0.01/0.05/0.1; 9 runs per
  cell, full budget each, two at a time.

Tasks:

- ``solve`` (bench/spaces/efficiency.yaml): time and training steps until every cell has a
  trial with exact-match >= 0.999 on the 100-digit held-out sums (``solved_step`` recorded).
- ``generalize`` (spaces/generalize.yaml, its budget, cut to bench size: rnn and gru, 4 trials
  per cell, 200 held-out sums): the best exact-match each cell reaches within a fixed budget of
  training steps (a third of what all its trials at full length would cost).

Every trial's reports are stamped with the time they reached the driver (Tune) or were written
(Optuna, grid); compute until an instant counts each trial's steps up to it (interpolated
between reports for a trial still running). Runs stop once the target is met. Every trial
trains with the search seed as its training seed; W&B is off for all methods.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import OUT, ROOT, median, save, spread, table  # noqa: E402

METHODS = ("tpe+asha", "tpe+asha+seed", "random", "optuna+hyperband", "seed grid")
WORKERS = 2  # the machine's CPUs: two trials at a time, for every method
SEED_GRID = [
    {},
    {"hidden": 16},
    {"hidden": 64},
    {"layers": 1},
    {"layers": 4},
    {"layers": 8},
    {"lr": 0.01},
    {"lr": 0.05},
    {"lr": 0.1},
]
SEED_SETTING = {"hidden": 32, "layers": 2, "lr": 0.001, "batch_size": 128}


# -- the tasks ------------------------------------------------------------------------------------


def task_space(task: str, smoke: bool, seed: int):
    """The space of a task at bench size, with the search seed as sampler and training seed."""
    from search.space import load_space

    if smoke:
        space = load_space(ROOT / "bench/spaces/efficiency-smoke.yaml")
    elif task == "solve":
        space = load_space(ROOT / "bench/spaces/efficiency.yaml")
    else:
        # its own budget (2000 steps, an evaluation every 100, ASHA from 300), fewer trials
        space = load_space(ROOT / "spaces/generalize.yaml").override(
            cells=("rnn", "gru"), trials=4
        )
        space = dataclasses.replace(space, fixed={**space.fixed, "eval_size": 200})
    return dataclasses.replace(space, seed=seed, fixed={**space.fixed, "seed": seed})


def budget_steps(space) -> int:
    """The generalize task's fixed budget: a third of what every trial at full length costs."""
    return space.trials * len(space.cells) * space.budget.max_steps // 3


# -- events: one line per trial start and per report, for every method ----------------------------


def start_event(trial: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"t": time.time(), "kind": "start", "trial": trial, "config": config}


def report_event(trial: str, cell: str, metrics: dict[str, Any]) -> dict[str, Any]:
    em = metrics.get("exact_match")
    return {
        "t": time.time(),
        "kind": "report",
        "trial": trial,
        "cell": cell,
        "step": int(metrics["step"]),
        "exact_match": em if isinstance(em, (int, float)) and math.isfinite(em) else 0.0,
        "solved": metrics.get("solved_step") is not None,
        "val_loss": metrics.get("val_loss"),
    }


def target_met(events: list[dict[str, Any]], space, target: str) -> bool:
    if target == "solve":
        solved = {e["cell"] for e in events if e["kind"] == "report" and e["solved"]}
        return solved >= set(space.cells)
    last: dict[str, int] = {}
    for e in events:
        if e["kind"] == "report":
            last[e["trial"]] = e["step"]
    return sum(last.values()) >= budget_steps(space)


# -- Ray Tune methods: tpe+asha and random --------------------------------------------------------


def tune_method(method: str, space, target: str, folder: Path) -> tuple[list[dict], float]:
    from ray import tune
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.stopper import Stopper

    from search.schedulers import SCHEDULERS
    from search.searcher import PerCellSearch
    from search.trainable import trainable

    class Record(tune.Callback, Stopper):
        """Stamps each start and report as the driver sees it; stops all once the target is met."""

        def __init__(self):
            self.events: list[dict[str, Any]] = []

        def on_trial_start(self, iteration, trials, trial, **info):
            self.events.append(start_event(trial.trial_id, trial.config))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "step" in result:
                self.events.append(report_event(trial.trial_id, trial.config["cell"], result))

        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return target_met(self.events, space, target)

    record = Record()
    n = space.trials * len(space.cells)
    if method.startswith("tpe+asha"):  # what search.tune.run builds, minus W&B and results
        param_space = None
        if method == "tpe+asha+seed":  # as spaces/default.yaml does (points_to_evaluate)
            space = space.override(points=(seed_point(space),))
        searcher = PerCellSearch(space)
        tune_config = tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=WORKERS),
            scheduler=SCHEDULERS[space.scheduler](space),
            num_samples=n,
            reuse_actors=True,
        )
    else:
        param_space = {
            **space.base_config(space.cells[0]),
            "cell": tune.grid_search(list(space.cells)),  # x trials: round-robin over cells
            **{p.name: random_domain(p) for p in space.params},
        }
        tune_config = tune.TuneConfig(
            search_alg=BasicVariantGenerator(random_state=space.seed, max_concurrent=WORKERS),
            num_samples=space.trials,
            reuse_actors=True,
        )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=method.replace("+", "-"),
            storage_path=str(folder),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[record],
            stop=record,
            verbose=0,
        ),
    )
    t0 = time.time()
    tuner.fit()
    return record.events, t0


def seed_point(space) -> dict[str, Any]:
    """The seed report's setting in this space's terms: each searched parameter at the seed's
    value (TrainConfig's default where the seed says nothing), clamped into the range."""
    from adder.config import TrainConfig

    seed = {**TrainConfig().to_dict(), **SEED_SETTING}
    point = {}
    for p in space.params:
        v = seed[p.name]
        if p.kind == "choice":
            point[p.name] = v if v in p.choices else p.choices[0]
        else:
            point[p.name] = min(max(v, p.low), p.high)
    return point


def random_domain(p):
    from ray import tune

    if p.kind == "choice":
        return tune.choice(list(p.choices))
    if p.kind == "int":
        if p.step:
            return tune.qrandint(p.low, p.high, p.step)
        return (tune.lograndint if p.log else tune.randint)(p.low, p.high + 1)
    if p.step:
        return tune.quniform(p.low, p.high, p.step)
    return (tune.loguniform if p.log else tune.uniform)(p.low, p.high)


# -- process methods: optuna+hyperband and the seed grid ------------------------------------------


def process_method(
    method: str, space, target: str, folder: Path, smoke: bool, task: str
) -> tuple[list[dict], float]:
    """Start the workers, watch their event files, stop them all once the target is met."""
    seed = space.seed
    common = [method, task, str(seed), str(folder), "1" if smoke else "0"]
    if method == "optuna+hyperband":
        import optuna

        url = f"sqlite:///{folder / 'optuna.db'}"
        for cell in space.cells:  # made once here: two workers creating it at once would race
            optuna.create_study(
                study_name=cell,
                storage=url,
                direction="minimize" if space.mode == "min" else "maximize",
            )
        commands = [[*common, str(w)] for w in range(WORKERS)]
    else:
        commands = [[*common, "pool"]]
    t0 = time.time()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", *c],
            cwd=ROOT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for c in commands
    ]
    events: list[dict[str, Any]] = []
    offsets: dict[Path, int] = {}
    while True:
        for f in sorted(folder.glob("events-*.jsonl")):
            with open(f) as fh:
                fh.seek(offsets.get(f, 0))
                chunk = fh.read()
            complete = chunk[: chunk.rfind("\n") + 1]
            offsets[f] = offsets.get(f, 0) + len(complete)
            events += [json.loads(line) for line in complete.splitlines() if line]
        done = all(p.poll() is not None for p in procs)
        if done or target_met(events, space, target):
            break
        time.sleep(0.2)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return events, t0


def worker(method: str, task: str, seed: str, folder: str, smoke: str, which: str) -> None:
    """One worker process of a process method; appends its events to its own file."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    space = task_space(task, smoke == "1", int(seed))
    if method == "optuna+hyperband":
        optuna_worker(space, Path(folder), int(which))
    else:
        grid_pool(space, Path(folder), SEED_GRID[:3] if smoke == "1" else SEED_GRID)


def emitter(folder: Path):
    out = open(folder / f"events-{os.getpid()}.jsonl", "a")  # noqa: SIM115 (lives with the worker)

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    return emit


def run_trial(trial: str, config: dict[str, Any], emit, on_report=None) -> dict[str, Any]:
    from adder.config import TrainConfig
    from adder.train import train

    emit(start_event(trial, config))

    def report(metrics, checkpoint):
        emit(report_event(trial, config["cell"], metrics))
        return on_report(metrics) if on_report else False

    return train(TrainConfig.from_dict(config), report=report)


def optuna_worker(space, folder: Path, w: int) -> None:
    import optuna

    from search.space import Sampler
    from search.studies import _tpe

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    emit = emitter(folder)
    url = f"sqlite:///{folder / 'optuna.db'}"
    b = space.budget
    worst = math.inf if space.mode == "min" else -math.inf
    studies = {
        cell: optuna.load_study(
            study_name=cell,
            storage=url,
            # each worker its own stream: two equal seeds would sample the same first trials
            sampler=_tpe(space, cell, space.seed * 1000 + 10 * w + i),
            pruner=optuna.pruners.HyperbandPruner(
                min_resource=b.grace_steps,
                max_resource=b.max_steps,
                reduction_factor=int(b.reduction_factor),
            ),
        )
        for i, cell in enumerate(space.cells)
    }

    def objective(cell: str):
        def run(trial: optuna.Trial) -> float:
            Sampler(space.params, cell)(trial)
            config = {**space.base_config(cell), **trial.params}
            pruned = []

            def on_report(m) -> bool:
                v = m.get(space.metric)
                trial.report(v if isinstance(v, float) and math.isfinite(v) else worst, m["step"])
                if trial.should_prune():
                    pruned.append(m["step"])
                    return True
                return False

            result = run_trial(f"{cell}-{w}-{trial.number}", config, emit, on_report)
            if pruned:
                raise optuna.TrialPruned()
            v = result.get(space.metric, worst)
            return v if isinstance(v, float) and math.isfinite(v) else worst

        return run

    for _ in range(w, space.trials, WORKERS):  # the two workers split each cell's quota
        for cell in space.cells:
            studies[cell].optimize(objective(cell), n_trials=1)


def grid_configs(space, grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The seed's one-factor-at-a-time grid, round-robin over cells, in the report's order."""
    return [
        {**space.base_config(cell), **SEED_SETTING, **change}
        for change in grid
        for cell in space.cells
    ]


def _grid_one(args) -> None:
    i, config, folder = args
    run_trial(f"{config['cell']}-grid-{i}", config, emitter(Path(folder)))


def grid_pool(space, folder: Path, grid: list[dict[str, Any]]) -> None:
    import multiprocessing as mp

    jobs = [(i, c, str(folder)) for i, c in enumerate(grid_configs(space, grid))]
    with mp.get_context("fork").Pool(WORKERS) as pool:
        for _ in pool.imap(_grid_one, jobs, chunksize=1):  # in order: the report's order
            pass


# -- compute until an instant ---------------------------------------------------------------------


def params_of(config: dict[str, Any]) -> int:
    from adder.config import TrainConfig
    from adder.models import Adder, count_params

    cfg = TrainConfig.from_dict(
        {k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__}
    )
    return count_params(Adder(cfg.model_config()))


class Trials:
    """Each trial's (time, step) points: its steps at any instant, interpolated between reports."""

    def __init__(self, events: list[dict[str, Any]]):
        self.points: dict[str, list[tuple[float, int]]] = {}
        self.config: dict[str, dict[str, Any]] = {}
        for e in sorted(events, key=lambda e: e["t"]):
            if e["kind"] == "start" and e["trial"] not in self.points:
                self.points[e["trial"]] = [(e["t"], 0)]
                self.config[e["trial"]] = e["config"]
            elif e["kind"] == "report" and e["trial"] in self.points:
                self.points[e["trial"]].append((e["t"], e["step"]))
        self.params = {k: params_of(c) for k, c in self.config.items()}

    def steps_at(self, trial: str, t: float) -> float:
        pts = self.points[trial]
        if t <= pts[0][0]:
            return 0.0
        for (t1, s1), (t2, s2) in zip(pts, pts[1:], strict=False):
            if t <= t2:
                return s1 + (s2 - s1) * (t - t1) / (t2 - t1) if t2 > t1 else s2
        return float(pts[-1][1])

    def seconds_at(self, trial: str, t: float) -> float:
        pts = self.points[trial]
        return max(0.0, min(t, pts[-1][0]) - pts[0][0])

    def compute_at(self, t: float, cell: str | None = None) -> dict[str, float]:
        """Compute spent by ``t`` (by the trials of ``cell`` only, if given)."""
        out = {"steps": 0.0, "samples": 0.0, "gflop": 0.0, "trial_s": 0.0, "trials": 0}
        for k, cfg in self.config.items():
            if self.points[k][0][0] >= t or cell not in (None, cfg["cell"]):
                continue
            steps = self.steps_at(k, t)
            out["trials"] += 1
            out["steps"] += steps
            out["samples"] += steps * cfg["batch_size"]
            # forward + backward ~ 6 flops per parameter per digit position
            positions = steps * cfg["batch_size"] * (cfg["train_digits"] + 1)
            out["gflop"] += 6 * self.params[k] * positions / 1e9
            out["trial_s"] += self.seconds_at(k, t)
        return out


def analyze(events: list[dict], t0: float, space, target: str) -> dict[str, Any]:
    """The compute a run spent on its target.

    ``solve``: for each cell, the compute of that cell's trials until its first solving report,
    summed over cells (the cells are independent studies), and also the compute of all trials
    until the last cell is solved. A cell never solved counts everything its trials spent.
    ``budget``: the best exact-match per cell among the reports made before the run's steps
    reached the budget.
    """
    trials = Trials(events)
    reports = sorted((e for e in events if e["kind"] == "report"), key=lambda e: e["t"])
    end = max((e["t"] for e in events), default=t0)
    if target == "solve":
        first: dict[str, float] = {}
        for e in reports:
            if e["solved"] and e["cell"] not in first:
                first[e["cell"]] = e["t"]
        met = set(first) >= set(space.cells)
        per_cell = {c: trials.compute_at(first.get(c, end), cell=c) for c in space.cells}
        out: dict[str, Any] = {
            key: sum(per_cell[c][key] for c in space.cells)
            for key in ("steps", "samples", "gflop", "trial_s", "trials")
        }
        t_end = max(first.values()) if met else end
        solved_at = {}  # trial -> the step it solved at, for trials that did
        for e in reports:
            if e["solved"] and e["trial"] not in solved_at:
                solved_at[e["trial"]] = e["step"]
        out.update(
            met=met,
            cells_solved=len(first),
            trials_started=len(trials.config),
            trials_solved=len(solved_at),
            solved_steps=sorted(solved_at.values()),
            per_cell={c: {**per_cell[c], "s": first.get(c, end) - t0} for c in space.cells},
            until_all=trials.compute_at(t_end),
        )
    else:
        budget, t_end = budget_steps(space), end
        for e in reports:
            if trials.compute_at(e["t"])["steps"] >= budget:
                t_end = e["t"]
                break
        best = {c: 0.0 for c in space.cells}
        for e in reports:
            if e["t"] <= t_end:
                best[e["cell"]] = max(best[e["cell"]], e["exact_match"])
        out = {"met": True, "budget_steps": budget, "best_exact_match": best}
        out["mean_best_exact_match"] = sum(best.values()) / len(best)
        out.update(trials.compute_at(t_end))
    return {**out, "wall_s": t_end - t0}


# -- the benchmark --------------------------------------------------------------------------------


def run_one(method: str, task: str, seed: int, smoke: bool) -> dict[str, Any]:
    space = task_space(task, smoke, seed)
    target = "solve" if task == "solve" else "budget"
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp:
        folder = Path(tmp)
        if method.startswith("tpe+asha") or method == "random":  # the Ray Tune ones
            events, t0 = tune_method(method, space, target, folder)
        else:
            events, t0 = process_method(method, space, target, folder, smoke, task)
    result = analyze(events, t0, space, target)
    print(f"  {task} seed {seed} {method}: {json.dumps(result)}", file=sys.stderr, flush=True)
    return {**result, "t0": t0, "events": events}  # the raw events, to analyze again


def summarize(task: str, runs: dict[str, list[dict[str, Any]]], space) -> str:
    base = runs.get("random")
    rows = []
    for method, rs in runs.items():
        steps = [r["steps"] for r in rs]
        if task == "solve":
            ratio = [b["steps"] / r["steps"] for b, r in zip(base or rs, rs, strict=True)]
            rows.append(
                [
                    method,
                    f"{sum(r['cells_solved'] for r in rs)}/{len(rs) * len(space.cells)}",
                    median(steps),
                    spread(steps),
                    median(ratio) if base else None,
                    spread(ratio) if base else None,
                    median([r["samples"] for r in rs]),
                    median([r["gflop"] for r in rs]),
                    median([r["trial_s"] for r in rs]),
                    median([r["until_all"]["steps"] for r in rs]),
                    median([r["wall_s"] for r in rs]),
                ]
            )
        else:
            rows.append(
                [
                    method,
                    median([r["mean_best_exact_match"] for r in rs]),
                    " ".join(
                        f"{c} {median([r['best_exact_match'][c] for r in rs]):.3f}"
                        for c in space.cells
                    ),
                    median(steps),
                    median([r["trials"] for r in rs]),
                    median([r["trial_s"] for r in rs]),
                    median([r["wall_s"] for r in rs]),
                ]
            )
    if task == "solve":
        cols = [
            "method",
            "cells solved",
            "steps to a solver, summed over cells",
            "(min-max)",
            "x fewer steps than random",
            "(min-max)",
            "samples",
            "GFLOP (est.)",
            "trial-seconds",
            "steps until all cells solved",
            "wall s until all cells solved",
        ]
    else:
        cols = [
            "method",
            "mean best exact-match",
            "best per cell",
            "steps spent",
            "trials started",
            "trial-seconds",
            "wall s",
        ]
    return table(cols, rows)


def solve_profile(runs: dict[str, list[dict[str, Any]]], space) -> str:
    """How often a trial solves, and when: the bound on what any method can save."""
    rows, pooled = [], []
    for method, rs in runs.items():
        started = sum(r.get("trials_started", 0) for r in rs)
        solved = sum(r.get("trials_solved", 0) for r in rs)
        steps = [x for r in rs for x in r.get("solved_steps", [])]
        pooled += steps
        share = f"{100 * solved / started:.0f}%" if started else "-"
        rows.append([method, started, solved, share, median(steps) if steps else None])
    text = table(
        ["method", "trials started", "trials that solved", "share", "median solving step"], rows
    )
    if pooled and "random" in runs:
        oracle = median(pooled) * len(space.cells)
        rand = median([r["steps"] for r in runs["random"]])
        text += (
            f"\n\nA search that picked a solving setting at its first try in every cell would "
            f"spend about {oracle:.0f} steps (median solving step x {len(space.cells)} cells); "
            f"random search without early stopping spent {rand:.0f}, **{rand / oracle:.1f}x** "
            f"that: the most any method could save against it on this task."
        )
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="every method once, toy size")
    ap.add_argument("--seeds", type=int, default=3, help="search seeds (default 3)")
    ap.add_argument("--tasks", default="solve,generalize", help="solve,generalize")
    ap.add_argument("--methods", default=",".join(METHODS), help=",".join(METHODS))
    ap.add_argument(
        "--add-to",
        type=Path,
        default=None,
        help="a results file (bench/out/efficiency.json) whose runs this one's join",
    )
    ap.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables per run
    from search.tune import connect

    connect(None)  # one local Ray for every Tune run: its start-up is no method's cost
    import ray

    tasks = args.tasks.split(",")
    methods = args.methods.split(",")
    seeds = range(1 if args.smoke else args.seeds)
    runs = {task: {m: [] for m in methods} for task in tasks}
    for task in tasks:
        for seed in seeds:
            for method in methods:  # interleaved: a drift in the machine's load hits them all
                runs[task][method].append(run_one(method, task, seed, args.smoke))
                partial = OUT / (
                    "efficiency-smoke.partial.json" if args.smoke else "efficiency.partial.json"
                )
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(json.dumps(runs, default=str) + "\n")
    ray.shutdown()
    if args.add_to is not None:  # earlier runs of other methods, in the same tables
        earlier = json.loads(args.add_to.read_text())["runs"]
        for task in tasks:
            runs[task] = {**earlier.get(task, {}), **runs[task]}
            runs[task] = {m: runs[task][m] for m in METHODS if m in runs[task]}
    md = []
    for task in tasks:
        space = task_space(task, args.smoke, 0)
        b = space.budget
        what = (
            "until every cell has a trial with exact-match >= 0.999 on the held-out sums"
            if task == "solve"
            else f"within a budget of {budget_steps(space)} training steps"
        )
        md.append(
            f"#### {task}: `{Path(space.source).resolve().relative_to(ROOT)}`, "
            f"{len(list(seeds))} search seeds, {what}\n\n"
            f"{len(space.cells)} cells x {space.trials} trials, max_steps {b.max_steps}, "
            f"eval_every {b.eval_every}, ASHA/Hyperband grace {b.grace_steps} and reduction "
            f"factor {b.reduction_factor:g}, train_digits {space.fixed['train_digits']}, "
            f"test_digits {space.fixed['test_digits']}, eval_size {space.fixed['eval_size']}; "
            f"medians over seeds.\n\n" + summarize(task, runs[task], space)
        )
        if task == "solve":
            md.append(solve_profile(runs[task], space))
    save("efficiency", {"runs": runs}, "\n\n".join(md), smoke=args.smoke)


if __name__ == "__main__":
    main()
