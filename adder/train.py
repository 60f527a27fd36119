"""Train and evaluate one adder. Reports through a callback; knows nothing of Ray, Optuna or W&B.

result = train(TrainConfig(cell="lstm"), report=lambda metrics, checkpoint: print(metrics))
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from adder.config import TrainConfig
from adder.data import Batch, held_out, make_generator, sample
from adder.errors import UserError
from adder.models import Adder, count_params, train_flops

# report(metrics, checkpoint) is called at every evaluation; `checkpoint()` builds the state to
# resume from (only when asked, it costs a copy). Returning True ends the run there.
Report = Callable[[dict[str, Any], Callable[[], dict[str, Any]]], bool | None]

EVAL_TOKENS = 1 << 18  # positions per evaluation chunk at most: bounds memory at 10,000 digits
# Problems in the first chunk of a quick evaluation. During training a held-out set is scored
# chunk by chunk (50 sums, then twice as many each time), and the scoring stops as soon as the
# wrong sums make exact-match >= solve_exact on the whole set out of reach: 1000 sums of 100
# digits cost about 15 training steps of the seed's setting to score, the first 50 a twentieth
# of that, whatever the batch size. A run that may be solved is scored whole, so solved_step
# means what it always did.
EVAL_CHUNK = 50
# Attention scores per evaluation chunk at most. The fused kernels hold none (their memory is
# linear in the length); should PyTorch fall back to its math kernel, which holds them all,
# 1000 digits are scored 8 sums at a time at 4 heads, 10,000 digits one (1.6 GB per block).
EVAL_SCORES = 1 << 25
# A failed confirmation doubles the passes of the test set in a row that the next one waits for,
# up to 2**CONFIRM_BACKOFF x solve_patience: a model that adds 100-digit sums and not 1000-digit
# ones (the transformer, often) would otherwise pay a 1000-digit scoring, up to 700 training
# steps' worth, every solve_patience evaluations for the rest of its run. A stop still comes
# right after solve_patience (or more) passes and a passed confirmation, as before.
CONFIRM_BACKOFF = 3


def resolve_device(name: str) -> torch.device:
    """``auto``: a GPU when torch sees one, else the CPU (whatever CUDA_VISIBLE_DEVICES says)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        index = int(name[5:] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise UserError(
                f"device = {name!r} but {torch.cuda.device_count()} CUDA devices are visible; "
                "expected auto, cpu or a visible cuda:N"
            )
    return torch.device(name)


def build(cfg: TrainConfig, device: torch.device):
    """Model, optimizer and learning-rate schedule for ``cfg``."""
    torch.manual_seed(cfg.seed)
    model = Adder(cfg.model_config()).to(device)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
        )
    else:
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        opt = cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, SCHEDULES[cfg.schedule](cfg))
    return model, opt, sched


def _constant(cfg: TrainConfig) -> Callable[[int], float]:
    return lambda step: 1.0


def _cosine(cfg: TrainConfig) -> Callable[[int], float]:
    r = cfg.lr_min_ratio
    return lambda step: r + (1 - r) * 0.5 * (1 + math.cos(math.pi * min(step / cfg.steps, 1.0)))


def _exp(cfg: TrainConfig) -> Callable[[int], float]:
    return lambda step: cfg.lr_min_ratio ** min(step / cfg.steps, 1.0)


SCHEDULES = {"constant": _constant, "cosine": _cosine, "exp": _exp}


class WeightAverage:
    """An exponential moving average of a model's weights (``TrainConfig.ema``). After step t it
    moves toward the weights by 1 - min(decay, 1 - 1/(t+1)): the plain mean of every step's
    weights until its window (``window`` = 1/(1 - decay) steps) fills.

    From then on it is the model that is evaluated and kept; before, the weights are. The mean
    of the first steps still holds the initial weights and lags far behind: scored, it would look
    worse than the same run without it, and ASHA would stop it at an early rung for that."""

    def __init__(self, model: Adder, decay: float):
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        self.window = round(1 / (1 - decay))
        self._weights, self._average = list(model.parameters()), list(self.model.parameters())

    @torch.no_grad()
    def update(self, step: int) -> None:
        torch._foreach_lerp_(self._average, self._weights, 1 - min(self.decay, 1 - 1 / (step + 1)))


@dataclasses.dataclass
class SolveRule:
    """When a run is solved: the test set passed (``solve_exact``) at ``solve_patience``
    evaluations in a row, then the longer confirmation set (if any) passes too, at
    ``confirm_patience`` evaluations in a row. The confirmation is scored only then, and a failed
    one starts the count again, twice as long (up to CONFIRM_BACKOFF doublings).

    Its counters are part of a checkpoint, so that a resumed run stops where it would have."""

    cfg: TrainConfig
    streak: int = 0  # test-set passes in a row
    misses: int = 0  # failed confirmations
    confirms: int = 0  # confirmations passed at the evaluations in a row just before
    solved_step: int | None = None

    def update(self, step: int, exact: float, confirm: Callable[[], float] | None) -> float | None:
        """One evaluation: the test set's exact-match, and the confirmation's scorer (None: the
        run has none). Returns the confirmation's exact-match when it was scored."""
        cfg = self.cfg
        self.streak = self.streak + 1 if exact >= cfg.solve_exact else 0
        self.confirms = self.confirms if self.streak else 0
        wait = cfg.solve_patience << min(self.misses, CONFIRM_BACKOFF)
        if self.solved_step is not None or self.streak < wait:
            return None
        confirmed = confirm() if confirm else None
        if confirmed is None or confirmed >= cfg.confirm_exact:
            self.confirms += 1
            if self.confirms >= cfg.confirm_patience:
                self.solved_step = step
        else:
            self.streak, self.misses, self.confirms = 0, self.misses + 1, 0
        return confirmed

    def state(self) -> dict[str, Any]:
        return {"solved_step": self.solved_step, "solve_streak": self.streak,
                "confirm_misses": self.misses, "confirm_streak": self.confirms}  # fmt: skip

    @classmethod
    def restored(cls, cfg: TrainConfig, state: dict[str, Any]) -> SolveRule:
        # the counters are absent from checkpoints made before they existed
        return cls(cfg, state.get("solve_streak", 0), state.get("confirm_misses", 0),
                   state.get("confirm_streak", 0), state["solved_step"])  # fmt: skip


def evaluate(model: Adder, batch: Batch) -> dict[str, float]:
    """Loss, digit accuracy and exact-match (every digit of the sum right) on ``batch``."""
    return _evaluate(model, batch)[0]


def _evaluate(
    model: Adder, batch: Batch, max_errors: int | None = None
) -> tuple[dict[str, float], int]:
    """``evaluate``, chunk by chunk; with ``max_errors``, stops after the chunk that takes the
    count of wrong sums past it. Returns the figures of the problems scored, and their count."""
    was_training = model.training
    model.eval()
    n, T = batch.s.shape
    cap = max(1, min(n, EVAL_TOKENS // T, EVAL_SCORES // max(1, model.scores(T))))
    chunk = min(EVAL_CHUNK, cap) if max_errors is not None else cap
    sums = torch.zeros(3, dtype=torch.float64, device=batch.s.device)  # loss, correct, exact
    scored = 0
    with torch.inference_mode():
        while scored < n:
            i, chunk = scored, chunk if scored == 0 else min(2 * chunk, cap)
            a, b, s = (x[i : i + chunk] for x in batch)
            logits = model(a, b)  # (B, T, 10)
            right = logits.argmax(-1) == s  # (B, T)
            sums += torch.stack(
                [
                    F.cross_entropy(logits.flatten(0, 1), s.flatten(), reduction="sum").double(),
                    right.sum().double(),
                    right.all(-1).sum().double(),
                ]
            )
            scored = min(n, i + chunk)
            if max_errors is not None and scored - sums[2].item() > max_errors:
                break
    model.train(was_training)
    loss, correct, exact = sums.tolist()  # one device sync per evaluation, not three per chunk
    return {
        "loss": loss / (scored * T),
        "digit_acc": correct / (scored * T),
        "exact_match": exact / scored,
    }, scored


def allowed_errors(n: int, exact: float) -> int:
    """The most wrong sums among ``n`` that still leave exact-match >= ``exact``."""
    e = 0
    while (n - e - 1) / n >= exact:
        e += 1
    return e


def score(
    model: Adder, test: Batch, iid: Batch, *, whole: bool, exact: float
) -> tuple[dict, dict]:
    """The test and iid evaluations of one report.

    Unless ``whole``, the test set is scored only until exact-match >= ``exact`` is out of reach
    on it, and the iid set on as many problems: the figures are then those of the first
    ``EVAL_CHUNK`` or more problems (exact-match below ``exact``, necessarily). Otherwise, both
    sets whole.
    """
    if whole:
        return evaluate(model, test), evaluate(model, iid)
    t, scored = _evaluate(model, test, allowed_errors(test.s.shape[0], exact))
    return t, evaluate(model, Batch(*(x[:scored] for x in iid)))


def train_step(model: Adder, opt, sched, batch: Batch, *, grad_clip: float = 0.0) -> float:
    """One update on ``batch``: forward, loss, backward, clipping, optimizer and schedule steps.

    Returns the loss. A non-finite loss makes no update: the weights stay as they were.
    """
    logits = model(batch.a, batch.b)  # (B, T, 10)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.s.flatten())
    del logits  # the logits, the loss and the batch die with this call: at 1000 digits, living
    # on into the next step's forward made every step 15% slower
    loss_val = loss.item()
    if not math.isfinite(loss_val):
        return loss_val
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    sched.step()
    return loss_val


def train(
    cfg: TrainConfig, *, report: Report | None = None, resume: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Train one model; returns the summary of its last evaluation.

    ``resume`` is a state from ``checkpoint()`` (or ``load_checkpoint``): the run continues from
    it exactly as an uninterrupted run would (on CPU; CUDA kernels are not all deterministic).
    """
    evaluations, stop = run(cfg, resume=resume), None
    try:
        while True:
            metrics, checkpoint, _ = evaluations.send(stop)
            stop = report(metrics, checkpoint) if report else False
    except StopIteration as end:
        return end.value


Evaluation = tuple[dict[str, Any], Callable[[], dict[str, Any]], bool]


def run(
    cfg: TrainConfig, *, resume: dict[str, Any] | None = None
) -> Generator[Evaluation, bool | None, dict[str, Any]]:
    """``train`` as a generator: yields ``(metrics, checkpoint, last)`` at every evaluation
    (``last``: the run ends there, solved, diverged or out of steps), takes whether to stop there
    (``send(True)``), and returns the summary. Several runs can so be stepped side by side, one
    evaluation at a time (search.trainable: the seeds of one trial)."""
    device = resolve_device(cfg.device)
    model, opt, sched = build(cfg, device)
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    gen = make_generator(cfg.seed, device)
    test = held_out(cfg.eval_size, cfg.test_digits, device)
    iid = held_out(cfg.eval_size, cfg.train_digits, device)
    confirm: Batch | None = None  # made the first time the test set is passed
    params = count_params(model)
    gflop_per_step = train_flops(cfg.model_config(), cfg.train_digits + 1) * cfg.batch_size / 1e9
    step, rule = 0, SolveRule(cfg)
    if resume is not None:
        _restore(resume, cfg, model, opt, sched, gen)
        if average:  # the average as saved (a checkpoint made without one: the weights)
            _load_weights(
                average.model, {"model": resume.get("average", resume["model"])}, "checkpoint"
            )
        step, rule = resume["step"], SolveRule.restored(cfg, resume)

    rng = _global_rng(device)  # torch's global generator (dropout) as this run left it

    def evaluated() -> Adder:  # what is evaluated, reported and kept
        return average.model if average and step >= average.window else model

    def checkpoint() -> dict[str, Any]:
        # a snapshot, not a view: training goes on after it is taken
        return copy.deepcopy(
            {
                "format": CHECKPOINT_FORMAT,
                "config": cfg.to_dict(),
                "step": step,
                **rule.state(),
                "model": evaluated().state_dict(),
                **(
                    {"weights": model.state_dict(), "average": average.model.state_dict()}
                    if average
                    else {}
                ),
                "optimizer": opt.state_dict(),
                "schedule": sched.state_dict(),
                "generator": gen.get_state(),
                "torch_rng": rng[0],
            }
        )

    def confirmation(net: Adder) -> float:
        nonlocal confirm
        if confirm is None:  # made the first time the test set is passed
            confirm = held_out(cfg.confirm_size, cfg.confirm_digits, device)
        # scored until it cannot pass: a model far off costs a chunk, not the whole set
        limit = allowed_errors(cfg.confirm_size, cfg.confirm_exact)
        return _evaluate(net, confirm, limit)[0]["exact_match"]

    summary: dict[str, Any] = {"status": "ok", "step": step}
    loss_sum, loss_n, t0 = 0.0, 0, time.perf_counter()
    while step < cfg.steps and not (cfg.stop_when_solved and rule.solved_step is not None):
        # forward, backward, update
        batch = sample(
            cfg.batch_size, cfg.train_digits, generator=gen, device=device, nines=cfg.nines
        )
        loss_val = train_step(model, opt, sched, batch, grad_clip=cfg.grad_clip)
        del batch  # nothing of this step may live on into the next one's forward
        if not math.isfinite(loss_val):  # no update was made: the weights stay as they were
            t = evaluate(evaluated(), test)
            summary = {
                "step": step,
                "train_loss": loss_val,
                "val_loss": t["loss"],
                "digit_acc": t["digit_acc"],
                "exact_match": t["exact_match"],
                "status": "diverged",
            }
            break
        step += 1
        if average:
            average.update(step)
        loss_sum, loss_n = loss_sum + loss_val, loss_n + 1

        # evaluate on both held-out sets, report, and stop when told to or when diverged
        if step % cfg.eval_every and step != cfg.steps:
            continue
        elapsed = time.perf_counter() - t0
        net = evaluated()
        t, i = score(net, test, iid, whole=step == cfg.steps, exact=cfg.solve_exact)
        confirm_net = functools.partial(confirmation, net) if cfg.confirm_digits else None
        confirmed = rule.update(step, t["exact_match"], confirm_net)  # SolveRule: when solved
        solved_step = rule.solved_step
        diverged = not math.isfinite(t["loss"]) or t["loss"] > cfg.diverge_loss
        summary = {
            "step": step,
            "train_loss": loss_sum / loss_n,
            "val_loss": t["loss"],
            "digit_acc": t["digit_acc"],
            "exact_match": t["exact_match"],
            "iid_val_loss": i["loss"],
            "iid_digit_acc": i["digit_acc"],
            "iid_exact_match": i["exact_match"],
            "samples_per_s": loss_n * cfg.batch_size / elapsed,
            "lr": sched.get_last_lr()[0],
            "solved_step": solved_step,
            "gflop": step * gflop_per_step,
            "solved_gflop": None if solved_step is None else solved_step * gflop_per_step,
            "params": params,
            "status": "diverged" if diverged else "ok",
        }
        if confirmed is not None:
            summary["confirm_exact_match"] = confirmed
        last = diverged or (cfg.stop_when_solved and solved_step is not None) or step >= cfg.steps
        rng = _global_rng(device)  # the run's own: runs stepped side by side share torch's
        stop = yield dict(summary), checkpoint, last
        _global_rng(device, rng)
        if stop or last:
            break
        loss_sum, loss_n, t0 = 0.0, 0, time.perf_counter()

    solved_step = rule.solved_step
    summary.update(
        cell=cfg.cell,
        params=params,
        steps=step,
        test_digits=cfg.test_digits,
        solved_step=solved_step,
        gflop=step * gflop_per_step,
        solved_gflop=None if solved_step is None else solved_step * gflop_per_step,
    )
    summary["loss"] = summary.get("val_loss", math.nan)
    return summary


def _global_rng(device: torch.device, state: tuple | None = None) -> tuple:
    """Get (or, given ``state``, set) torch's global generator state: CPU, and the device's."""
    cuda = device.type == "cuda"
    if state is not None:
        torch.set_rng_state(state[0])
        if cuda:
            torch.cuda.set_rng_state(state[1], device)
        return state
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if cuda else None


# -- checkpoints: plain tensors and dicts, loadable with weights_only=True ---------------------

CHECKPOINT_FORMAT = "adder-checkpoint-v1"
CHECKPOINT_KEYS = (
    "config",
    "step",
    "solved_step",
    "model",
    "optimizer",
    "schedule",
    "generator",
    "torch_rng",
)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write atomically: a reader never sees half a checkpoint."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (no pickled code runs); a bad file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} not found; expected a checkpoint.pt file")
    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle before failing
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises many kinds for a damaged or foreign file
        raise UserError(
            f"checkpoint {str(path)!r} cannot be read; expected a torch checkpoint file "
            "(this one is truncated, corrupt, or holds objects a safe load refuses)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"checkpoint {str(path)!r} is not an adder checkpoint ({CHECKPOINT_FORMAT})"
        )
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing or not isinstance(state["config"], dict):
        raise UserError(
            f"checkpoint {str(path)!r} lacks {', '.join(missing) or 'a config'}; "
            f"expected a whole adder checkpoint"
        )
    if state["config"].get("cell") == "transformer":  # transformers saved before the sink had none
        state["config"].setdefault("sink", False)
    return state


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[Adder, TrainConfig]:
    """The trained model of a checkpoint, in eval mode, and its config."""
    state = load_checkpoint(path, map_location=device)
    cfg = TrainConfig.from_dict(state["config"], where=str(path))
    model = Adder(cfg.model_config()).to(device)
    _load_weights(model, state, path)
    return model.eval(), cfg


def _load_weights(model: Adder, state: dict[str, Any], where: Any) -> None:
    try:
        # checkpoints from before the transformer hold the recurrent cell as rnn., not cell.rnn.
        weights = {
            ("cell." + k if k.startswith("rnn.") else k): v for k, v in state["model"].items()
        }
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, AttributeError) as e:
        first = str(e).strip().splitlines()[0][:160]
        raise UserError(f"checkpoint {str(where)!r} does not fit its model ({first})") from None


def _restore(state, cfg, model, opt, sched, gen) -> None:
    saved = TrainConfig.from_dict(state["config"], where="checkpoint").model_config()
    for key, value in dataclasses.asdict(cfg.model_config()).items():
        if key != "dropout" and getattr(saved, key) != value:
            raise UserError(
                f"checkpoint has {key} = {getattr(saved, key)!r} but the run asks for "
                f"{value!r}; expected the same model shape"
            )
    # with ema, "model" holds what the run evaluates and keeps, "weights" the weights it trains
    # and "average" their average
    _load_weights(model, {"model": state.get("weights", state["model"])}, "checkpoint")
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["schedule"])
    gen.set_state(state["generator"].to("cpu"))
    torch.set_rng_state(state["torch_rng"].to("cpu"))
