"""``TrainConfig``: every setting of one training run, with a default and a one-line doc.

The field names are also the CLI flags (``--batch-size``), the YAML parameter names of a search
space (``batch_size``) and the W&B config keys. Unknown keys and wrong types are errors.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import re
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from adder.errors import UserError

if TYPE_CHECKING:
    from adder.models import ModelConfig

# The names of adder.models.CELLS (the registry of cell modules), here so that checking a
# setting needs no torch: `adder search bad.yaml` and `adder train --cell cnn` answer at once.
CELLS = ("rnn", "lstm", "gru", "transformer")
NONLINEARITIES = ("tanh", "relu")
POSITIONS = ("none", "learned", "sinusoidal", "alibi", "rope")  # adder.transformer's schemes
# Settings that only some cells read; every other setting applies to every cell. A search space
# that searches or fixes one of these for a cell that ignores it is refused (search.space).
CELL_FIELDS: dict[str, tuple[str, ...]] = {
    "nonlinearity": ("rnn",),
    "heads": ("transformer",),
    "ff_mult": ("transformer",),
    "pos": ("transformer",),
    "sink": ("transformer",),
}

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "exp")
SOLVED = 0.999  # exact-match at which a model counts as adding sums of a length (verification)

# The seed of the held-out sets. Fixed and shared by every run, so that all trials of a search are
# scored on the same problems; the training stream has its own generator, seeded by the run.
# A search selects its best trials on these sums: a figure on them is not a fresh one.
HELD_OUT_SEED = 20200506
# The seed of verification's sums (the races, `adder verify`): held-out sets of their own, on
# which no search selects.
VERIFY_SEED = 777_000
# The seed of `adder eval`'s sums when no --seed is given: fresh ones. No training run, search
# selection or verification draws from it (they use HELD_OUT_SEED, the run's seed and
# VERIFY_SEED), and held_out adds the digit count to a seed, so the sets stay apart for every
# length up to 11 million digits.
EVAL_SEED = 31_415_926


@dataclass
class TrainConfig:
    cell: str = "gru"
    """Cell: rnn, lstm, gru (recurrent) or transformer (causal self-attention)."""
    nonlinearity: str = "tanh"
    """Nonlinearity of the rnn cell: tanh or relu (ignored by the other cells)."""
    layers: int = 2
    """Stacked recurrent layers, or transformer blocks."""
    hidden: int = 32
    """Hidden units per layer (the transformer's model width)."""
    embed: int = 0
    """Digit embedding size; 0 means the same as hidden."""
    dropout: float = 0.0
    """Dropout between recurrent layers (transformer: on each block's residual), in [0, 1)."""
    heads: int = 4
    """Attention heads of the transformer; must divide hidden (transformer only)."""
    ff_mult: int = 4
    """Feed-forward width of the transformer over hidden (transformer only)."""
    pos: str = "alibi"
    """Transformer positions: none, learned, sinusoidal, alibi or rope (transformer only)."""
    sink: bool = True
    """A learned attention sink below the lowest digit, as a BOS token (transformer only)."""
    lr: float = 0.001
    """Peak learning rate."""
    optimizer: str = "adam"
    """Optimizer: adam, adamw or sgd (with momentum 0.9)."""
    weight_decay: float = 0.0
    """Weight decay (decoupled for adamw, L2 for adam and sgd)."""
    schedule: str = "auto"
    """LR schedule: constant, cosine, exp, or auto (cosine: transformer; constant: the others)."""
    lr_min_ratio: float = 0.01
    """Fraction of lr that cosine and exp reach at the last step."""
    grad_clip: float = 0.0
    """Clip the gradient norm to this value; 0 turns clipping off."""
    ema: float = 0.0
    """Decay of a moving average of the weights, which is evaluated and kept; 0: the weights."""
    batch_size: int = 128
    """Problems per training step."""
    steps: int = 2000
    """Training steps."""
    eval_every: int = 100
    """Evaluate, report and checkpoint every this many steps (and at the last step)."""
    train_digits: int = 10
    """Training operands are drawn from [0, 10^train_digits), uniformly unless nines is set."""
    nines: float = 0.0
    """Share of training digit pairs drawn to add to 9 (each hands a carry on); 0: uniform."""
    test_digits: int = 100
    """Digits of the held-out test operands (the generalization target)."""
    eval_size: int = 1000
    """Problems in each held-out set."""
    stop_when_solved: bool = False
    """End the run as soon as it is solved (see solve_exact, solve_patience, confirm_digits)."""
    solve_exact: float = 0.999
    """Test exact-match at or above which an evaluation counts toward solving the task."""
    solve_patience: int = 1
    """Consecutive evaluations at solve_exact or above that it takes to be solved."""
    confirm_digits: int = 0
    """Digits of a longer held-out set that must then reach exact-match 0.999; 0: none."""
    confirm_size: int = 200
    """Problems in the confirmation set (scored only when the test set has been passed)."""
    confirm_exact: float = SOLVED
    """Exact-match the confirmation set must reach (1.0: every sum right)."""
    confirm_patience: int = 1
    """Consecutive evaluations at which the confirmation set must pass (the test set too)."""
    diverge_loss: float = 10.0
    """A held-out loss above this (chance is ln 10 = 2.3) or a non-finite loss means diverged."""
    seed: int = 0
    """Seed of the initial weights, dropout and the training stream."""
    device: str = "auto"
    """Where to train: auto (a GPU when one is visible, else CPU), cpu, cuda or cuda:N."""

    def __post_init__(self) -> None:
        if self.schedule == "auto":  # the transformer learns to 1.0 with the decay, not without
            self.schedule = "cosine" if self.cell == "transformer" else "constant"
        _check(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, where: str = "config") -> TrainConfig:
        """Build from a plain dict, refusing unknown keys and values of the wrong type."""
        known = {f.name: f for f in fields(cls)}
        for key in d:
            if key not in known:
                raise UserError(
                    f"{where}: unknown setting {key!r}; expected one of {', '.join(known)}"
                )
        return cls(**{k: coerce(k, v, where=where) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self) -> ModelConfig:
        """The model's shape (and dropout). A setting its cell ignores keeps ModelConfig's
        default, so two configs make the same model exactly when their model configs are equal."""
        from adder.models import ModelConfig

        own = {k: getattr(self, k) for k, cells in CELL_FIELDS.items() if self.cell in cells}
        learned = self.cell == "transformer" and self.pos == "learned"
        return ModelConfig(
            cell=self.cell,
            layers=self.layers,
            hidden=self.hidden,
            embed=self.embed or self.hidden,
            dropout=self.dropout,
            positions=self.train_digits + 1 if learned else 0,
            **own,
        )


def field_type(name: str) -> type:
    t = {f.name: f.type for f in fields(TrainConfig)}[name]
    return {"int": int, "float": float, "str": str, "bool": bool}[t]


def coerce(name: str, value: Any, *, where: str = "config") -> Any:
    """Check one value against the field's type; ints are accepted where floats are expected."""
    t = field_type(name)
    ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise UserError(
            f"{where}: {name} = {value!r} is a {type(value).__name__}; expected {t.__name__}"
        )
    return value


@functools.cache
def field_docs() -> dict[str, str]:
    """The one-line docstring under each field, read from this module's source."""
    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body
    docs = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            docs[stmt.target.id] = nxt.value.value
    return docs


def _check(c: TrainConfig) -> None:
    def need(ok: bool, name: str, expected: str) -> None:
        if not ok:
            value = getattr(c, name)
            raise UserError(f"{name} = {value!r} is invalid; expected {expected}")

    for f in fields(c):
        coerce(f.name, getattr(c, f.name))
    need(c.cell in CELLS, "cell", f"one of {', '.join(CELLS)}")
    need(c.nonlinearity in NONLINEARITIES, "nonlinearity", f"one of {', '.join(NONLINEARITIES)}")
    need(c.pos in POSITIONS, "pos", f"one of {', '.join(POSITIONS)}")
    need(c.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}")
    need(c.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)} or auto")
    names = ("layers", "hidden", "heads", "ff_mult", "batch_size", "steps", "eval_every")
    for name in (*names, "solve_patience", "confirm_size", "confirm_patience"):
        need(getattr(c, name) >= 1, name, "an integer >= 1")
    need(c.eval_size >= 1, "eval_size", "an integer >= 1")
    for name in ("train_digits", "test_digits"):
        need(1 <= getattr(c, name) <= 100_000, name, "an integer in [1, 100000]")
    need(0 <= c.confirm_digits <= 100_000, "confirm_digits", "an integer in [0, 100000]")
    need(0.0 < c.solve_exact <= 1.0, "solve_exact", "a number in (0, 1]")
    need(0.0 < c.confirm_exact <= 1.0, "confirm_exact", "a number in (0, 1]")
    need(c.embed >= 0, "embed", "an integer >= 0 (0 = same as hidden)")
    need(0.0 <= c.dropout < 1.0, "dropout", "a number in [0, 1)")
    need(0.0 <= c.nines < 1.0, "nines", "a number in [0, 1)")
    need(math.isfinite(c.lr) and c.lr > 0, "lr", "a number > 0")
    need(math.isfinite(c.weight_decay) and c.weight_decay >= 0, "weight_decay", "a number >= 0")
    need(0.0 < c.lr_min_ratio <= 1.0, "lr_min_ratio", "a number in (0, 1]")
    need(math.isfinite(c.grad_clip) and c.grad_clip >= 0, "grad_clip", "a number >= 0")
    need(0.0 <= c.ema < 1.0, "ema", "a number in [0, 1) (0: no average)")
    need(c.diverge_loss > 0, "diverge_loss", "a number > 0")
    need(0 <= c.seed < 2**63, "seed", "an integer in [0, 2^63)")
    if c.cell == "transformer":
        need(c.hidden % c.heads == 0, "heads", f"a divisor of hidden = {c.hidden}")
        if c.pos == "rope":  # rotates channels in pairs
            need(c.hidden // c.heads % 2 == 0, "heads", "an even hidden / heads for pos rope")
        if c.pos == "learned":
            need(
                c.test_digits <= c.train_digits,
                "test_digits",
                f"at most train_digits = {c.train_digits} with pos learned (its table has "
                "train_digits + 1 positions and nothing past them)",
            )
    need(
        c.device in ("auto", "cpu", "cuda")
        or re.fullmatch(r"cuda:[0-9]{1,3}", c.device) is not None,
        "device",
        "auto, cpu, cuda or cuda:N",
    )
