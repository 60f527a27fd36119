"""TrainConfig, the training loop, resuming and checkpoints (real, small runs on the CPU)."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import adder.train
from adder.config import CELLS, SOLVED, TrainConfig, field_docs
from adder.data import held_out
from adder.errors import UserError
from adder.models import Adder, count_params
from adder.train import (
    CHECKPOINT_FORMAT,
    build,
    evaluate,
    load_checkpoint,
    load_model,
    resolve_device,
    save_checkpoint,
    train,
)

# Every key a report carries at each evaluation (the callback's documented metrics).
METRIC_KEYS = {
    "step",
    "train_loss",
    "val_loss",
    "digit_acc",
    "exact_match",
    "iid_val_loss",
    "iid_digit_acc",
    "iid_exact_match",
    "samples_per_s",
    "lr",
    "solved_step",
    "gflop",
    "solved_gflop",
    "status",
}
# Every key of the summary train() returns (and `adder train` prints).
SUMMARY_KEYS = {
    "cell",
    "params",
    "steps",
    "loss",
    "digit_acc",
    "exact_match",
    "test_digits",
    "solved_step",
    "gflop",
    "solved_gflop",
    "status",
}
TIMING = {"samples_per_s"}  # wall-clock: the only value allowed to differ between equal runs

SMALL = dict(steps=60, eval_every=20, eval_size=100, test_digits=12, hidden=16)


def small(**kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, **kw})


def run(cfg: TrainConfig, stop_at: int | None = None, resume=None):
    """train() that records every report and the state at every evaluation (cloned)."""
    reports, states = [], {}

    def report(metrics, checkpoint):
        reports.append(metrics)
        states[metrics["step"]] = clone(checkpoint())
        return stop_at is not None and metrics["step"] >= stop_at

    summary = train(cfg, report=report, resume=resume)
    return summary, reports, states


def clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone(v) for v in obj]
    return obj


def without_timing(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in TIMING}


def assert_same_tensors(x: dict, y: dict) -> None:
    assert x.keys() == y.keys()
    for k in x:
        assert torch.equal(x[k], y[k]), k


# -- TrainConfig -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(cell="cnn"), "cell"),
        (dict(cell=3), "cell"),
        (dict(nonlinearity="sigmoid"), "nonlinearity"),
        (dict(hidden=-5), "hidden"),
        (dict(hidden=0), "hidden"),
        (dict(layers=0), "layers"),
        (dict(embed=-1), "embed"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(dropout=math.nan), "dropout"),
        (dict(lr=0.0), "lr"),
        (dict(lr=-1e-3), "lr"),
        (dict(lr=math.nan), "lr"),
        (dict(lr=math.inf), "lr"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(schedule="linear"), "schedule"),
        (dict(lr_min_ratio=0.0), "lr_min_ratio"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(grad_clip=-1.0), "grad_clip"),
        (dict(ema=1.0), "ema"),
        (dict(ema=-0.1), "ema"),
        (dict(batch_size=0), "batch_size"),
        (dict(steps=0), "steps"),
        (dict(eval_every=0), "eval_every"),
        (dict(eval_size=0), "eval_size"),
        (dict(train_digits=0), "train_digits"),
        (dict(test_digits=100_001), "test_digits"),
        (dict(diverge_loss=0.0), "diverge_loss"),
        (dict(device="gpu"), "device"),
        (dict(device="cuda:"), "device"),
        (dict(device="cuda:-1"), "device"),
        (dict(device="CPU"), "device"),
        (dict(heads=0), "heads"),
        (dict(ff_mult=0), "ff_mult"),
        (dict(pos="xpos"), "pos"),
        (dict(cell="transformer", hidden=32, heads=3), "heads"),
        (dict(cell="transformer", hidden=24, heads=8, pos="rope"), "heads"),  # odd head width
        (dict(cell="transformer", pos="learned", train_digits=10, test_digits=100), "test_digits"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(UserError) as e:
        TrainConfig(**kwargs)
    assert field in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "d,field",
    [
        ({"hidden": "32"}, "hidden"),
        ({"hidden": 32.0}, "hidden"),
        ({"layers": True}, "layers"),
        ({"lr": "0.1"}, "lr"),
        ({"lr": True}, "lr"),
        ({"stop_when_solved": 1}, "stop_when_solved"),
        ({"cell": None}, "cell"),
        ({"hiden": 32}, "hiden"),  # unknown key
        ({"learning_rate": 0.1}, "learning_rate"),
    ],
)
def test_from_dict_refuses_wrong_types_and_unknown_keys(d, field):
    with pytest.raises(UserError) as e:
        TrainConfig.from_dict(d, where="space.yaml")
    assert field in str(e.value)
    assert "space.yaml" in str(e.value)


def test_from_dict_round_trip_and_int_for_float():
    cfg = TrainConfig.from_dict({"lr": 1, "cell": "lstm", "dropout": 0})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert isinstance(cfg.dropout, float)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_config_accepts_device_names(device):
    assert TrainConfig(device=device).device == device


@pytest.mark.parametrize("device", ["cuda:²", "cuda:١"])
def test_config_refuses_non_ascii_device_index(device):
    # str.isdigit() accepts these, torch.device() then fails with a RuntimeError (a stack trace)
    with pytest.raises(UserError, match="device"):
        TrainConfig(device=device)


def test_config_refuses_seed_torch_cannot_take():
    # torch.manual_seed raises a plain ValueError (not a UserError) for seeds outside 64 bits
    with pytest.raises(UserError, match="seed"):
        TrainConfig(seed=2**64)


def test_field_docs_cover_every_field():
    docs = field_docs()
    assert set(docs) == {f.name for f in fields(TrainConfig)}
    for name, doc in docs.items():
        assert doc.strip() and "\n" not in doc.strip(), name


def test_model_config_embed_defaults_to_hidden():
    assert TrainConfig(hidden=24).model_config().embed == 24
    assert TrainConfig(hidden=24, embed=8).model_config().embed == 8


def test_settings_a_cell_ignores_are_not_checked_and_do_not_shape_its_model():
    # heads = 4 does not divide 30, and a gru has no heads: not an error, not part of its model
    cfg = TrainConfig(cell="gru", hidden=30, heads=4, pos="learned", test_digits=100)
    assert cfg.model_config() == TrainConfig(cell="gru", hidden=30).model_config()
    rnn = TrainConfig(cell="rnn", nonlinearity="relu", heads=2).model_config()
    assert rnn.nonlinearity == "relu" and rnn.heads == TrainConfig().model_config().heads
    t = TrainConfig(cell="transformer", nonlinearity="relu", heads=2, pos="learned", test_digits=5)
    assert t.model_config().nonlinearity == "tanh"  # the transformer has none
    assert (t.model_config().heads, t.model_config().positions) == (2, t.train_digits + 1)
    assert TrainConfig(cell="transformer", pos="rope").model_config().positions == 0


# -- devices ---------------------------------------------------------------------------------


def machine_has_gpu() -> bool:
    """Whether torch here can use a GPU, asked of the machine rather than of torch.cuda: the
    NVIDIA driver lists one (``nvidia-smi -L``), and this torch is a CUDA build."""
    smi = shutil.which("nvidia-smi")
    if smi is None or torch.version.cuda is None:
        return False
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60).stdout
    return listed.startswith("GPU ")


@pytest.mark.parametrize("visible", ["0", ""])
def test_auto_device_is_the_gpu_the_machine_has(visible):
    # CUDA_VISIBLE_DEVICES=0 names a GPU, but only one the machine has counts; "" hides them all
    code = "from adder.train import resolve_device; print(resolve_device('auto').type)"
    env = {"CUDA_VISIBLE_DEVICES": visible, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ("cuda" if visible and machine_has_gpu() else "cpu")


def test_auto_device_follows_torch(monkeypatch):
    # the choice alone, torch's answer stipulated both ways (this machine can show only one)
    for available, want in ((True, "cuda"), (False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda a=available: a)
        assert resolve_device("auto") == torch.device(want)
    assert resolve_device("cpu") == torch.device("cpu")


def test_unavailable_device_is_a_user_error():
    # no machine running these tests has 100 GPUs
    with pytest.raises(UserError, match="cuda:99"):
        resolve_device("cuda:99")
    with pytest.raises(UserError, match="cuda:99"):
        train(small(device="cuda:99", steps=1))


# -- the training loop -------------------------------------------------------------------------


@pytest.mark.parametrize("steps,expected", [(60, [20, 40, 60]), (50, [20, 40, 50])])
def test_reports_at_every_evaluation_and_the_last_step(steps, expected):
    cfg = small(steps=steps)
    summary, reports, states = run(cfg)
    assert [m["step"] for m in reports] == expected
    for m in reports:
        assert m.keys() >= METRIC_KEYS
        assert m["status"] == "ok"
        for key in ("digit_acc", "exact_match", "iid_digit_acc", "iid_exact_match"):
            assert 0.0 <= m[key] <= 1.0
        for key in ("train_loss", "val_loss", "iid_val_loss", "samples_per_s"):
            assert math.isfinite(m[key]) and m[key] > 0
        assert m["lr"] == pytest.approx(cfg.lr)
        assert states[m["step"]]["step"] == m["step"]
        assert states[m["step"]]["format"] == CHECKPOINT_FORMAT
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["status"] == "ok"
    assert summary["steps"] == expected[-1]
    assert summary["cell"] == cfg.cell and summary["test_digits"] == cfg.test_digits
    assert summary["loss"] == reports[-1]["val_loss"]
    assert summary["exact_match"] == reports[-1]["exact_match"]
    model, _ = load_model_from_state(states[expected[-1]])
    assert summary["params"] == count_params(model)


def test_train_without_report():
    summary = train(small(steps=20))
    assert summary["status"] == "ok" and summary["steps"] == 20


def test_same_config_same_run():
    one, two = run(small(steps=40, dropout=0.2)), run(small(steps=40, dropout=0.2))
    assert without_timing(one[0]) == without_timing(two[0])
    assert_same_tensors(one[2][40]["model"], two[2][40]["model"])
    other = run(small(steps=40, dropout=0.2, seed=1))
    assert not torch.equal(
        one[2][40]["model"]["head.weight"], other[2][40]["model"]["head.weight"]
    )


def test_learning_happens():
    _, reports, _ = run(small(steps=150, eval_every=50, lr=0.003, cell="rnn", hidden=32))
    assert reports[-1]["val_loss"] < reports[0]["val_loss"]
    assert reports[-1]["digit_acc"] > 0.5


def test_divergence_at_evaluation_is_reported_not_raised():
    summary, reports, _ = run(small(lr=10.0))
    assert summary["status"] == "diverged"
    assert summary["steps"] <= 20  # at or before the first evaluation
    assert [m["status"] for m in reports] == ["diverged"] * len(reports)


def nan_run(**kw) -> TrainConfig:
    # an unbounded cell and an absurd SGD step: the training loss is NaN within two steps
    return small(cell="rnn", nonlinearity="relu", optimizer="sgd", lr=1e6, **kw)


def test_non_finite_training_loss_ends_the_run_as_diverged():
    summary, reports, _ = run(nan_run())
    assert summary["status"] == "diverged"
    assert summary["steps"] <= 20
    assert reports == []  # no evaluation happened
    assert math.isnan(summary["loss"])


def test_diverged_summary_has_every_summary_key():
    # a run that diverges between evaluations returns a summary without digit_acc/exact_match
    summary, _, _ = run(nan_run())
    assert summary.keys() >= SUMMARY_KEYS


def test_stop_when_solved_stops_at_the_first_solved_evaluation():
    cfg = TrainConfig(
        cell="rnn",
        layers=1,
        hidden=32,
        lr=0.003,
        train_digits=10,
        test_digits=20,
        eval_size=200,
        eval_every=50,
        steps=2000,
        stop_when_solved=True,
    )
    summary, reports, _ = run(cfg)
    assert summary["status"] == "ok"
    assert summary["solved_step"] is not None
    assert summary["steps"] == summary["solved_step"] < cfg.steps
    assert summary["exact_match"] >= SOLVED
    assert reports[-1]["step"] == summary["solved_step"]
    assert all(m["exact_match"] < SOLVED for m in reports[:-1])


SOLVES = dict(  # solves 12-digit sums within a few hundred steps
    cell="rnn", layers=1, hidden=32, lr=0.003, train_digits=10, test_digits=12, eval_size=200,
    eval_every=25, steps=2000, stop_when_solved=True,
)  # fmt: skip


def test_patience_asks_for_consecutive_passes():
    once, once_reports, _ = run(TrainConfig(**SOLVES))
    twice, reports, _ = run(TrainConfig(**SOLVES, solve_patience=3))
    passes = [m["exact_match"] >= SOLVED for m in reports]
    assert twice["solved_step"] == reports[-1]["step"] > once["solved_step"]
    assert passes[-3:] == [True] * 3  # the solving report and the two before it passed
    assert not any(all(passes[i : i + 3]) for i in range(len(passes) - 3))  # none earlier
    assert twice["solved_gflop"] > once["solved_gflop"]


def test_confirmation_on_longer_sums_is_what_solves():
    """A run is solved at the first evaluation where the test set passed and the longer set
    reaches 0.999; every earlier pass of the test set was refused by the longer set."""
    cfg = TrainConfig(**SOLVES, confirm_digits=80, confirm_size=100, solve_exact=1.0)
    summary, reports, states = run(cfg)
    assert summary["solved_step"] == reports[-1]["step"]
    checked = [m for m in reports if "confirm_exact_match" in m]
    assert checked and checked[-1] is reports[-1]
    assert checked[-1]["confirm_exact_match"] >= SOLVED
    assert all(m["confirm_exact_match"] < SOLVED for m in checked[:-1])
    assert all(m["exact_match"] == 1.0 for m in checked)
    # independently: the solving model adds 100 fresh 80-digit sums (Python's integers)
    from adder.data import from_digits, held_out
    from adder.models import Adder

    model = Adder(cfg.model_config())
    model.load_state_dict(states[summary["solved_step"]]["model"])
    b = held_out(100, 80)
    with torch.no_grad():
        got = from_digits(model(b.a, b.b).argmax(-1))
    want = [str(int(x) + int(y)) for x, y in zip(from_digits(b.a), from_digits(b.b), strict=True)]
    assert got == want


def test_confirm_exact_asks_for_every_longer_sum_right():
    # this run's first passing confirmation gets 999 of its 1000 60-digit sums right
    cfg = TrainConfig(
        **{**SOLVES, "lr": 0.002}, confirm_digits=60, confirm_size=1000, solve_exact=1.0
    )
    loose, loose_reports, _ = run(cfg)
    assert loose_reports[-1]["confirm_exact_match"] == 0.999  # the default: one may be wrong
    strict, reports, _ = run(dataclasses.replace(cfg, confirm_exact=1.0))
    confirms = [m["confirm_exact_match"] for m in reports if "confirm_exact_match" in m]
    assert strict["solved_step"] > loose["solved_step"]
    assert confirms[-1] == 1.0 and 0.999 in confirms[:-1]
    assert all(c < 1.0 for c in confirms[:-1])


def test_confirm_patience_asks_for_passes_at_consecutive_evaluations():
    cfg = TrainConfig(**SOLVES, confirm_digits=40, confirm_size=200, solve_exact=1.0)
    once, _, _ = run(cfg)
    twice, reports, states = run(dataclasses.replace(cfg, confirm_patience=2))
    assert twice["solved_step"] == reports[-1]["step"] > once["solved_step"]
    passed = [m.get("confirm_exact_match", 0.0) >= SOLVED for m in reports]
    assert passed[-2:] == [True, True]  # the solving evaluation and the one before it
    assert not any(passed[i] and passed[i + 1] for i in range(len(passed) - 2))  # none earlier
    # a run resumed between the two passes solves where it did
    at = reports[-2]["step"]
    _, rest, _ = run(dataclasses.replace(cfg, confirm_patience=2), resume=states[at])
    assert [without_timing(m) for m in rest] == [without_timing(reports[-1])]


def confirmation_waits(reports: list[dict]) -> list[int]:
    """For each confirmation, the passes of the test set in a row that led to it."""
    waits, passes = [], 0
    for m in reports:
        passes = passes + 1 if m["exact_match"] == 1.0 else 0
        if "confirm_exact_match" in m:
            waits, passes = [*waits, passes], 0
    return waits


def test_a_failed_confirmation_doubles_the_wait_for_the_next(monkeypatch):
    # 1000-digit sums refuse this run's model three times before it adds them
    cfg = TrainConfig(
        **{**SOLVES, "lr": 0.002}, confirm_digits=1000, confirm_size=100, solve_exact=1.0
    )
    summary, reports, states = run(cfg)
    waits = confirmation_waits(reports)
    assert len(waits) >= 3 and summary["solved_step"] == reports[-1]["step"]
    assert waits == [1 << k for k in range(len(waits))]  # 1, 2, 4, 8 passes
    # a run resumed after its second failed confirmation waits as long as before
    at = [m["step"] for m in reports if "confirm_exact_match" in m][1]
    _, rest, _ = run(cfg, resume=states[at])
    assert [without_timing(m) for m in rest] == [
        without_timing(m) for m in reports if m["step"] > at
    ]
    # the wait stops growing at 2**CONFIRM_BACKOFF x solve_patience
    monkeypatch.setattr(adder.train, "CONFIRM_BACKOFF", 1)
    _, reports, _ = run(dataclasses.replace(cfg, solve_patience=2))
    waits = confirmation_waits(reports)
    assert len(waits) >= 3 and waits == [2] + [4] * (len(waits) - 1)


def test_gflop_counts_every_training_step():
    cfg = small(cell="lstm", layers=2, hidden=16, batch_size=24, train_digits=7)
    _, reports, _ = run(cfg)
    model_weights = 0
    from adder.models import Adder

    for name, p in Adder(cfg.model_config()).named_parameters():
        if "weight" in name and "embed" not in name:
            model_weights += p.numel()
    # 2 FLOPs per weight per position, forward; backward twice that; 8 positions per sum
    per_step = 3 * 2 * model_weights * (cfg.train_digits + 1) * cfg.batch_size
    assert [m["gflop"] for m in reports] == pytest.approx(
        [m["step"] * per_step / 1e9 for m in reports]
    )


def test_quick_evaluations_keep_solved_step_on_the_whole_test_set(monkeypatch):
    # During training a held-out set is scored chunk by chunk, and only until the run cannot be
    # solved on it. solved_step, and every figure of the solving report, must not move.
    module = importlib.import_module("adder.train")  # adder.train, the attribute, is train()
    cfg = TrainConfig(
        cell="rnn",
        layers=1,
        hidden=32,
        lr=0.003,
        train_digits=10,
        test_digits=12,
        eval_size=400,
        eval_every=50,
        steps=2000,
        stop_when_solved=True,
    )
    monkeypatch.setattr(module, "EVAL_CHUNK", 50)
    quick, quick_reports, _ = run(cfg)
    monkeypatch.setattr(
        module, "allowed_errors", lambda n, exact: n
    )  # never stop: all 400, always
    whole, whole_reports, _ = run(cfg)
    assert quick["solved_step"] is not None
    assert quick["solved_step"] == whole["solved_step"] == quick["steps"]
    assert without_timing(quick) == without_timing(whole)  # the solving report: all 400 sums
    assert without_timing(quick_reports[-1]) == without_timing(whole_reports[-1])
    assert len(quick_reports) == len(whole_reports)
    assert all(m["exact_match"] < SOLVED for m in quick_reports[:-1])
    assert quick_reports[0]["val_loss"] != whole_reports[0]["val_loss"]  # 50 sums, not 400


def test_last_step_is_scored_on_the_whole_test_set(monkeypatch):
    module = importlib.import_module("adder.train")
    cfg = small(steps=40, eval_every=20, eval_size=100)
    monkeypatch.setattr(module, "EVAL_CHUNK", 10)
    quick, reports, _ = run(cfg)
    monkeypatch.setattr(module, "allowed_errors", lambda n, exact: n)
    whole, whole_reports, _ = run(cfg)
    assert reports[0]["val_loss"] != whole_reports[0]["val_loss"]
    assert without_timing(reports[-1]) == without_timing(whole_reports[-1])
    assert without_timing(quick) == without_timing(whole)


@pytest.mark.parametrize("n,allowed", [(1, 0), (200, 0), (999, 0), (1000, 1), (5000, 5)])
def test_allowed_errors(n, allowed):
    module = importlib.import_module("adder.train")
    assert module.allowed_errors(n, SOLVED) == allowed
    assert (n - allowed) / n >= SOLVED > (n - allowed - 1) / n
    assert module.allowed_errors(n, 1.0) == 0


def test_report_returning_true_stops_the_run():
    summary, reports, _ = run(small(), stop_at=20)
    assert [m["step"] for m in reports] == [20]
    assert summary["steps"] == 20


@pytest.mark.parametrize("schedule", ["cosine", "exp"])
def test_schedules_end_at_lr_times_lr_min_ratio(schedule):
    cfg = small(steps=40, eval_every=20, schedule=schedule, lr=0.01, lr_min_ratio=0.05)
    summary, reports, _ = run(cfg)
    assert summary["lr"] == pytest.approx(0.01 * 0.05)
    mid = {"cosine": 0.05 + 0.95 * 0.5, "exp": 0.05**0.5}[schedule]
    assert reports[0]["lr"] == pytest.approx(0.01 * mid)


def test_constant_schedule():
    summary, _, _ = run(small(steps=20, lr=0.02))
    assert summary["lr"] == pytest.approx(0.02)


@pytest.mark.parametrize(("cell", "schedule"), [("gru", "constant"), ("transformer", "cosine")])
def test_auto_schedule_is_cosine_for_the_transformer_only(cell, schedule):
    assert TrainConfig(cell=cell).schedule == schedule  # the default, auto, resolved
    assert TrainConfig(cell=cell, schedule="exp").schedule == "exp"  # a given one is kept


# -- resuming ----------------------------------------------------------------------------------


ADAM = dict(optimizer="adam", schedule="constant")
SGD = dict(optimizer="sgd", schedule="cosine", lr=0.05, grad_clip=1.0)
ADAMW = dict(optimizer="adamw", schedule="exp", weight_decay=0.01)


@pytest.mark.parametrize(
    "cell,extra",
    [(cell, ADAM) for cell in CELLS]
    + [("gru", SGD), ("gru", ADAMW), ("transformer", ADAMW), ("transformer", {"ema": 0.96})],
    ids=[f"{cell}-adam-constant" for cell in CELLS]
    + ["gru-sgd-cosine-clip", "gru-adamw-exp", "transformer-adamw-exp", "transformer-ema"],
)
def test_resume_is_exact(tmp_path, cell, extra):
    # dropout > 0 between two layers: the global RNG state is part of what must be restored
    cfg = small(steps=40, eval_every=10, eval_size=50, dropout=0.3, layers=2, cell=cell, **extra)
    full_summary, full_reports, full_states = run(cfg)

    _, first_reports, first_states = run(cfg, stop_at=20)
    assert [m["step"] for m in first_reports] == [10, 20]
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(first_states[20], path)
    state = load_checkpoint(path)

    # the global RNG is somewhere else entirely when the resumed run starts
    torch.manual_seed(999)
    torch.rand(1000)
    summary, reports, states = run(cfg, resume=state)

    assert [m["step"] for m in reports] == [30, 40]
    assert [without_timing(m) for m in first_reports + reports] == [
        without_timing(m) for m in full_reports
    ]
    assert without_timing(summary) == without_timing(full_summary)
    assert_same_tensors(states[40]["model"], full_states[40]["model"])
    if cfg.ema:  # resumed at step 20, before the average's window (25 steps) fills: the
        # weights are scored then, and the average must come back from its own entry
        assert_same_tensors(states[40]["weights"], full_states[40]["weights"])
        assert_same_tensors(states[40]["average"], full_states[40]["average"])
    assert torch.equal(states[40]["generator"], full_states[40]["generator"])
    assert torch.equal(states[40]["torch_rng"], full_states[40]["torch_rng"])


def test_ema_is_the_model_evaluated_and_kept_and_leaves_the_training_alone():
    # the run without an average, reporting every step, gives every step's weights
    cfg = small(cell="transformer", steps=12, eval_every=1, eval_size=50)
    _, plain_reports, plain = run(cfg)
    decay = 0.8
    average = build(cfg, torch.device("cpu"))[0].state_dict()  # the initial weights
    for step in range(1, 13):
        w = 1 - min(decay, 1 - 1 / (step + 1))
        average = {k: v.lerp(plain[step]["model"][k], w) for k, v in average.items()}

    summary, reports, states = run(dataclasses.replace(cfg, ema=decay))
    assert_same_tensors(states[12]["weights"], plain[12]["model"])  # trained as without it
    for k, v in average.items():
        assert torch.allclose(states[12]["model"][k], v, atol=1e-6), k
    # until the average spans its window (1 / (1 - 0.8) = 5 steps) the weights are scored
    assert [without_timing(m) for m in reports[:4]] == [
        without_timing(m) for m in plain_reports[:4]
    ]
    assert_same_tensors(states[4]["model"], plain[4]["model"])
    assert reports[4]["val_loss"] != plain_reports[4]["val_loss"]  # from step 5, the average
    model = Adder(cfg.model_config())
    model.load_state_dict(states[12]["model"])  # what is reported is the average's
    t = evaluate(model, held_out(cfg.eval_size, cfg.test_digits))
    assert reports[-1]["val_loss"] == pytest.approx(t["loss"])
    assert reports[-1]["exact_match"] == t["exact_match"]


def test_checkpoint_state_is_a_snapshot_not_a_live_view():
    # report() may keep the state checkpoint() builds and let training go on (a search keeps
    # its best one); resuming from it later must still continue from the step it was taken at
    cfg = small(steps=40, eval_every=20, eval_size=50, dropout=0.3)
    kept = {}

    def report(metrics, checkpoint):
        if metrics["step"] == 20:
            kept["state"] = checkpoint()  # no clone: what a caller would naturally do

    full = train(cfg, report=report)
    assert kept["state"]["step"] == 20
    resumed = train(cfg, resume=kept["state"])
    assert without_timing(resumed) == without_timing(full)


def test_resume_refuses_another_model_shape():
    _, _, states = run(small(steps=10, eval_every=10))
    with pytest.raises(UserError, match="hidden"):
        train(small(hidden=24), resume=states[10])
    with pytest.raises(UserError, match="cell"):
        train(small(cell="lstm"), resume=states[10])
    _, _, states = run(small(steps=10, eval_every=10, cell="transformer", heads=4))
    with pytest.raises(UserError, match="heads"):
        train(small(cell="transformer", heads=2), resume=states[10])
    with pytest.raises(UserError, match="pos"):
        train(small(cell="transformer", heads=4, pos="rope"), resume=states[10])


def test_resume_past_the_last_step_trains_no_more():
    cfg = small(steps=20, eval_every=20)
    _, _, states = run(cfg)
    summary, reports, _ = run(cfg, resume=states[20])
    assert reports == []
    assert summary["steps"] == 20


# -- checkpoints -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gru_state() -> dict:
    _, _, states = run(small(steps=10, eval_every=10, cell="gru", layers=2))
    return states[10]


@pytest.fixture
def gru_ckpt(tmp_path, gru_state) -> Path:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(gru_state, path)
    return path


def load_model_from_state(state):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.pt"
        save_checkpoint(state, path)
        return load_model(path)


def test_checkpoint_round_trip_with_weights_only(gru_ckpt, gru_state):
    assert sorted(p.name for p in gru_ckpt.parent.iterdir()) == ["checkpoint.pt"]  # no .tmp
    raw = torch.load(gru_ckpt, weights_only=True)
    state = load_checkpoint(gru_ckpt)
    assert state["format"] == raw["format"] == CHECKPOINT_FORMAT
    assert state["step"] == 10 and state["config"] == gru_state["config"]
    assert_same_tensors(state["model"], gru_state["model"])


@pytest.mark.parametrize("cell", CELLS)
def test_checkpoint_round_trip_every_cell(tmp_path, cell):
    _, _, states = run(small(steps=10, eval_every=10, cell=cell, dropout=0.2))
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(states[10], path)
    model, cfg = load_model(path)
    assert cfg.cell == cell and not model.training
    assert_same_tensors(model.state_dict(), states[10]["model"])
    again = type(model)(cfg.model_config())
    again.load_state_dict(states[10]["model"])
    again.eval()
    a, b = torch.randint(0, 10, (4, 30)), torch.randint(0, 10, (4, 30))
    with torch.no_grad():
        assert torch.equal(model(a, b), again(a, b))


def test_a_checkpoint_from_before_the_transformer_still_loads(tmp_path, gru_state):
    # the recurrent cell's weights were "rnn.*" then, "cell.rnn.*" now
    old = {k.removeprefix("cell."): v for k, v in gru_state["model"].items()}
    assert any(k.startswith("rnn.") for k in old)
    path = tmp_path / "old.pt"
    save_checkpoint({**gru_state, "model": old}, path)
    model, _ = load_model(path)
    assert_same_tensors(model.state_dict(), gru_state["model"])


def test_save_checkpoint_replaces_an_older_one(tmp_path, gru_state):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({**gru_state, "step": 1}, path)
    save_checkpoint(gru_state, path)
    assert load_checkpoint(path)["step"] == 10


def test_load_model(gru_ckpt, gru_state):
    model, cfg = load_model(gru_ckpt)
    assert not model.training
    assert cfg == TrainConfig.from_dict(gru_state["config"])
    assert_same_tensors(model.state_dict(), gru_state["model"])


def corrupt(kind: str, good: Path, path: Path) -> Path:
    data = good.read_bytes()
    if kind == "missing":
        return path / "nowhere" / "checkpoint.pt"
    if kind == "directory":
        path.mkdir()
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated-100":
        path.write_bytes(data[:100])
    elif kind == "truncated-half":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(bytes(range(256)) * 40)
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "wrong-format":
        torch.save({"format": "something-else-v9", "model": {}}, path)
    elif kind == "no-format":
        torch.save({"model": torch.load(good, weights_only=True)["model"]}, path)
    elif kind == "not-a-dict":
        torch.save([torch.zeros(3)], path)
    elif kind == "unsafe-object":
        torch.save({"format": CHECKPOINT_FORMAT, "when": datetime.date(2020, 5, 6)}, path)
    else:
        raise AssertionError(kind)
    return path


BAD_FILES = [
    "missing",
    "directory",
    "empty",
    "truncated-100",
    "truncated-half",
    "garbage",
    "text",
    "wrong-format",
    "no-format",
    "not-a-dict",
    "unsafe-object",
]


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_checkpoint_files_are_user_errors(kind, gru_ckpt, tmp_path):
    path = corrupt(kind, gru_ckpt, tmp_path / "bad.pt")
    with pytest.raises(UserError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError):
        load_model(path)


def edited(state: dict, path: Path, **changes) -> Path:
    config = {**state["config"], **changes}
    save_checkpoint({**state, "config": config}, path)
    return path


@pytest.mark.parametrize(
    "changes", [dict(cell="lstm"), dict(cell="rnn"), dict(hidden=24), dict(layers=3)]
)
def test_checkpoint_whose_config_does_not_fit_its_weights(gru_state, tmp_path, changes):
    path = edited(gru_state, tmp_path / "edited.pt", **changes)
    with pytest.raises(UserError, match="does not fit"):
        load_model(path)


def test_checkpoint_with_a_bad_config_is_a_user_error(gru_state, tmp_path):
    path = edited(gru_state, tmp_path / "edited.pt", hidden=-3)
    with pytest.raises(UserError, match="hidden"):
        load_model(path)
    path = edited(gru_state, tmp_path / "edited2.pt", colour="blue")
    with pytest.raises(UserError, match="colour"):
        load_model(path)


@pytest.mark.parametrize("missing", ["config", "model"])
def test_checkpoint_missing_a_part_is_a_user_error(gru_state, tmp_path, missing):
    path = tmp_path / "partial.pt"
    save_checkpoint({k: v for k, v in gru_state.items() if k != missing}, path)
    with pytest.raises(UserError):
        load_model(path)


def test_dataclass_fields_match_checkpoint_config(gru_state):
    assert set(gru_state["config"]) == {f.name for f in dataclasses.fields(TrainConfig)}
