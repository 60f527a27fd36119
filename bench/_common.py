"""What every benchmark shares: medians, markdown tables, the machine, the output files, and a
CPU-time account of a process tree read from /proc.

Every figure a benchmark prints is a median over runs taken side by side (A, B, A, B, ...) in one
process, so that a shared, noisy machine slows both sides alike. Results go to stdout as markdown
and to ``bench/out/<name>.json``.
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
OUT = ROOT / "bench" / "out"

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
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces
    ppid, utime, stime = int(rest[1]), int(rest[11]), int(rest[12])
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    return ppid, (utime + stime) / CLK_TCK, cmd or name


def kind_of(cmd: str) -> str:
    """Coarse kinds: where a search's CPU goes, process by process."""
    for needle, kind in (
        ("ray::ImplicitFunc", "trial workers"),
        ("ray::IDLE", "trial workers"),
        ("default_worker.py", "trial workers"),
        ("raylet", "raylet"),
        ("gcs_server", "gcs_server"),
        ("wandb", "wandb"),
        ("dashboard", "ray dashboard/agents"),
        ("log_monitor", "ray monitors"),
        ("monitor.py", "ray monitors"),
        ("runtime_env", "ray dashboard/agents"),
    ):
        if needle in cmd:
            return kind
    return "other"


class TreeCPU:
    """Samples the CPU time of ``root`` and all its descendants every ``every_s`` seconds.

    A process's CPU time only grows, so the last value seen is kept per pid; a process that lives
    less than one sampling interval is missed (a small undercount, never an overcount).
    """

    def __init__(self, root: int, every_s: float = 0.25, root_kind: str = "driver"):
        self.root, self.every_s, self.root_kind = root, every_s, root_kind
        self.seen: dict[int, tuple[str, float]] = {}
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
                self.seen[pid] = (kind, max(cpu, self.seen.get(pid, ("", 0.0))[1]))
            todo.extend(children.get(pid, []))

    def by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, cpu in self.seen.values():
            out[kind] = out.get(kind, 0.0) + cpu
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def now() -> float:
    return time.time()
