"""Soak: 200 tiny trials in one search; the driver's memory stays flat and nothing is left behind.

    python bench/soak.py            # 2 cells x 100 trials, W&B disabled, then W&B offline
    python bench/soak.py --smoke    # 2 cells x 10 trials, W&B offline: the check, end to end

Each run is a real ``adder search`` (local Ray on this machine's CPUs) in a child process. Every
0.5 s it samples the driver's resident memory (RSS) and open file descriptors, and the processes
of its tree; the driver's progress lines say how many trials have ended. After the driver exits,
every process its tree ever held must be gone.

Figures: the driver's RSS when the first trial ended ("start"), when the last one ended ("all
ended"), at its peak, at the last sample ("end", the driver exiting), and its growth per 100
trials (least squares from a tenth of the trials ended to the last); its open file
descriptors at the first sample (Python, before Ray) and at the same points; the processes seen
in its tree; the processes left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, save, table  # noqa: E402

try:
    import psutil
except ImportError:  # not our dependency: Ray bundles a copy
    import importlib.util

    _ray = Path(importlib.util.find_spec("ray").origin).parent
    sys.path.append(str(_ray / "thirdparty_files"))
    import psutil

SPACE = """
name: soak
cells: [gru, rnn]
trials: {trials}
seed: 0
budget: {{max_steps: 20, eval_every: 10, grace_steps: 10, reduction_factor: 2}}
fixed: {{hidden: 8, layers: 1, batch_size: 16, train_digits: 3, test_digits: 5, eval_size: 50}}
params:
  lr: {{float: [1.0e-3, 3.0e-2], log: true}}
"""
MB = 1 << 20
ENDED = re.compile(r"^\[(\d+)/(\d+)\] ")


class Watch:
    """Samples the driver (RSS, open fds) and its process tree every ``every_s`` seconds."""

    def __init__(self, driver: subprocess.Popen, every_s: float = 0.5):
        self.driver, self.every_s = driver, every_s
        self.proc = psutil.Process(driver.pid)
        self.ended = 0
        self.samples: list[tuple[float, int, int, int]] = []  # (t, trials ended, rss, fds)
        self.seen: dict[tuple[int, float], str] = {}  # (pid, create time) -> name
        self.stderr_tail: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._sample, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]

    def __enter__(self) -> Watch:
        self.t0 = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _read(self) -> None:
        for line in self.driver.stderr:
            if m := ENDED.match(line):
                self.ended = int(m.group(1))
            self.stderr_tail = (self.stderr_tail + [line])[-40:]

    def _sample(self) -> None:
        while not self._stop.is_set() and self.driver.poll() is None:
            try:
                rss, fds = self.proc.memory_info().rss, self.proc.num_fds()
                for p in self.proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        self.seen.setdefault((p.pid, p.create_time()), p.name())
            except psutil.Error:  # the driver is exiting
                break
            if rss == 0:  # exited, not yet reaped (a zombie reads as 0 MB and 0 files)
                break
            self.samples.append((time.monotonic() - self.t0, self.ended, rss, fds))
            self._stop.wait(self.every_s)

    def left_behind(self, grace_s: float = 15.0) -> list[str]:
        """Processes of the driver's tree still alive ``grace_s`` after it exited."""
        deadline = time.monotonic() + grace_s
        while True:
            alive = []
            for (pid, created), name in self.seen.items():
                try:
                    p = psutil.Process(pid)
                    if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                        alive.append(f"{pid} {name}")
                except psutil.Error:
                    pass
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.5)


def slope_per_100(samples: list[tuple[float, int, int, int]], total: int) -> float | None:
    """RSS growth in MB per 100 ended trials: least squares over the samples from a tenth of the
    trials ended to the last one (not after: writing the results is no trial's cost)."""
    last = next((i for i, s in enumerate(samples) if s[1] >= total), len(samples) - 1)
    pts = [(n, rss / MB) for _, n, rss, _ in samples[: last + 1] if n >= max(1, total // 10)]
    if len({n for n, _ in pts}) < 2:
        return None
    mx = sum(n for n, _ in pts) / len(pts)
    my = sum(r for _, r in pts) / len(pts)
    var = sum((n - mx) ** 2 for n, _ in pts)
    return 100 * sum((n - mx) * (r - my) for n, r in pts) / var


def soak(trials_per_cell: int, wandb: str, workdir: Path) -> dict[str, Any]:
    space = workdir / f"soak-{wandb}.yaml"
    space.write_text(SPACE.format(trials=trials_per_cell))
    results = workdir / f"results-{wandb}"
    cmd = [sys.executable, "-m", "search.cli", "search", str(space), "--results", str(results)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    driver = subprocess.Popen(
        [*cmd, "--wandb", wandb],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    with Watch(driver) as w:
        rc = driver.wait()
    wall = time.monotonic() - t0
    left = w.left_behind()
    total = 2 * trials_per_cell
    if rc != 0 or not w.samples:
        sys.exit(f"soak: the search failed (exit {rc}):\n" + "".join(w.stderr_tail))
    started = [s for s in w.samples if s[1] >= 1] or w.samples
    done = [s for s in w.samples if s[1] >= total] or w.samples[-1:]
    first, all_ended, last = started[0], done[0], w.samples[-1]
    return {
        "wandb": wandb,
        "trials": total,
        "trials_ended": w.ended,
        "wall_s": round(wall, 1),
        "rss_mb": {
            "first_sample": round(w.samples[0][2] / MB, 1),
            "start": round(first[2] / MB, 1),
            "all_ended": round(all_ended[2] / MB, 1),
            "peak": round(max(s[2] for s in w.samples) / MB, 1),
            "end": round(last[2] / MB, 1),
            "growth_per_100_trials": slope_per_100(w.samples, total),
            "by_tenth_of_trials": [  # when 10%, 20%, ... 100% of the trials had ended
                round(next((s[2] for s in w.samples if s[1] >= total * k / 10), 0) / MB, 1)
                for k in range(1, 11)
            ],
        },
        "fds": {
            "first_sample": w.samples[0][3],
            "start": first[3],
            "all_ended": all_ended[3],
            "peak": max(s[3] for s in w.samples),
            "end": last[3],
        },
        "samples": len(w.samples),
        "processes_seen": len(w.seen),
        "left_behind": left,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="20 trials, W&B offline")
    ap.add_argument("--trials", type=int, help="trials per cell (default 100; --smoke: 10)")
    ap.add_argument("--wandb", help="comma-separated W&B modes (default disabled,offline)")
    args = ap.parse_args()
    trials = args.trials or (10 if args.smoke else 100)
    modes = (args.wandb or ("offline" if args.smoke else "disabled,offline")).split(",")
    runs = []
    with tempfile.TemporaryDirectory(prefix="soak-") as d:
        for mode in modes:
            runs.append(soak(trials, mode, Path(d)))
            print(f"soak: {mode}: {runs[-1]}", file=sys.stderr, flush=True)
    rows = [
        [
            r["wandb"],
            r["trials_ended"],
            r["wall_s"],
            r["rss_mb"]["start"],
            r["rss_mb"]["all_ended"],
            r["rss_mb"]["peak"],
            r["rss_mb"]["end"],
            r["rss_mb"]["growth_per_100_trials"],
            " / ".join(str(r["fds"][k]) for k in ("first_sample", "start", "all_ended", "end")),
            r["processes_seen"],
            len(r["left_behind"]),
        ]
        for r in runs
    ]
    markdown = table(
        [
            "W&B",
            "trials",
            "wall s",
            "driver RSS start MB",
            "all ended MB",
            "peak MB",
            "end MB",
            "MB per 100 trials",
            "driver fds first / start / all ended / end",
            "processes seen",
            "left behind",
        ],
        rows,
    )
    save("soak", {"runs": runs}, markdown, smoke=args.smoke)
    if any(r["left_behind"] for r in runs):
        sys.exit(
            "soak: processes left behind: " + "; ".join(sum((r["left_behind"] for r in runs), []))
        )


if __name__ == "__main__":
    main()
