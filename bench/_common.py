"""What every benchmark shares: medians, markdown tables, the machine, the output files, and a
CPU-time account of a process tree read from /proc.

Every figure a benchmark prints is a median over runs taken side by side (A, B, A, B, ...) in one
process, so that a shared, noisy machine slows both sides alike. Results go to stdout as markdown
and to ``bench/out/<name>.json`` (or ``$BENCH_OUT``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("BENCH_OUT") or ROOT / "bench" / "out")  # tests write elsewhere

if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the repository, on the path
    sys.path.insert(0, str(ROOT))


def single_thread() -> None:
    """One intra-op thread, here and in every child process: what a 1-CPU trial gets."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float]) -> str:
    """``min-max`` of the runs, for the tables: how noisy the median is."""
    return f"{min(xs):.3g}-{max(xs):.3g}" if xs else "-"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def table(columns: list[str], rows: list[list[Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1e5 else f"{v:.3e}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, result: dict[str, Any], markdown: str, *, smoke: bool) -> Path:
    """Print the markdown and write ``bench/out/<name>[-smoke].json`` (and .md)."""
    OUT.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-smoke" if smoke else name
    command = "python " + " ".join([f"bench/{name}.py", *sys.argv[1:]])
    doc = {"name": name, "command": command, "machine": machine(), **result}
    path = OUT / f"{stem}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (OUT / f"{stem}.md").write_text(f"`{command}`\n\n{markdown}\n")
    print(markdown, flush=True)
    return path


# -- CPU time of a process tree, by kind of process --------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float, str] | None:
    """(parent pid, user + system CPU seconds, command) of one process, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        cmd = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        )
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces
    ppid, utime, stime = int(rest[1]), int(rest[11]), int(rest[12])
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    return ppid, (utime + stime) / CLK_TCK, cmd or name


def kind_of(cmd: str) -> str:
    """Coarse kinds: where a search's CPU goes, process by process."""
    if cmd.startswith("ray::"):  # Ray's workers and agents rename themselves
        name = cmd[5:].split()[0] if cmd[5:].split() else ""
        if name.startswith(("Implicit", "IDLE")):  # the title may be cut short
            return "trial workers"
        return f"ray::{name}"
    exe = cmd.split()[0].rsplit("/", 1)[-1] if cmd.split() else ""
    script = next((w.rsplit("/", 1)[-1] for w in cmd.split()[1:3] if w.endswith(".py")), "")
    if exe in ("raylet", "gcs_server"):
        return exe
    if "wandb" in exe or "wandb" in script:
        return "wandb"
    if script == "default_worker.py":
        return "trial workers"
    if script:
        return script
    return exe or "other"


class TreeCPU:
    """Samples the CPU time of ``root`` and all its descendants every ``every_s`` seconds.

    A process's CPU time only grows, so the last value seen is kept per pid; a process that lives
    less than one sampling interval is missed (a small undercount, never an overcount).
    """

    def __init__(self, root: int, every_s: float = 0.25, root_kind: str = "driver"):
        self.root, self.every_s, self.root_kind = root, every_s, root_kind
        self.seen: dict[int, tuple[str, float]] = {}
        self.others: dict[str, int] = {}
        self.series: list[tuple[float, float]] = []  # (time, CPU seconds of the tree so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeCPU:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> None:
        procs = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (st := _stat(int(entry))) is not None:
                procs[int(entry)] = st
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        todo = [self.root]
        while todo:
            pid = todo.pop()
            if pid in procs:
                _, cpu, cmd = procs[pid]
                kind = self.root_kind if pid == self.root else kind_of(cmd)
                if kind == "other":
                    self.others[cmd[:80]] = self.others.get(cmd[:80], 0) + 1
                self.seen[pid] = (kind, max(cpu, self.seen.get(pid, ("", 0.0))[1]))
            todo.extend(children.get(pid, []))
        self.series.append((time.time(), sum(cpu for _, cpu in self.seen.values())))

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU seconds the tree used from ``t0`` to ``t1`` (to the nearest samples)."""

        def at(t: float) -> float:
            return min(self.series, key=lambda p: abs(p[0] - t))[1] if self.series else 0.0

        return at(t1) - at(t0)

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, cpu in self.seen.values():
            out[kind] = out.get(kind, 0.0) + cpu
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def now() -> float:
    return time.time()
