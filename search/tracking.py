"""Weights & Biases, made safe: mode resolution, offline folders, and runs whose trouble never
fails the training or the search they watch.

``auto`` logs online where credentials exist (``WANDB_API_KEY``, a netrc entry for the W&B host)
and offline otherwise, saying once how to ``wandb sync`` later.
"""

from __future__ import annotations

import math
import netrc
import os
import sys
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from adder.errors import UserError

MODES = ("auto", "online", "offline", "disabled")
INIT_TIMEOUT_S = 15.0
"""An online start that takes longer is given up (W&B's own default is 90 s); the environment
variable WANDB_INIT_TIMEOUT overrides it."""

_online_failed = False  # an online start failed: every later run of this process logs offline


def has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """auto|online|offline|disabled -> online|offline|disabled; WANDB_MODE decides auto if set."""
    if mode not in MODES:
        raise UserError(f"--wandb {mode!r} is invalid; expected one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":
        return "offline"
    return "online" if has_credentials() else "offline"


def sync_hint(folder: Path) -> str:
    return (
        f"W&B is offline: runs are kept under {folder}/wandb; "
        f"upload them later with: wandb sync {folder}/wandb/offline-run-*"
    )


def clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """Numbers and strings only; a non-finite float becomes None (W&B and JSON choke on it)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        if v is None or isinstance(v, (int, float, str, bool)):
            out[k] = v
    return out


def redact(text: str) -> str:
    """``text`` with the W&B API key, should it appear, blanked out."""
    key = os.environ.get("WANDB_API_KEY", "")
    return text.replace(key, "***") if len(key) >= 8 else text


class Run:
    """One W&B run. Any exception inside W&B becomes one warning and turns the run off.

    An online start that fails (no network, a dead server, a refused key) gives up after
    ``INIT_TIMEOUT_S``, says so in one warning and starts the run offline instead; every later run
    of this process then starts offline at once. A whole search thus waits for W&B once, warns
    once, and keeps every run on disk for a later ``wandb sync``.
    """

    def __init__(self, mode: str, folder: Path, **init_kwargs: Any):
        global _online_failed
        self.run = None
        self.mode = "offline" if mode == "online" and _online_failed else mode
        if self.mode == "disabled":
            return
        try:
            self.run = self._init(folder, init_kwargs)
            return
        except Exception as e:  # W&B trouble never fails the run it watches
            if self.mode != "online":
                self._fail(e)
                return
            _online_failed = True
            why = redact(f"{type(e).__name__}: {str(e).strip()}").splitlines()[0][:200]
            print(
                f"warning: W&B online failed ({why}); logging offline instead. "
                f"{sync_hint(folder)}",
                file=sys.stderr,
                flush=True,
            )
        self.mode = "offline"
        if "id" in init_kwargs:  # the failed start still holds its id inside W&B's service
            init_kwargs = {**init_kwargs, "id": f"{init_kwargs['id']}-offline"}
        try:
            self.run = self._init(folder, init_kwargs)
        except Exception as e:
            self._fail(e)

    def _init(self, folder: Path, init_kwargs: dict[str, Any]):
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        timeout = float(os.environ.get("WANDB_INIT_TIMEOUT") or INIT_TIMEOUT_S)
        return wandb.init(
            mode=self.mode,
            dir=str(folder.resolve()),
            reinit="create_new",
            # x_save_requirements: no scan of every installed package per run (0.1 s each)
            settings=wandb.Settings(
                silent=True,
                console="off",
                x_disable_stats=True,
                x_save_requirements=False,
                init_timeout=timeout,
            ),
            **init_kwargs,
        )

    def _fail(self, e: BaseException) -> None:
        warnings.warn(
            redact(f"W&B logging is off for this run: {type(e).__name__}: {e}"), stacklevel=3
        )
        print(f"warning: W&B logging is off for this run ({type(e).__name__})", file=sys.stderr)
        self.run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run is not None:
            try:
                self.run.log(clean(metrics), step=step)
            except Exception as e:
                self._fail(e)

    def summarize(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            try:
                self.run.summary.update(clean(metrics))
            except Exception as e:
                self._fail(e)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.run is not None:
            try:
                import wandb

                self.run.log({key: wandb.Table(columns=columns, data=rows)})
            except Exception as e:
                self._fail(e)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            try:
                self.run.finish(exit_code=exit_code)
            except Exception as e:
                self._fail(e)
            self.run = None
