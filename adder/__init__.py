"""adder: train recurrent networks to add multi-digit numbers, one model at a time.

Plain PyTorch: data (`adder.data`), models (`adder.models`), settings (`adder.config`) and the
training loop (`adder.train`). The search over many models lives in the `search` package.
"""

import importlib
from typing import Any

# Public name -> its module. Imported on first use (PEP 562), so that `adder.errors` and
# `adder.config` (the CLI's checks of what a user typed) load without torch. The loop itself is
# `adder.train.train`: `adder.train` is its module.
_EXPORTS = {
    "CELLS": "adder.models",
    "Adder": "adder.models",
    "TrainConfig": "adder.config",
    "UserError": "adder.errors",
    "evaluate": "adder.train",
    "load_checkpoint": "adder.train",
    "load_model": "adder.train",
    "save_checkpoint": "adder.train",
}

__all__ = [
    "CELLS",
    "Adder",
    "TrainConfig",
    "UserError",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'adder' has no attribute {name!r}")
