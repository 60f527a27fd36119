"""`adder train | eval | add` as a person runs them: real subprocesses, real files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from adder.data import from_digits, held_out, parse_operand, to_digits
from adder.models import CELLS, count_params
from adder.train import evaluate, load_checkpoint, load_model

SUMMARY_KEYS = {
    "cell",
    "params",
    "steps",
    "loss",
    "digit_acc",
    "exact_match",
    "test_digits",
    "solved_step",
    "status",
}
SMOKE = {"steps": 200, "eval_every": 50, "eval_size": 200, "test_digits": 20}


def strict_json(line: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


def last_json(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert lines, "no output on stdout"
    obj = strict_json(lines[-1])
    assert isinstance(obj, dict)
    return obj


def assert_user_error(proc, command: str) -> None:
    """Exit status 2 and exactly one line on stderr, naming the command, no stack trace."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith((f"adder {command}: error: ", "adder: error: ")), lines[0]


@pytest.fixture(scope="module")
def smoke(run_adder, tmp_path_factory):
    """cell -> (CompletedProcess, out folder) of `adder train --smoke`, each cell run once."""
    root = tmp_path_factory.mktemp("smoke")

    def one(cell: str):
        out = root / cell
        args = ["train", "--smoke", "--cell", cell, "--out", out, "--wandb", "disabled"]
        return run_adder(*args, cwd=root), out

    # one after another: concurrent runs were slower, not faster, on a small shared machine
    return {cell: one(cell) for cell in CELLS}


@pytest.fixture(scope="module")
def ckpt(smoke) -> Path:
    proc, out = smoke["gru"]
    assert proc.returncode == 0, proc.stderr
    return out / "checkpoint.pt"


# -- adder train ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", list(CELLS))
def test_train_smoke(smoke, cell):
    proc, out = smoke[cell]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr

    config = json.loads((out / "config.json").read_text())
    assert config["cell"] == cell
    assert {k: config[k] for k in SMOKE} == SMOKE

    lines = (out / "metrics.jsonl").read_text().splitlines()
    metrics = [strict_json(line) for line in lines]
    assert [m["step"] for m in metrics] == [50, 100, 150, 200]

    result = last_json(proc.stdout)
    assert result.keys() >= SUMMARY_KEYS
    assert result["cell"] == cell
    assert result["steps"] == 200
    assert result["test_digits"] == 20
    assert result["status"] == "ok"
    assert result["exact_match"] == metrics[-1]["exact_match"]
    assert result["digit_acc"] == metrics[-1]["digit_acc"]
    assert result["loss"] == metrics[-1]["val_loss"]
    assert 0.0 <= result["digit_acc"] <= 1.0

    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 200
    assert state["config"] == config
    model, _ = load_model(out / "checkpoint.pt")
    assert result["params"] == count_params(model)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
    ]


def test_train_with_wandb_offline_keeps_the_run_in_the_out_folder(run_cli, tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        "train", "--smoke", "--cell", "rnn", "--nonlinearity", "relu", "--hidden", "8",
        "--steps", "20", "--eval-every", "10", "--out", out, "--wandb", "offline",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    config = json.loads((out / "config.json").read_text())  # flags win over --smoke
    assert (config["nonlinearity"], config["hidden"], config["steps"]) == ("relu", 8, 20)
    assert (config["eval_size"], config["test_digits"]) == (200, 20)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    runs = [p for p in out.rglob("offline-run-*") if p.is_dir()]
    assert len(runs) == 1, list(out.rglob("*"))
    assert last_json(proc.stdout)["status"] == "ok"


def test_metrics_jsonl_is_strict_json_when_the_loss_is_nan(run_cli, tmp_path):
    # evaluated right after an absurd step: the held-out loss is NaN; the file must stay JSON
    out = tmp_path / "run"
    proc = run_cli(
        "train", "--cell", "rnn", "--nonlinearity", "relu", "--optimizer", "sgd", "--lr", "1e10",
        "--hidden", "8", "--steps", "5", "--eval-every", "1", "--eval-size", "20",
        "--test-digits", "5", "--out", out, "--wandb", "disabled",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    assert result["status"] == "diverged"
    assert result["loss"] is None  # NaN printed as null on stdout
    for line in (out / "metrics.jsonl").read_text().splitlines():
        strict_json(line)


# -- adder eval / adder add -------------------------------------------------------------------


def test_eval(run_cli, ckpt):
    proc = run_cli("eval", ckpt, "--digits", "30", "--n", "50")
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    assert result["digits"] == 30 and result["n"] == 50
    assert result["cell"] == "gru"
    # the same numbers as evaluating in this process on the same held-out set
    model, _ = load_model(ckpt)
    expected = evaluate(model, held_out(50, 30))
    for key in ("digit_acc", "exact_match", "loss"):
        assert result[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-9)
        assert math.isfinite(result[key])


def model_sum(ckpt: Path, a: str, b: str) -> str:
    model, _ = load_model(ckpt)
    width = max(len(a), len(b)) + 1
    with torch.no_grad():
        return from_digits(model(to_digits([a], width), to_digits([b], width)).argmax(-1))[0]


def test_add(run_cli, ckpt):
    proc = run_cli("add", ckpt, "123", "456")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    got = model_sum(ckpt, "123", "456")
    assert lines[0].split() == ["model:", got]
    assert lines[1].split() == ["true:", "579"]
    assert lines[2].split() == ["match:", "yes" if got == "579" else "no"]


def test_add_json(run_cli, ckpt):
    a, b = "007", "9" * 40
    proc = run_cli("add", ckpt, a, b, "--json")
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    true = str(7 + int(b))
    got = model_sum(ckpt, parse_operand(a), b)
    assert result == {"a": "7", "b": b, "model": got, "true": true, "match": got == true}
    assert proc.stdout.splitlines()[1].split() == ["true:", true]


# -- user errors: exit 2, one line on stderr, nothing half-started ------------------------------

TRAIN = ["train", "--smoke", "--wandb", "disabled", "--out", "{dir}/run"]
# case -> (argv with {dir}/{ckpt}/{file}/{garbage}/{truncated} placeholders, text stderr names)
USER_ERRORS = {
    "train unknown cell": ([*TRAIN, "--cell", "cnn"], "cnn"),
    "train --hidden -5": ([*TRAIN, "--hidden", "-5"], "hidden"),
    "train --hidden abc": ([*TRAIN, "--hidden", "abc"], "abc"),
    "train --lr 0": ([*TRAIN, "--lr", "0"], "lr"),
    "train --wandb bogus": ([*TRAIN, "--wandb", "bogus"], "bogus"),
    "train --device cuda:99": ([*TRAIN, "--device", "cuda:99"], "cuda:99"),  # no such GPU here
    "train --out under a file": (
        ["train", "--smoke", "--wandb", "disabled", "--out", "{file}/x"],
        "{file}/x",
    ),
    "add 12a": (["add", "{ckpt}", "12a", "5"], "'12a'"),
    "add -1": (["add", "{ckpt}", "5", "-1"], "'-1'"),
    "eval missing checkpoint": (["eval", "{dir}/nowhere.pt"], "{dir}/nowhere.pt"),
    "eval garbage checkpoint": (["eval", "{garbage}", "--n", "10"], "{garbage}"),
    "add truncated checkpoint": (["add", "{truncated}", "1", "2"], "{truncated}"),
}
# Settings refused before anything starts: no output folder may be left behind.
CONFIG_ERRORS = [
    "train unknown cell",
    "train --hidden -5",
    "train --hidden abc",
    "train --lr 0",
    "train --wandb bogus",
    "train --device cuda:99",
]


@pytest.fixture(scope="module")
def user_errors(run_adder, ckpt, tmp_path_factory):
    """case -> (CompletedProcess, its folder, the text stderr must name), each run once."""

    def one(case: str):
        d = tmp_path_factory.mktemp("error")
        (d / "file").write_text("")
        (d / "garbage.pt").write_bytes(b"\x00garbage\xff" * 100)
        (d / "truncated.pt").write_bytes(ckpt.read_bytes()[:100])
        names = {"dir": d, "ckpt": ckpt, "file": d / "file"}
        names |= {"garbage": d / "garbage.pt", "truncated": d / "truncated.pt"}
        argv, named = USER_ERRORS[case]
        proc = run_adder(*(a.format(**names) for a in argv), cwd=d)
        return proc, d, named.format(**names)

    return {case: one(case) for case in USER_ERRORS}


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_user_error_is_one_line_and_exit_2(user_errors, case):
    proc, _, named = user_errors[case]
    assert_user_error(proc, case.split()[0])
    assert named in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("case", CONFIG_ERRORS)
def test_train_config_errors_start_nothing(user_errors, case):
    _, d, _ = user_errors[case]
    assert not (d / "run").exists(), sorted(p.name for p in (d / "run").iterdir())
