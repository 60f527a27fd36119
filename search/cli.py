"""The ``adder`` command: train | eval | add | search | report | verify.

Heavy imports happen inside each command, so ``adder add`` never loads Ray. A user's mistake
(``UserError``, a bad flag) prints one line and exits with status 2; anything else is a bug and
keeps its stack trace.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from adder.errors import UserError

# Small sizes that run the real thing in seconds: for tests, CI and a first look.
SMOKE = {"steps": 200, "eval_every": 50, "eval_size": 200, "test_digits": 20}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def emit(obj: dict[str, Any]) -> None:
    """The last stdout line of a command: one strict JSON object (non-finite floats -> null)."""

    print(json.dumps(strict(obj), allow_nan=False), flush=True)


def strict(obj: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats -> None: JSON has no NaN."""
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in obj.items()
    }


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; expected an integer >= 1")
    return v


def _typed(t: type):
    def parse(text: str):
        try:
            return t(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is invalid; expected {'an integer' if t is int else 'a number'}"
            ) from None

    return parse


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """One --flag per TrainConfig field, with the field's docstring as help."""
    from adder.config import TrainConfig, field_docs, field_type

    docs = field_docs()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        t = field_type(f.name)
        help_ = f"{docs.get(f.name, '')} (default: {f.default})"
        if t is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            p.add_argument(flag, type=t if t is str else _typed(t), default=None, help=help_)


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    from adder.config import TrainConfig

    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    return {k: v for k, v in given.items() if v is not None}


# -- adder train ---------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from adder.config import TrainConfig
    from search.files import writable_dir
    from search.tracking import Run, resolve_mode, sync_hint

    cfg = TrainConfig(**{**(SMOKE if args.smoke else {}), **train_overrides(args)})
    mode = resolve_mode(args.wandb)
    out = Path(
        args.out
        or f"runs/{cfg.cell}__h{cfg.hidden}__l{cfg.layers}__s{cfg.seed}__{int(time.time())}"
    )
    from adder.train import resolve_device

    resolve_device(cfg.device)  # no such device: say so before any folder is made
    writable_dir(out)
    from adder.train import save_checkpoint, train

    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    run = Run(
        mode,
        out,
        project=args.wandb_project,
        name=out.name,
        config=cfg.to_dict(),
        tags=[cfg.cell],
        job_type="train",
    )
    if mode == "offline" and run.run is not None:
        print(sync_hint(out), file=sys.stderr)
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, desc=f"{cfg.cell}", unit="step", disable=None, file=sys.stderr)
    with open(out / "metrics.jsonl", "w") as log:

        def report(m: dict[str, Any], checkpoint) -> None:
            log.write(json.dumps(strict(m), allow_nan=False) + "\n")
            log.flush()
            save_checkpoint(checkpoint(), out / "checkpoint.pt")
            run.log(m, step=m["step"])
            bar.update(m["step"] - bar.n)
            bar.set_postfix(loss=f"{m['val_loss']:.4f}", exact=f"{m['exact_match']:.3f}")

        result = train(cfg, report=report)
    bar.close()
    run.summarize(result)
    run.finish(exit_code=0 if result["status"] == "ok" else 1)
    emit(result)
    return 0


# -- adder eval / adder add ---------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    from adder.data import EVAL_SEED, held_out
    from adder.train import evaluate, load_model, resolve_device

    device = resolve_device(args.device)
    model, cfg = load_model(args.checkpoint, device)
    digits = args.digits or cfg.test_digits
    seed = EVAL_SEED if args.seed is None else args.seed
    m = evaluate(model, held_out(args.n, digits, device, seed=seed))
    emit({"cell": cfg.cell, "digits": digits, "n": args.n, "seed": seed, **m})
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    import torch

    from adder.data import from_digits, parse_operand, to_digits
    from adder.train import load_model

    a, b = parse_operand(args.a), parse_operand(args.b)
    model, _ = load_model(args.checkpoint)
    width = max(len(a), len(b)) + 1
    with torch.no_grad():
        logits = model(to_digits([a], width), to_digits([b], width))
    got = from_digits(logits.argmax(-1))[0]
    true = str(int(a) + int(b))
    print(f"model: {got}\ntrue:  {true}\nmatch: {'yes' if got == true else 'no'}")
    if args.json:
        emit({"a": a, "b": b, "model": got, "true": true, "match": got == true})
    return 0


# -- the parser ---------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    from adder.config import EVAL_SEED, HELD_OUT_SEED

    p = Parser(prog="adder", description="Train RNN adders and search their hyperparameters.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train one model", description="Train one model.")
    add_train_flags(t)
    t.add_argument("--out", help="output folder (default: runs/<cell>__h<hidden>__...)")
    t.add_argument("--smoke", action="store_true", help=f"tiny sizes for a quick check: {SMOKE}")
    t.add_argument("--wandb", default="auto", help="auto|online|offline|disabled (default: auto)")
    t.add_argument("--wandb-project", default="adder-search", help="W&B project")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on fresh held-out sums",
        description=(
            "Score a checkpoint on held-out sums. By default fresh ones: drawn with a fixed seed "
            f"of their own ({EVAL_SEED}) that no training run, search or verify uses, the same "
            f"sums on every call. --seed {HELD_OUT_SEED} with --n set to the run's eval_size "
            "scores the held-out set that training reported on (and a search selected on)."
        ),
    )
    e.add_argument("checkpoint")
    e.add_argument("--digits", type=positive_int, help="operand digits (default: its test_digits)")
    e.add_argument("--n", type=positive_int, default=1000, help="problems (default: 1000)")
    e.add_argument(
        "--seed",
        type=_typed(int),
        default=None,
        help=f"seed of the sums (default: {EVAL_SEED}, fresh sums; {HELD_OUT_SEED}: training's)",
    )
    e.add_argument("--device", default="auto", help="auto|cpu|cuda (default: auto)")
    e.set_defaults(fn=cmd_eval)

    a = sub.add_parser("add", help="add two integers with a trained model")
    a.add_argument("checkpoint")
    a.add_argument("a", help="a non-negative integer, any length")
    a.add_argument("b", help="a non-negative integer, any length")
    a.add_argument("--json", action="store_true", help="also print a JSON line")
    a.set_defaults(fn=cmd_add)

    from search import commands

    commands.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.fn(args)
    except UserError as e:
        print(f"adder {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adder {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
