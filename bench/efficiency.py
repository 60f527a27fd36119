"""Search efficiency from a cold start: the compute each method spends until it holds an answer,
verified on fresh seeds, at least as good as a fixed reference.

    python bench/efficiency.py             # 4 methods x 10 search seeds (hours on 2 CPUs)
    python bench/efficiency.py --smoke     # every method once, at toy size

Every method searches bench/spaces/efficiency.yaml (the default space's task and criterion at
bench size: two cells, smaller models) with the same trials per cell, the same step budget per
trial, cells alternating the same way, two trials at a time, no start point, and the search
seed as its training seed:

- ``shipped``: this project's search as ``adder search`` builds it: per-cell Optuna TPE,
  per-cell ASHA with rungs in training GFLOP, then each cell's race on fresh seeds
  (search.searcher, search.schedulers, search.experiment).
- ``random``: Ray Tune's random search (BasicVariantGenerator), no early stopping.
- ``random+asha``: the same random search with one ASHA per cell on training steps (grace 150,
  reduction factor 3: what a Tune user sets up), ranking on the same objective.
- ``optuna+hyperband``: Optuna alone, no Ray: TPE (the project's sampler settings) with Optuna's
  HyperbandPruner on steps, two worker processes sharing one sqlite study per cell.

Each run goes to its full budget. Its answer per cell, at any moment, is its best search trial
so far by the objective (cost_to_solve: training GFLOP until solved). Answers are then verified
the same way, off the clock: retrained on 3 fresh seeds and scored on 1000 fresh sums of 100 and
1000 digits; one passes when every seed reaches exact-match 0.999 at both lengths, and its
verified cost is the mean GFLOP its seeds took to solve. (Each run's answers are verified in the
order it held them, up to the first one that meets the reference: the rest cannot change its
figure.) The reference per cell
is the median over seeds of random search's final answer's verified cost. A run reaches it when
it holds an answer that passes at that cost or less; the compute it spent until then is the
figure: training GFLOP of all the cell's trials (the unit of the objective) and trial-seconds
(evaluation included), summed over the cells. ``shipped`` is also charged its own verification
(``shipped, own answer``: the compute until its race ends, judged on the race's own seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import OUT, ROOT, median, save, spread, table  # noqa: E402

METHODS = ("shipped", "random", "random+asha", "optuna+hyperband")
WORKERS = 2  # the machine's CPUs: two trials at a time, for every method
ASHA_PEER = {"grace_steps": 150, "reduction_factor": 3.0}  # random+asha and Hyperband
ORACLE = {"seeds": 3, "digits": [100, 1000], "n": 1000}  # the off-clock verification
SMOKE_ORACLE = {"seeds": 2, "digits": [5, 8], "n": 100}


def task_space(smoke: bool, seed: int):
    """The bench space, cold, with the search seed as its sampler seed and training seed."""
    from search.space import load_space

    name = "efficiency-smoke.yaml" if smoke else "efficiency.yaml"
    space = load_space(ROOT / "bench" / "spaces" / name)
    return dataclasses.replace(space, seed=seed, points=(), fixed={**space.fixed, "seed": seed})


# -- events: one line per trial start, report and end, for every method -------------------------


def start_event(trial: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"t": time.time(), "kind": "start", "trial": trial, "cell": config["cell"],
            "config": {k: v for k, v in config.items() if not k.startswith("verify_")},
            "verify": "verify_of" in config}  # fmt: skip


def report_event(trial: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"t": time.time(), "kind": "report", "trial": trial, "step": int(metrics["step"]),
            "gflop": float(metrics.get("gflop") or 0.0)}  # fmt: skip


def end_event(trial: str, last: dict[str, Any]) -> dict[str, Any]:
    from search.metrics import cost_to_solve

    value = cost_to_solve(last) if last else math.inf
    return {"t": time.time(), "kind": "end", "trial": trial,
            "value": value if math.isfinite(value) else None}  # fmt: skip


# -- Ray Tune methods ----------------------------------------------------------------------------


def tune_method(method: str, space, folder: Path) -> tuple[list[dict], float, dict]:
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback
    from ray.tune.search import BasicVariantGenerator

    from search import experiment
    from search.racing import summary
    from search.schedulers import PerCellScheduler, SnapshotOnEnd
    from search.searcher import PerCellSearch
    from search.trainable import trainable

    class Record(tune.Callback):
        def __init__(self):
            self.events: list[dict[str, Any]] = []

        def on_trial_start(self, iteration, trials, trial, **info):
            self.events.append(start_event(trial.trial_id, trial.config))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "step" in result:
                self.events.append(report_event(trial.trial_id, result))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.events.append(end_event(trial.trial_id, trial.last_result or {}))

        def on_trial_error(self, iteration, trials, trial, **info):
            self.events.append(end_event(trial.trial_id, {}))

    record = Record()
    answers: dict[str, Any] = {}
    t0 = time.time()
    if method == "shipped":  # what search.tune.run builds, W&B off, no results written
        searcher = PerCellSearch(space, slots=WORKERS)
        tuner = experiment.build(
            folder, "shipped", searcher=searcher,
            scheduler=PerCellScheduler(space, searcher.clock), per_trial={"cpu": 1},
            max_concurrent=WORKERS, max_failures=0, wandb=("disabled", "", ""),
            total=space.trials * len(space.cells), callbacks=[record],
        )  # fmt: skip
        tuner.fit()
        digits, threshold = space.verify_digits(), space.verify.threshold
        for cell, race in searcher.races.races.items():
            if (w := race.winner()) is not None:
                answers[cell] = summary(w, digits, threshold)
        return record.events, t0, answers
    peer = dataclasses.replace(space, budget=dataclasses.replace(
        space.budget, grace_gflop=None, **ASHA_PEER))  # fmt: skip
    scheduler = PerCellScheduler(peer) if method == "random+asha" else SnapshotOnEnd()
    param_space = {
        **space.base_config(space.cells[0]),
        "cell": tune.grid_search(list(space.cells)),  # x trials: cells alternate
        **{p.name: random_domain(p) for p in space.params if not p.cells},
    }
    for p in space.params:  # a parameter of some cells only: drawn, then dropped elsewhere
        if p.cells:
            param_space[p.name] = random_domain(p)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=BasicVariantGenerator(random_state=space.seed, max_concurrent=WORKERS),
            scheduler=scheduler,
            num_samples=space.trials,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=method.replace("+", "-"),
            storage_path=str(folder),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[JsonLoggerCallback(), record],  # result.json: Tune reads it at the end
            verbose=0,
        ),
    )
    tuner.fit()
    return record.events, t0, answers


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


# -- Optuna alone: worker processes sharing one sqlite study per cell ----------------------------


def optuna_method(space, folder: Path, smoke: bool) -> tuple[list[dict], float, dict]:
    import optuna

    url = f"sqlite:///{folder / 'optuna.db'}"
    for cell in space.cells:  # made once here: two workers creating it at once would race
        optuna.create_study(study_name=cell, storage=url, direction="minimize")
    t0 = time.time()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                str(space.seed),
                str(folder),
                "1" if smoke else "0",
                str(w),
            ],
            cwd=ROOT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        for w in range(WORKERS)
    ]
    try:
        for p in procs:
            p.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    events = []
    for f in sorted(folder.glob("events-*.jsonl")):
        events += [json.loads(line) for line in f.read_text().splitlines() if line]
    return events, t0, {}


def optuna_worker(seed: str, folder: str, smoke: str, w: str) -> None:
    import optuna
    import torch

    from adder.config import TrainConfig
    from adder.train import train
    from search.metrics import UNSOLVED, cost_to_solve
    from search.space import Sampler
    from search.studies import _tpe

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, w = task_space(smoke == "1", int(seed)), int(w)
    out = open(Path(folder) / f"events-{w}.jsonl", "a")  # noqa: SIM115 (lives with the worker)

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    b = space.budget
    studies = {
        cell: optuna.load_study(
            study_name=cell,
            storage=f"sqlite:///{folder}/optuna.db",
            # each worker its own stream: two equal seeds would sample the same first trials
            sampler=_tpe(space, cell, space.seed * 1000 + 10 * w + i),
            pruner=optuna.pruners.HyperbandPruner(
                min_resource=ASHA_PEER["grace_steps"],
                max_resource=b.steps(cell),
                reduction_factor=int(ASHA_PEER["reduction_factor"]),
            ),
        )
        for i, cell in enumerate(space.cells)
    }

    def objective(cell: str):
        def run(trial: optuna.Trial) -> float:
            Sampler(space.params, cell)(trial)
            config = {**space.base_config(cell), **trial.params}
            name = f"{cell}-{w}-{trial.number}"
            emit(start_event(name, config))
            last: dict[str, Any] = {}

            def report(m, checkpoint) -> bool:
                last.update(m)
                emit(report_event(name, m))
                v = cost_to_solve(m)
                trial.report(v if math.isfinite(v) else 2 * UNSOLVED, m["step"])
                return trial.should_prune()

            result = train(TrainConfig.from_dict(config), report=report)
            emit(end_event(name, {**last, **result}))
            v = cost_to_solve({**last, **result})
            return v if math.isfinite(v) else 2 * UNSOLVED

        return run

    for _ in range(w, space.trials, WORKERS):  # the workers split each cell's quota
        for cell in space.cells:
            studies[cell].optimize(objective(cell), n_trials=1)


# -- the off-clock verification of every answer any run held ------------------------------------


def _verify_one(job: tuple[str, dict[str, Any], int, dict[str, Any]]) -> tuple[str, int, dict]:
    import torch

    from adder.config import TrainConfig
    from adder.train import train
    from search.racing import SEED_BASE, run_figures
    from search.trainable import verify

    torch.set_num_threads(1)
    key, config, j, oracle = job
    cfg = TrainConfig.from_dict({**config, "seed": SEED_BASE + j, "device": "cpu"})
    state: dict[str, Any] = {}
    result = train(cfg, report=lambda m, checkpoint: state.update(checkpoint()))
    scores = verify(state, {"verify_digits": oracle["digits"], "verify_n": oracle["n"]})
    return key, j, run_figures({**result, **scores}, oracle["digits"], 0.999, "cost_to_solve",
                               "min")  # fmt: skip


def verify_answers(configs: dict[str, dict], cache_path: Path, oracle: dict) -> dict[str, dict]:
    """config key -> {passed, cost (mean GFLOP to solve), runs}; cached across calls."""
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    jobs = [(k, c, j, oracle) for k, c in configs.items() if k not in cache
            for j in range(oracle["seeds"])]  # fmt: skip
    runs: dict[str, dict[int, dict]] = {}
    if jobs:
        print(f"  verifying {len(jobs) // oracle['seeds']} answers", file=sys.stderr, flush=True)
        with mp.get_context("spawn").Pool(WORKERS) as pool:
            for key, j, fig in pool.imap_unordered(_verify_one, jobs):
                runs.setdefault(key, {})[j] = fig
                if len(runs[key]) == oracle["seeds"]:
                    figs = list(runs[key].values())
                    passed = all(f["passed"] for f in figs)
                    cost = statistics.fmean(f["gflop_to_solve"] for f in figs) if passed else None
                    cache[key] = {"passed": passed, "cost": cost, "runs": figs}
                    cache_path.write_text(json.dumps(cache) + "\n")
    return cache


def next_answers(runs, cells, verified, reference) -> dict[str, dict]:
    """The answers still to verify: per run and cell, the first one not yet verified, as long as
    none before it passed at the reference's cost or below."""
    need = {}
    for r in runs:
        for cell in cells:
            for _, config, _ in Trials(r["events"]).answers(cell):
                v = verified.get(config_key(config))
                if v is None:
                    need[config_key(config)] = config
                    break
                if v["passed"] and v["cost"] <= reference[cell]:
                    break
    return need


def config_key(config: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)


# -- the accounting ------------------------------------------------------------------------------


class Trials:
    """Each trial's (time, GFLOP) points: its compute at any instant, interpolated."""

    def __init__(self, events: list[dict[str, Any]]):
        self.points: dict[str, list[tuple[float, float]]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        for e in sorted(events, key=lambda e: e["t"]):
            if e["kind"] == "start" and e["trial"] not in self.points:
                self.points[e["trial"]] = [(e["t"], 0.0)]
                self.info[e["trial"]] = e
            elif e["kind"] == "report" and e["trial"] in self.points:
                self.points[e["trial"]].append((e["t"], e["gflop"]))
            elif e["kind"] == "end" and e["trial"] in self.points:
                self.info[e["trial"]] = {**self.info[e["trial"]], "end": e}

    def _at(self, trial: str, t: float) -> float:
        pts = self.points[trial]
        if t <= pts[0][0]:
            return 0.0
        for (t1, g1), (t2, g2) in zip(pts, pts[1:], strict=False):
            if t <= t2:
                return g1 + (g2 - g1) * (t - t1) / (t2 - t1) if t2 > t1 else g2
        return pts[-1][1]

    def compute_at(self, t: float, cell: str) -> dict[str, float]:
        out = {"gflop": 0.0, "trial_s": 0.0}
        for k, info in self.info.items():
            if info["cell"] != cell:
                continue
            out["gflop"] += self._at(k, t)
            end = info.get("end", {}).get("t", self.points[k][-1][0])
            out["trial_s"] += max(0.0, min(t, end) - self.points[k][0][0])
        return out

    def race_gflop(self) -> float:
        """The GFLOP of the run's race (its verification trials), every cell."""
        return sum(self._at(k, math.inf) for k, i in self.info.items() if i["verify"])

    def answers(self, cell: str) -> list[tuple[float, dict[str, Any], float]]:
        """(when, config, value) each time the cell's best solved search trial changed."""
        from search.metrics import UNSOLVED

        mine = [i for i in self.info.values() if i["cell"] == cell and not i["verify"]]
        ended = sorted((i for i in mine if "end" in i), key=lambda i: i["end"]["t"])
        out, best = [], math.inf
        for i in ended:
            v = i["end"]["value"]
            if v is not None and v < min(best, UNSOLVED):
                best = v
                out.append((i["end"]["t"], i["config"], v))
        return out

    def end(self, cell: str, verify: bool | None = None) -> float:
        ts = [i["end"]["t"] for i in self.info.values()
              if i["cell"] == cell and "end" in i and verify in (None, i["verify"])]  # fmt: skip
        return max(ts, default=0.0)


def final_verified(run: dict[str, Any], cell: str, verified: dict) -> dict:
    """The verification of the run's final answer in ``cell`` ({} when it held none)."""
    answers = Trials(run["events"]).answers(cell)
    return verified.get(config_key(answers[-1][1]), {}) if answers else {}


def own_verified(run: dict[str, Any], cell: str) -> dict:
    """``shipped``'s race winner in ``cell``, as verified on the race's own fresh seeds."""
    a = run["answers"].get(cell, {})
    return {"passed": bool(a.get("passed")), "cost": a.get("mean_gflop_to_solve")}


def reach(run: dict[str, Any], cells: list[str], verified: dict, reference: dict) -> dict:
    """The compute a run spent until it held, in every cell, a verified answer at the
    reference's cost or below (``reached`` False: until its end, and it never did)."""
    trials = Trials(run["events"])
    out = {"gflop": 0.0, "trial_s": 0.0, "reached": True, "per_cell": {}}
    for cell in cells:
        when = None
        for t, config, _ in trials.answers(cell):
            v = verified.get(config_key(config), {})
            if v.get("passed") and v["cost"] <= reference[cell]:
                when = t
                break
        at = trials.compute_at(when if when is not None else trials.end(cell), cell)
        out["per_cell"][cell] = {**at, "reached": when is not None}
        out["gflop"] += at["gflop"]
        out["trial_s"] += at["trial_s"]
        out["reached"] &= when is not None
    return out


def reach_own(run: dict[str, Any], cells: list[str], reference: dict) -> dict:
    """``shipped``'s own answer: the compute until its race ended, its verification included,
    judged on the race's own fresh seeds."""
    trials = Trials(run["events"])
    out = {"gflop": 0.0, "trial_s": 0.0, "reached": True, "per_cell": {}}
    for cell in cells:
        v = own_verified(run, cell)
        ok = v["passed"] and v["cost"] is not None and v["cost"] <= reference[cell]
        at = trials.compute_at(trials.end(cell), cell)
        out["per_cell"][cell] = {**at, "reached": ok}
        out["gflop"] += at["gflop"]
        out["trial_s"] += at["trial_s"]
        out["reached"] &= ok
    return out


# -- the benchmark -------------------------------------------------------------------------------


def run_one(method: str, seed: int, smoke: bool, store: Path) -> dict[str, Any]:
    path = store / f"{method.replace('+', '-')}-{seed}.json"
    if path.is_file():  # runs are kept: an interrupted benchmark goes on where it stopped
        return json.loads(path.read_text())
    space = task_space(smoke, seed)
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp:
        if method == "optuna+hyperband":
            events, t0, answers = optuna_method(space, Path(tmp), smoke)
        else:
            events, t0, answers = tune_method(method, space, Path(tmp))
    run = {"method": method, "seed": seed, "t0": t0, "events": events, "answers": answers}
    path.write_text(json.dumps(run) + "\n")
    trials = Trials(events)
    spent = sum(trials.compute_at(math.inf, c)["gflop"] for c in space.cells)
    print(f"  seed {seed} {method}: {len(trials.info)} trials, {spent:.4g} GFLOP",
          file=sys.stderr, flush=True)  # fmt: skip
    return run


def analyze(runs: list[dict], cells: list[str], verified: dict) -> tuple[dict, list, list, str]:
    """The reference, each run's figures at it and at any passing answer, and the markdown."""
    reference = {}
    for cell in cells:
        finals = []
        for r in runs:
            if r["method"] == "random":
                v = final_verified(r, cell, verified)
                finals.append(v["cost"] if v.get("passed") else math.inf)
        finite = [c for c in finals if math.isfinite(c)]
        reference[cell] = median(finite) if finite else math.inf
    rows = reach_rows(runs, cells, verified, reference)
    # the same figure without a cost bar: compute until a run holds, in every cell, an answer
    # that passes at all (each run's answers are verified in order until one meets the
    # reference, so its first passing one is always known)
    anything = reach_rows(runs, cells, verified, dict.fromkeys(cells, math.inf))
    return reference, rows, anything, tables(reference, rows, anything, runs, cells, verified)


def reach_rows(runs, cells, verified, reference) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        rows.append({"method": r["method"], "seed": r["seed"],
                     **reach(r, cells, verified, reference)})  # fmt: skip
        if r["method"] == "shipped":
            rows.append({"method": "shipped, own answer", "seed": r["seed"],
                         **reach_own(r, cells, reference)})  # fmt: skip
    return rows


def reach_table(rows: list[dict[str, Any]]) -> str:
    """Per method: how many runs reached the bar, and the compute until then (median over
    runs, a run that never did counting as infinite) with its ratios to the peers'."""

    def figure(method: str, key: str) -> list[float]:
        return [r[key] if r["reached"] else math.inf for r in rows if r["method"] == method]

    methods = list(dict.fromkeys(r["method"] for r in rows))
    med = {m: median(figure(m, "gflop")) for m in methods}
    head = ["method", "runs that reached it", "GFLOP until then, median", "(min-max of those "
            "that did)", "x less than random", "x less than random+asha", "x less than "
            "optuna+hyperband", "trial-seconds, median"]  # fmt: skip
    body = []
    for m in methods:
        got = [r for r in rows if r["method"] == m]
        did = [r["gflop"] for r in got if r["reached"]]

        def ratio(base: str, m=m) -> str:
            if base not in med or base == m or not math.isfinite(med[m]):
                return "-"
            return f"{med[base] / med[m]:.2f}" if math.isfinite(med[base]) else "> all"

        body.append([m, f"{len(did)}/{len(got)}", _num(med[m]), spread(did) if did else "-",
                     ratio("random"), ratio("random+asha"), ratio("optuna+hyperband"),
                     _num(median(figure(m, "trial_s")))])  # fmt: skip
    return table(head, body)


def tables(reference, rows, anything, runs, cells, verified) -> str:
    out = [
        "Reference per cell (median over seeds of random search's final answer's verified "
        "GFLOP to solve): " + ", ".join(f"{c} {reference[c]:.4g}" for c in cells),
        "",
        reach_table(rows),
        "",
        "Without a cost bar: the compute until a run holds, in every cell, an answer that "
        "passes verification at any cost to solve.",
        "",
        reach_table(anything),
        "",
        "A run that never reached the bar counts as infinite in the medians.",
        "",
    ]
    # what is there to find: how often a random setting solves, and how its answers verify
    spent, secs, race, solved, started = {}, {}, {}, 0, 0
    for r in runs:
        t = Trials(r["events"])
        whole = [t.compute_at(math.inf, c) for c in cells]
        gflop = sum(w["gflop"] for w in whole)
        spent.setdefault(r["method"], []).append(gflop)
        secs.setdefault(r["method"], []).append(sum(w["trial_s"] for w in whole))
        race.setdefault(r["method"], []).append(t.race_gflop() / gflop if gflop else 0.0)
        if r["method"] == "random":
            ends = [i for i in t.info.values() if "end" in i and not i["verify"]]
            started += len(ends)
            solved += sum(i["end"]["value"] is not None and i["end"]["value"] < 1e9 for i in ends)
    out += [finals_table(runs, cells, verified), ""]
    answers = list(verified.values())
    out.append(table(
        ["method", "GFLOP of a whole run, median", "(min-max)", "of it in the race, median",
         "trial-seconds, median", "(min-max)"],
        [[m, _num(median(s)), spread(s), f"{median(race[m]):.0%}", _num(median(secs[m])),
          spread(secs[m])] for m, s in spent.items()],
    ))  # fmt: skip
    out += ["", f"Random search's trials that solved: {solved}/{started}. Answers verified off "
            f"the clock: {len(answers)}, of which {sum(a['passed'] for a in answers)} passed "
            "on every fresh seed."]  # fmt: skip
    return "\n".join(out)


def finals_table(runs, cells, verified) -> str:
    """Per method and cell, how many runs ended holding an answer that passed verification, and
    what it costs to solve; ``shipped, own answer`` is the race's winner, judged on its seeds."""
    rows = []
    for m in dict.fromkeys(r["method"] for r in runs):
        got = [r for r in runs if r["method"] == m]
        for own in (False, True) if m == "shipped" else (False,):
            row = [f"{m}, own answer" if own else m]
            for cell in cells:
                costs = []
                for r in got:
                    v = own_verified(r, cell) if own else final_verified(r, cell, verified)
                    if v.get("passed") and v.get("cost") is not None:
                        costs.append(v["cost"])
                row += [f"{len(costs)}/{len(got)}", _num(median(costs)) if costs else "-"]
            rows.append(row)
    head = ["method"]
    for cell in cells:
        head += [f"{cell}: final answer passed", f"{cell}: its GFLOP to solve, median"]
    return table(head, rows)


def _num(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "never"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="every method once, toy size")
    ap.add_argument("--seeds", type=int, default=10, help="search seeds (default 10)")
    ap.add_argument("--methods", default=",".join(METHODS), help=",".join(METHODS))
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        optuna_worker(*args.worker)
        return
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("WANDB_MODE", "disabled")
    from search.tune import connect

    connect(None)  # one local Ray for every Tune run: its start-up is no method's cost
    import ray

    store = OUT / ("efficiency-smoke-runs" if args.smoke else "efficiency-runs")
    store.mkdir(parents=True, exist_ok=True)
    seeds = range(1 if args.smoke else args.seeds)
    methods = args.methods.split(",")
    runs = [run_one(m, s, args.smoke, store) for s in seeds for m in methods]  # interleaved
    ray.shutdown()
    space = task_space(args.smoke, 0)
    cells = list(space.cells)
    oracle = SMOKE_ORACLE if args.smoke else ORACLE
    cache = store / "verified.json"
    # every run's final answer first (random search's make the reference; all of them the
    # final-answer table), then each run's answers in the order it held them, until one verifies
    # at the reference or better: no more than that is needed
    finals = {config_key(a[-1][1]): a[-1][1] for r in runs
              for c in cells if (a := Trials(r["events"]).answers(c))}  # fmt: skip
    verified = verify_answers(finals, cache, oracle)
    reference = analyze(runs, cells, verified)[0]
    while need := next_answers(runs, cells, verified, reference):
        verified = verify_answers(need, cache, oracle)
    reference, rows, anything, md = analyze(runs, list(space.cells), verified)
    b = space.budget
    steps = (
        b.max_steps
        if isinstance(b.max_steps, int)
        else ", ".join(f"{c} {n}" for c, n in b.max_steps.items())
    )
    head = (
        f"`{Path(space.source).resolve().relative_to(ROOT)}`: {len(space.cells)} cells x "
        f"{space.trials} trials, up to {steps} steps each, {len(seeds)} search seeds; "
        f"answers verified on {oracle['seeds']} fresh seeds x {oracle['n']} fresh sums of "
        f"{', '.join(map(str, oracle['digits']))} digits.\n\n"
    )
    save("efficiency", {"reference": reference, "rows": rows, "rows_any_passing": anything,
                        "verified": verified,
                        "runs": [{k: v for k, v in r.items() if k != "events"} for r in runs]},
         head + md, smoke=args.smoke)  # fmt: skip


if __name__ == "__main__":
    main()
