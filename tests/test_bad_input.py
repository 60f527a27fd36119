"""Bad input, refused well: a malformed space, flag, operand or checkpoint is one line on stderr
naming what is wrong (the file and the key for a space), exit status 2, no stack trace, and Ray
never started (never even imported).

Every case of the table runs in this process through ``search.cli.main`` (fast); a cross-section
also runs as a real ``adder`` process that reports, at exit, whether ``ray`` was ever imported.
A property-based test feeds random YAML documents to the space loader.
"""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adder.config import TrainConfig
from adder.train import save_checkpoint, train
from search.cli import main
from search.space import TOP, Space, SpaceError, load_space, show_key

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
name: tiny
cells: [gru, rnn]
trials: 2
budget: {max_steps: 20, eval_every: 10, grace_steps: 10, reduction_factor: 2}
fixed: {train_digits: 3, test_digits: 5, eval_size: 50}
params:
  hidden: {int: [8, 16]}
  lr: {float: [1.0e-3, 1.0e-2], log: true}
"""

# -- the inputs -----------------------------------------------------------------------------------

# space files: name -> text (or bytes), each with one mistake
SPACES: dict[str, str | bytes] = {
    "syntax": "name: t\nparams: {hidden: [1, 2\n",
    "list": "- just\n- a list\n",
    "empty": "",
    "unknown_key": GOOD + "patience: 3\n",
    "unknown_cell": GOOD.replace("[gru, rnn]", "[gru, cnn]"),
    "trials_zero": GOOD.replace("trials: 2", "trials: 0"),
    "metric": GOOD + "objective: {metric: accuracy}\n",
    "eval_every": GOOD.replace("eval_every: 10", "eval_every: 50"),
    "reversed": GOOD.replace("[8, 16]", "[16, 8]"),
    "empty_choice": GOOD + "  batch_size: {choice: []}\n",
    "fixed_unknown": GOOD.replace("eval_size: 50}", "eval_size: 50, widht: 4}"),
    "log_zero": GOOD.replace("[1.0e-3, 1.0e-2]", "[0.0, 1.0e-2]"),
    # yaml.safe_load must refuse to build objects: this one would run a command
    "python_tag": "name: !!python/object/apply:os.system ['touch {marker}']\n",
    "not_utf8": b"name: \xff\xfe\x00bad\n",
    # found by the property test below: each once crashed the loader with a TypeError
    "metric_list": GOOD + "objective: {metric: [val_loss]}\n",
    "cell_mapping": GOOD.replace("[gru, rnn]", "[gru, {rnn: 1}]"),
    "param_cells_list": GOOD.replace("log: true}", "log: true, cells: [[rnn]]}"),
    "step_nan": GOOD.replace("[8, 16]}", "[8, 16], step: .nan}"),
    "verify_top_zero": GOOD + "verify: {top: 0}\n",
    "verify_unknown": GOOD + "verify: {sedes: 3}\n",
    "verify_digits": GOOD + "verify: {digits: [10, 0]}\n",
    "grace_both": GOOD.replace("grace_steps: 10,", "grace_steps: 10, grace_gflop: 1.0,"),
    "target_unverified": GOOD.replace("reduction_factor: 2}", "reduction_factor: 2, target: 5}"),
    "time_negative": GOOD.replace("reduction_factor: 2}", "reduction_factor: 2, time_s: -5}"),
    # a setting the cell never reads: TPE would spend trials on a dead dimension
    "dead_param": GOOD + "  nonlinearity: {choice: [tanh, relu], cells: [gru]}\n",
    "dead_implicit": GOOD.replace("[gru, rnn]", "[gru]") + "  nonlinearity: {choice: [tanh]}\n",
    "dead_fixed": GOOD.replace("[gru, rnn]", "[gru]").replace("50}", "50, nonlinearity: relu}"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Every file the cases name, made once: spaces, checkpoints, folders."""
    d = tmp_path_factory.mktemp("bad-input")
    names: dict[str, Path] = {"dir": d, "marker": d / "code-ran"}
    for name, text in SPACES.items():
        path = d / f"{name}.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text.replace("{marker}", str(names["marker"])))
        names[f"space_{name}"] = path
    (d / "good.yaml").write_text(GOOD)
    names["good"] = d / "good.yaml"
    names["a_file"] = d / "a-file.txt"
    names["a_file"].write_text("not a folder\n")
    # a search that has started: --resume is needed to touch it
    started = d / "started" / "tiny" / "tune"
    started.mkdir(parents=True)
    (started / "experiment_state-2026.json").write_text("{}")
    names["started"] = d / "started"
    # a finished search whose study searched hidden over another range than GOOD's
    import optuna

    warm = d / "warm"
    warm.mkdir()
    (warm / "leaderboard.json").write_text(json.dumps({"name": "old", "objective": {
        "metric": "cost_to_solve", "mode": "min"}, "cells": {}}))  # fmt: skip
    study = optuna.create_study(study_name="old-gru", storage=f"sqlite:///{warm}/optuna.db")
    study.add_trial(optuna.trial.create_trial(
        params={"hidden": 32, "lr": 0.005}, value=1.0, distributions={
            "hidden": optuna.distributions.IntDistribution(8, 64),
            "lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}))  # fmt: skip
    names["warm"] = warm

    # a real checkpoint (two training steps), then broken copies of it
    cfg = TrainConfig(
        cell="gru", hidden=8, layers=1, steps=2, eval_every=2, eval_size=10,
        train_digits=3, test_digits=5, device="cpu",
    )  # fmt: skip
    states = []
    train(cfg, report=lambda m, checkpoint: states.append(checkpoint()))
    good = states[-1]
    save_checkpoint(good, d / "good.pt")
    names["ckpt"] = d / "good.pt"
    raw = (d / "good.pt").read_bytes()

    def write(name: str, data: bytes | None = None, state=None) -> None:
        path = d / name
        if state is not None:
            torch.save(state, path)
        else:
            path.write_bytes(data)
        names[name.replace(".", "_")] = path

    write("truncated.pt", raw[: len(raw) // 2])
    write("empty.pt", b"")
    write("garbage.pt", b"\x00garbage\xff" * 100)
    write("json.pt", json.dumps({"format": "adder-checkpoint-v1"}).encode())
    write("weights_only.pt", state={"weights": torch.zeros(3)})  # not an adder checkpoint
    lstm = copy.deepcopy(good)
    lstm["config"]["cell"] = "lstm"  # gru weights under an lstm config: another cell type
    write("other_cell.pt", state=lstm)
    no_model = {k: v for k, v in good.items() if k != "model"}
    write("no_model.pt", state=no_model)
    bad_config = copy.deepcopy(good)
    bad_config["config"]["hidden"] = -5
    write("bad_config.pt", state=bad_config)
    write("pickle4.pkl", pickle.dumps({"format": "adder-checkpoint-v1"}, protocol=4))
    (d / "a-folder.pt").mkdir()
    names["folder_pt"] = d / "a-folder.pt"
    return names


S = ["search", "{good}", "--results", "{dir}/results", "--wandb", "disabled"]

# case -> (argv with {placeholders} from `inputs`, texts the one line must name)
CASES: dict[str, tuple[list[str], list[str]]] = {
    # the space YAML (adder search FILE): the line names the file and the key
    "space: syntax error": (
        ["search", "{space_syntax}"],
        ["{space_syntax}", "YAML syntax error at line"],
    ),
    "space: a list": (["search", "{space_list}"], ["{space_list}", "mapping"]),
    "space: empty file": (["search", "{space_empty}"], ["{space_empty}", "mapping"]),
    "space: unknown key": (["search", "{space_unknown_key}"], ["{space_unknown_key}", "patience"]),
    "space: unknown cell": (
        ["search", "{space_unknown_cell}"],
        ["{space_unknown_cell}", "cells", "cnn"],
    ),
    "space: trials 0": (["search", "{space_trials_zero}"], ["{space_trials_zero}", "trials"]),
    "space: bad metric": (["search", "{space_metric}"], ["{space_metric}", "objective.metric"]),
    "space: eval_every > max_steps": (
        ["search", "{space_eval_every}"],
        ["{space_eval_every}", "budget.eval_every"],
    ),
    "space: low > high": (["search", "{space_reversed}"], ["{space_reversed}", "params.hidden"]),
    "space: empty choice": (
        ["search", "{space_empty_choice}"],
        ["{space_empty_choice}", "params.batch_size.choice"],
    ),
    "space: unknown fixed": (
        ["search", "{space_fixed_unknown}"],
        ["{space_fixed_unknown}", "fixed.widht"],
    ),
    "space: log from 0": (["search", "{space_log_zero}"], ["{space_log_zero}", "params.lr.log"]),
    "space: python tag": (["search", "{space_python_tag}"], ["{space_python_tag}", "YAML"]),
    "space: not UTF-8": (["search", "{space_not_utf8}"], ["{space_not_utf8}", "UTF-8"]),
    "space: metric a list": (
        ["search", "{space_metric_list}"],
        ["{space_metric_list}", "objective.metric"],
    ),
    "space: cell a mapping": (
        ["search", "{space_cell_mapping}"],
        ["{space_cell_mapping}", "cells"],
    ),
    "space: param cells a list": (
        ["search", "{space_param_cells_list}"],
        ["{space_param_cells_list}", "params.lr.cells"],
    ),
    "space: step NaN": (["search", "{space_step_nan}"], ["{space_step_nan}", "params.hidden"]),
    "space: verify.top 0": (["search", "{space_verify_top_zero}"], ["verify.top"]),
    "space: verify unknown key": (["search", "{space_verify_unknown}"], ["verify.sedes"]),
    "space: verify.digits 0": (["search", "{space_verify_digits}"], ["verify.digits", "0"]),
    "space: two graces": (["search", "{space_grace_both}"], ["budget.grace_gflop"]),
    "space: target, no verify": (["search", "{space_target_unverified}"], ["budget.target"]),
    "space: time_s < 0": (["search", "{space_time_negative}"], ["budget.time_s", "-5"]),
    "space: a cell that ignores a param": (
        ["search", "{space_dead_param}"],
        ["{space_dead_param}", "params.nonlinearity.cells", "gru"],
    ),
    "space: a param for no cell of the space": (
        ["search", "{space_dead_implicit}"],
        ["{space_dead_implicit}", "params.nonlinearity", "searches nothing", "gru"],
    ),
    "space: fixed for no cell": (
        ["search", "{space_dead_fixed}"],
        ["{space_dead_fixed}", "fixed.nonlinearity", "gru"],
    ),
    "space: missing file": (["search", "{dir}/nowhere.yaml"], ["{dir}/nowhere.yaml"]),
    "space: a folder": (["search", "{dir}"], ["{dir}"]),
    # the flags of adder search / train / eval
    "flag: --trials x": ([*S, "--trials", "x"], ["--trials", "'x'"]),
    "flag: --trials 0": ([*S, "--trials", "0"], ["trials"]),
    "flag: --cells rnn,gpt": ([*S, "--cells", "rnn,gpt"], ["gpt"]),
    "flag: --max-steps -5": ([*S, "--max-steps", "-5"], ["max_steps"]),
    "flag: --seed 1.5": ([*S, "--seed", "1.5"], ["--seed", "1.5"]),
    "flag: --cpus-per-trial 0": ([*S, "--cpus-per-trial", "0"], ["--cpus-per-trial"]),
    "flag: --gpus-per-trial -1": ([*S, "--gpus-per-trial", "-1"], ["--gpus-per-trial"]),
    "flag: --max-concurrent 0": ([*S, "--max-concurrent", "0"], ["--max-concurrent"]),
    "flag: --wandb sometimes": ([*S, "--wandb", "sometimes"], ["--wandb", "sometimes"]),
    "flag: --name ../x": ([*S, "--name", "../x"], ["name", "../x"]),
    "flag: unknown --bogus": ([*S, "--bogus"], ["--bogus"]),
    "flag: --resume, nothing to resume": ([*S, "--resume"], ["--resume"]),
    "flag: exists, no --resume": (
        ["search", "{good}", "--results", "{started}", "--wandb", "disabled"],
        ["already exists", "--resume"],
    ),
    "flag: --results under a file": (
        ["search", "{good}", "--results", "{a_file}/sub", "--wandb", "disabled"],
        ["{a_file}/sub", "cannot be written"],
    ),
    "flag: --time-budget 0": ([*S, "--time-budget", "0"], ["time_s", "0"]),
    "flag: --time-budget soon": ([*S, "--time-budget", "soon"], ["--time-budget", "'soon'"]),
    "flag: --warm-start, no search there": (
        [*S, "--warm-start", "{dir}/nowhere"],
        ["--warm-start {dir}/nowhere", "optuna.db"],
    ),
    "flag: --warm-start, other ranges": (
        [*S, "--warm-start", "{warm}"],
        ["--warm-start {warm}", "gru parameter 'hidden'", "[8, 64]", "[8, 16]"],
    ),
    "flag: train --dropout 1.5": (["train", "--dropout", "1.5", "--out", "{dir}/t"], ["dropout"]),
    "flag: train --nines 1": (["train", "--nines", "1", "--out", "{dir}/t"], ["nines"]),
    "flag: train --optimizer rmsprop": (
        ["train", "--optimizer", "rmsprop", "--out", "{dir}/t"],
        ["rmsprop"],
    ),
    "flag: eval --n 0": (["eval", "{ckpt}", "--n", "0"], ["--n", "'0'"]),
    # the operands of adder add
    "operand: 12a": (["add", "{ckpt}", "12a", "5"], ["'12a'"]),
    "operand: -1": (["add", "{ckpt}", "5", "-1"], ["'-1'"]),
    "operand: empty": (["add", "{ckpt}", "", "5"], ["''"]),
    "operand: 1.5": (["add", "{ckpt}", "1.5", "5"], ["'1.5'"]),
    "operand: 1e5": (["add", "{ckpt}", "1e5", "5"], ["'1e5'"]),
    "operand: +5": (["add", "{ckpt}", "5", "+5"], ["'+5'"]),
    "operand: full-width digits": (["add", "{ckpt}", "\uff11\uff12", "5"], ["'\uff11\uff12'"]),
    "operand: 1_000": (["add", "{ckpt}", "1_000", "5"], ["'1_000'"]),
    # checkpoint files
    "checkpoint: missing": (["add", "{dir}/nowhere.pt", "1", "2"], ["{dir}/nowhere.pt"]),
    "checkpoint: truncated": (["add", "{truncated_pt}", "1", "2"], ["{truncated_pt}"]),
    "checkpoint: empty": (["eval", "{empty_pt}", "--n", "5"], ["{empty_pt}"]),
    "checkpoint: garbage": (["add", "{garbage_pt}", "1", "2"], ["{garbage_pt}"]),
    "checkpoint: JSON": (["add", "{json_pt}", "1", "2"], ["{json_pt}"]),
    "checkpoint: not adder's": (
        ["add", "{weights_only_pt}", "1", "2"],
        ["{weights_only_pt}", "not an adder checkpoint"],
    ),
    "checkpoint: other cell type": (
        ["add", "{other_cell_pt}", "1", "2"],
        ["{other_cell_pt}", "does not fit"],
    ),
    "checkpoint: no model": (["eval", "{no_model_pt}", "--n", "5"], ["{no_model_pt}", "model"]),
    "checkpoint: bad config": (["add", "{bad_config_pt}", "1", "2"], ["hidden"]),
    "checkpoint: bare pickle": (["add", "{pickle4_pkl}", "1", "2"], ["{pickle4_pkl}"]),
    "checkpoint: a folder": (["add", "{folder_pt}", "1", "2"], ["{folder_pt}"]),
}

# run as real processes too: a cross-section, every kind of input
CROSS_SECTION = [
    "space: syntax error",
    "space: python tag",
    "space: metric a list",
    "space: cell a mapping",
    "space: step NaN",
    "flag: --trials x",
    "flag: --resume, nothing to resume",
    "flag: --warm-start, other ranges",
    "operand: 12a",
    "checkpoint: truncated",
    "checkpoint: other cell type",
    "checkpoint: bare pickle",
]


def fill(argv: list[str], inputs: dict[str, Path]) -> list[str]:
    return [a.format(**inputs) for a in argv]


def assert_one_line(code, out: str, err: str, command: str, named: list[str]) -> None:
    assert code == 2, (code, out, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith((f"adder {command}: error: ", "adder: error: ")), lines[0]
    for text in named:
        assert text in lines[0], (text, lines[0])
    assert out == ""


def test_the_table_is_big_enough():
    kinds = {case.split(":")[0] for case in CASES}
    assert len(CASES) >= 25 and kinds == {"space", "flag", "operand", "checkpoint"}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_in_process(case, inputs, capsys):
    argv, named = CASES[case]
    try:
        code = main(fill(argv, inputs))
    except SystemExit as e:  # argparse refuses a flag by exiting
        code = e.code
    out, err = capsys.readouterr()
    assert_one_line(code, out, err, argv[0], fill(named, inputs))
    assert not inputs["marker"].exists(), "a space file ran code"
    assert not (inputs["dir"] / "results").exists(), "a refused search left a results folder"
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


# Runs `adder` (search.cli.main) and, at exit, writes the names of every imported module.
PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: open(sys.argv[1], 'w').write('\\n'.join(sorted(sys.modules))))\n"
    "from search.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


@pytest.fixture(scope="module")
def processes(inputs, tmp_path_factory):
    """case -> (exit status, stdout, stderr, modules imported): all started at once."""
    d = tmp_path_factory.mktemp("probes")
    running = {}
    for i, case in enumerate(CROSS_SECTION):
        argv, _ = CASES[case]
        running[case] = (
            subprocess.Popen(
                [sys.executable, "-c", PROBE, str(d / f"{i}.modules"), *fill(argv, inputs)],
                cwd=d,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
            d / f"{i}.modules",
        )
    done = {}
    for case, (p, modules) in running.items():
        out, err = p.communicate(timeout=300)
        done[case] = (p.returncode, out, err, modules.read_text().split())
    return done


@pytest.mark.parametrize("case", CROSS_SECTION)
def test_bad_input_as_a_process_never_imports_ray(case, processes, inputs):
    argv, named = CASES[case]
    code, out, err, modules = processes[case]
    assert "ray" not in modules, "Ray was imported"
    if argv[0] == "search":  # a refused search answers before even torch is loaded
        assert "torch" not in modules, "torch was imported"
    assert not inputs["marker"].exists(), "a space file ran code"
    assert_one_line(code, out, err, argv[0], fill(named, inputs))


# -- random YAML documents for the space loader -------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["rnn", "gru", "lstm", "val_loss", "min", "max", "tpe", "asha", "grid"])
)
VALUES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)
# where a mistake can hide: every key of a good space, and a few that are not there
PATHS = [
    (k,) for k in sorted(TOP)
] + [
    ("objective", "metric"), ("objective", "mode"), ("objective", "goal"),
    ("budget", "max_steps"), ("budget", "eval_every"), ("budget", "grace_steps"),
    ("budget", "reduction_factor"), ("budget", "stop_when_solved"), ("budget", "patience"),
    ("budget", "trial_seeds"),
    ("fixed", "train_digits"), ("fixed", "lr"), ("fixed", "steps"), ("fixed", "widht"),
    ("params", "hidden"), ("params", "hidden", "int"), ("params", "hidden", "log"),
    ("params", "lr", "float"), ("params", "lr", "step"), ("params", "lr", "cells"),
    ("params", "batch_size"), ("params", "batch_size", "choice"), ("params", "depth"),
    ("params", "nonlinearity", "choice"), ("params", "nonlinearity", "cells"),
]  # fmt: skip
BASE = yaml.safe_load(GOOD + "  batch_size: {choice: [32, 64]}\n")
BASE["params"]["nonlinearity"] = {"choice": ["tanh", "relu"], "cells": ["rnn"]}


@st.composite
def documents(draw):
    """A good space with a few keys changed to random values (or removed), or random values
    all through, or random text."""
    kind = draw(st.sampled_from(["edit", "edit", "random", "text"]))
    if kind == "text":
        return draw(st.text(max_size=80))
    if kind == "random":
        keys = st.sampled_from(sorted(TOP)) | st.text(max_size=6)
        return yaml.safe_dump(draw(st.dictionaries(keys, VALUES, max_size=6)))
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        *parents, key = draw(st.sampled_from(PATHS))
        node = doc
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        if draw(st.booleans()) and key in node:
            del node[key]
        else:
            node[key] = draw(VALUES)
    return yaml.safe_dump(doc)


def keys_of(text: str) -> set[str]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return set()
    return {str(k) for k in doc} if isinstance(doc, dict) else set()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents())
@example(text="? '\n\n  '\n: null\n")  # a key that is a newline: shown escaped, on one line
def test_random_space_loads_or_names_file_and_key(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "space.yaml"
        path.write_text(text)
        try:
            space = load_space(path)
        except SpaceError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith(f"{path}: "), msg
            rest = msg[len(f"{path}: ") :]
            whole = ("YAML syntax error", "expected a mapping", "cannot be read")
            keys = {show_key(k) for k in TOP | keys_of(text)}
            assert rest.startswith(whole) or any(
                rest.startswith((f"{k}:", f"{k}.")) for k in keys
            ), msg
        else:
            assert isinstance(space, Space) and space.cells and space.trials >= 1
