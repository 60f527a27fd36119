"""adder: train recurrent networks to add multi-digit numbers, one model at a time.

Plain PyTorch: data (`adder.data`), models (`adder.models`), settings (`adder.config`) and the
training loop (`adder.train`). The search over many models lives in the `search` package.
"""

from adder.config import TrainConfig
from adder.errors import UserError
from adder.models import CELLS, Adder
from adder.train import evaluate, load_checkpoint, load_model, save_checkpoint, train

__all__ = [
    "CELLS",
    "Adder",
    "TrainConfig",
    "UserError",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "train",
]
