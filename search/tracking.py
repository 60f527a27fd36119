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


class Run:
    """One W&B run. Any exception inside W&B becomes one warning and turns the run off."""

    def __init__(self, mode: str, folder: Path, **init_kwargs: Any):
        self.run = None
        if mode == "disabled":
            return
        try:
            import wandb

            folder.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                mode=mode,
                dir=str(folder.resolve()),
                reinit="create_new",
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
                **init_kwargs,
            )
        except Exception as e:  # W&B trouble never fails the run it watches
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        warnings.warn(f"W&B logging is off for this run: {type(e).__name__}: {e}", stacklevel=3)
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
