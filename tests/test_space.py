"""Search spaces: the shipped ones load; a malformed one is one line naming file and key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from search.space import Sampler, SpaceError, load_space, parse_space

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "spaces").rglob("*.yaml"))

GOOD = """
name: t
cells: [rnn, gru]
trials: 3
objective: {metric: val_loss, mode: min}
budget: {max_steps: 100, eval_every: 10, grace_steps: 20, reduction_factor: 2}
fixed: {train_digits: 3, test_digits: 5}
params:
  layers: {int: [1, 2]}
  hidden: {int: [8, 64], log: true}
  lr: {float: [1.0e-4, 1.0e-1], log: true}
  dropout: {float: [0.0, 0.5], step: 0.1}
  batch_size: {choice: [32, 64]}
  nonlinearity: {choice: [tanh, relu], cells: [rnn]}
"""


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_shipped_spaces_load(path):
    space = load_space(path)
    assert space.cells and space.trials >= 1


def test_good_space_samples_define_by_run():
    space = parse_space(__import__("yaml").safe_load(GOOD), "good.yaml")
    study = optuna.create_study()
    for cell, has_nonlin in (("rnn", True), ("gru", False)):
        trial = study.ask()
        Sampler(space.params, cell)(trial)
        assert ("nonlinearity" in trial.params) == has_nonlin
        assert 8 <= trial.params["hidden"] <= 64
        assert (
            trial.params["dropout"] in {0.0, 0.1, 0.2, 0.3, 0.4, 0.5}
            or abs(trial.params["dropout"] * 10 - round(trial.params["dropout"] * 10)) < 1e-9
        )
    base = space.base_config("gru")
    assert base["steps"] == 100 and base["eval_every"] == 10 and base["train_digits"] == 3


def test_a_setting_only_some_cells_read_is_searched_for_those_alone():
    """nonlinearity with no cells: is searched for rnn (which reads it), not for gru: TPE would
    spend gru's trials on a dimension its model never reads."""
    import yaml

    doc = yaml.safe_load(GOOD)
    doc["params"]["nonlinearity"] = {"choice": ["tanh", "relu"]}
    space = parse_space(doc, "good.yaml")
    study = optuna.create_study()
    for cell, searched in (("rnn", True), ("gru", False)):
        trial = study.ask()
        Sampler(space.params, cell)(trial)
        assert ("nonlinearity" in trial.params) == searched, cell
    grid = {**doc, "sampler": "grid", "params": {"nonlinearity": {"choice": ["tanh", "relu"]}}}
    assert parse_space(grid, "grid.yaml").grid("gru") == {}
    assert parse_space(grid, "grid.yaml").trials_for("rnn") == 2
    # a point naming it is dropped for the cells that do not read it
    doc["points_to_evaluate"] = [{"nonlinearity": "relu", "hidden": 16}]
    space = parse_space(doc, "good.yaml")
    assert space.points_for("gru") == [{"hidden": 16}]
    assert space.points_for("rnn") == [{"nonlinearity": "relu", "hidden": 16}]


def test_points_to_evaluate_come_first_in_each_cell():
    """A space's points are each cell's first trials, less what does not apply to the cell."""
    import yaml

    from search.searcher import PerCellSearch

    doc = yaml.safe_load(GOOD)
    doc["points_to_evaluate"] = [{"hidden": 32, "lr": 0.001, "nonlinearity": "relu"}, {}]
    space = parse_space(doc, "good.yaml")
    assert space.points_for("gru") == [{"hidden": 32, "lr": 0.001}, {}]
    search = PerCellSearch(space)
    configs = [search.suggest(f"t{i}") for i in range(6)]  # round-robin: rnn, gru, rnn, ...
    for c in configs[:2]:
        assert (c["hidden"], c["lr"]) == (32, 0.001), c
    assert configs[0]["cell"] == "rnn" and configs[0]["nonlinearity"] == "relu"
    for c in configs[2:]:  # the empty point and the rest: sampled
        assert (c["hidden"], c["lr"]) != (32, 0.001), c
    grid = {**doc, "sampler": "grid", "params": {"hidden": {"choice": [8, 16]}}}
    grid["points_to_evaluate"] = [{"hidden": 8}]
    with pytest.raises(SpaceError, match="points_to_evaluate: a grid"):
        parse_space(grid, "grid.yaml")


# (a change to GOOD, the key the one-line error must name)
BAD = [
    ("name: t\ncells: [rnn]\nbogus: 1\n", "bogus"),
    ("cells: [rnn, cnn]\n", "cells"),
    ("cells: []\n", "cells"),
    ("cells: rnn\n", "cells"),
    ("cells: [rnn, rnn]\n", "cells"),
    ("trials: 0\n", "trials"),
    ("trials: many\n", "trials"),
    ("objective: {metric: accuracy}\n", "objective.metric"),
    ("objective: {metric: val_loss, mode: down}\n", "objective.mode"),
    ("objective: {metric: val_loss, goal: min}\n", "objective.goal"),
    ("budget: {max_steps: 0}\n", "budget.max_steps"),
    ("budget: {max_steps: 100, eval_every: 200}\n", "budget.eval_every"),
    ("budget: {reduction_factor: 1}\n", "budget.reduction_factor"),
    ("budget: {trial_seeds: 0}\n", "budget.trial_seeds"),
    ("budget: {trial_seeds: two}\n", "budget.trial_seeds"),
    ("budget: {max_steps: ten}\n", "budget.max_steps"),
    ("budget: {patience: 3}\n", "budget.patience"),
    # ASHA's first rung per cell: every cell of the space, known cells only, valid values
    ("budget: {grace_gflop: {rnn: 5}}\n", "names no grace for gru"),
    ("budget: {grace_gflop: {rnn: 5, gru: 5, cnn: 1}}\n", "budget.grace_gflop.cnn"),
    ("budget: {grace_gflop: {rnn: 5, gru: -1}}\n", "budget.grace_gflop.gru"),
    ("budget: {grace_gflop: {rnn: 5, gru: fast}}\n", "budget.grace_gflop.gru"),
    ("budget: {max_steps: 100, grace_steps: {rnn: 5, gru: 500}}\n", "budget.grace_steps.gru"),
    ("budget: {max_steps: 100, grace_steps: 500}\n", "budget.grace_steps"),
    # trial length per cell: the same rules
    ("budget: {max_steps: {rnn: 100}}\n", "names no steps for gru"),
    ("budget: {max_steps: {rnn: 100, gru: 100, cnn: 1}}\n", "budget.max_steps.cnn"),
    ("budget: {max_steps: {rnn: 100, gru: 0}}\n", "budget.max_steps.gru"),
    ("budget: {max_steps: {rnn: 100, gru: long}}\n", "budget.max_steps.gru"),
    ("budget: {max_steps: {rnn: 100, gru: 5}, eval_every: 10}\n", "budget.eval_every"),
    (
        "budget: {max_steps: {rnn: 100, gru: 50}, grace_steps: 80, eval_every: 10}\n",
        "budget.grace_steps",
    ),
    ("fixed: {hidden: -4}\n", "fixed"),
    ("fixed: {widht: 4}\n", "fixed.widht"),
    ("fixed: {steps: 4}\n", "fixed.steps"),
    ("fixed: {lr: fast}\n", "fixed.lr"),
    ("params: {depth: {int: [1, 2]}}\n", "params.depth"),
    ("params: {hidden: {int: [64, 8]}}\n", "params.hidden.int"),
    ("params: {lr: {float: [0.0, 0.1], log: true}}\n", "params.lr.log"),
    ("params: {hidden: {int: [0, 8]}}\n", "params.hidden"),
    ("params: {batch_size: {choice: []}}\n", "params.batch_size.choice"),
    ("params: {cell: {choice: [rnn, gru]}}\n", "params.cell"),
    ("params: {hidden: {float: [8, 64]}}\n", "params.hidden"),
    ("params: {hidden: {int: [8, 64], scale: log}}\n", "params.hidden.scale"),
    ("params: {hidden: {int: [8, 64], choice: [1]}}\n", "params.hidden"),
    ("params: {hidden: {int: 8}}\n", "params.hidden.int"),
    ("params: {lr: {float: [1.0e-4, 1.0e-1], log: true, step: 0.01}}\n", "params.lr.step"),
    ("params: {nonlinearity: {choice: [tanh, sigmoid]}}\n", "params.nonlinearity"),
    ("params: {nonlinearity: {choice: [tanh], cells: [lstn]}}\n", "params.nonlinearity.cells"),
    # settings a cell never reads (adder.config.CELL_FIELDS): the key and the cell are named
    ("params: {nonlinearity: {choice: [tanh], cells: [gru]}}\n", "params.nonlinearity.cells: gru"),
    ("params: {nonlinearity: {choice: [tanh], cells: [rnn, gru]}}\n", "cells: gru does not"),
    ("cells: [gru]\nparams: {nonlinearity: {choice: [tanh, relu]}}\n", "params.nonlinearity"),
    ("cells: [gru, lstm]\nparams: {hidden: {int: [8, 9], cells: [rnn]}}\n", "params.hidden"),
    ("cells: [gru]\nfixed: {nonlinearity: relu}\nparams: {}\n", "fixed.nonlinearity"),
    ("params: {dropout: {float: [0.0, 1.5]}}\n", "params.dropout"),
    ("params: [layers, hidden]\n", "params"),
    ("name: ../escape\n", "name"),
    ("points_to_evaluate: {hidden: 16}\n", "points_to_evaluate"),
    ("points_to_evaluate: [16]\n", "points_to_evaluate.0"),
    ("points_to_evaluate: [{width: 16}]\n", "points_to_evaluate.0.width"),
    ("points_to_evaluate: [{}, {hidden: 4}]\n", "points_to_evaluate.1.hidden"),
    ("points_to_evaluate: [{hidden: 16.5}]\n", "points_to_evaluate.0.hidden"),
    ("points_to_evaluate: [{dropout: 0.25}]\n", "points_to_evaluate.0.dropout"),
    ("points_to_evaluate: [{batch_size: 48}]\n", "points_to_evaluate.0.batch_size"),
    ("points_to_evaluate: [{lr: fast}]\n", "points_to_evaluate.0.lr"),
    ("points_to_evaluate: [{}, {}, {}, {}]\n", "points_to_evaluate"),
]


@pytest.mark.parametrize("change,key", BAD, ids=[b[1] + f"-{i}" for i, b in enumerate(BAD)])
def test_bad_space_names_file_and_key(tmp_path, change, key):
    import yaml

    doc = yaml.safe_load(GOOD)
    doc.update(yaml.safe_load(change))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpaceError) as e:
        load_space(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: ") and key in msg, msg


def test_yaml_syntax_error_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: t\nparams: {hidden: [1, 2\n")
    with pytest.raises(SpaceError, match=r"broken\.yaml: YAML syntax error at line"):
        load_space(path)
    with pytest.raises(SpaceError, match="no such file"):
        load_space(tmp_path / "nope.yaml")
    path.write_text("- just\n- a list\n")
    with pytest.raises(SpaceError, match="expected a mapping"):
        load_space(path)


def test_each_cell_may_have_its_own_first_rung():
    """grace_gflop per cell: each cell's ASHA gets its own grace; --cells keeps the mapping."""
    import yaml

    from search.schedulers import PerCellScheduler

    doc = yaml.safe_load(GOOD)
    doc["budget"] = {"max_steps": 100, "grace_gflop": {"rnn": 2, "gru": 30, "lstm": 7}}
    space = parse_space(doc, "good.yaml")
    assert [space.budget.grace(c) for c in space.cells] == [2.0, 30.0]
    asha = PerCellScheduler(space).asha
    assert {c: a._brackets[0]._rungs[-1][0] for c, a in asha.items()} == {"rnn": 2.0, "gru": 30.0}
    assert space.override(cells=("gru",)).budget.grace("gru") == 30.0
    doc["budget"] = {"max_steps": 100, "grace_steps": 20}
    assert parse_space(doc, "good.yaml").budget.grace("gru") == 20


def test_each_cell_may_have_its_own_trial_length():
    """max_steps per cell: each cell's trials are that long and its ASHA's last rung is there;
    --max-steps N sets every cell's."""
    import yaml

    from search.schedulers import PerCellScheduler

    doc = yaml.safe_load(GOOD)
    doc["budget"] = {"max_steps": {"rnn": 100, "gru": 400}, "grace_steps": 20, "eval_every": 10}
    space = parse_space(doc, "good.yaml")
    assert [space.base_config(c)["steps"] for c in space.cells] == [100, 400]
    asha = PerCellScheduler(space).asha
    assert {c: a._max_t for c, a in asha.items()} == {"rnn": 100, "gru": 400}
    assert space.override(max_steps=50).base_config("gru")["steps"] == 50
    assert space.override(cells=("gru",)).base_config("gru")["steps"] == 400


def test_override_is_checked_again():
    space = load_space(ROOT / "spaces" / "smoke.yaml")
    assert space.override(trials=2, cells=("gru",)).cells == ("gru",)
    with pytest.raises(SpaceError, match="cells"):
        space.override(cells=("gpt",))
    with pytest.raises(SpaceError, match="trials"):
        space.override(trials=0)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["spaces/missing.yaml"], "no such file"),
        (["spaces/smoke.yaml", "--cells", "rnn,gpt"], "gpt"),
        (["spaces/smoke.yaml", "--trials", "x"], "--trials"),
        (["spaces/smoke.yaml", "--wandb", "sometimes"], "--wandb"),
        (["spaces/smoke.yaml", "--cpus-per-trial", "0"], "--cpus-per-trial"),
        (["spaces/smoke.yaml", "--resume", "--name", "never-ran"], "--resume"),
    ],
)
def test_cli_refuses_bad_search_before_ray_starts(tmp_path, args, needle):
    results = tmp_path / "results"
    p = subprocess.run(
        [sys.executable, "-m", "search.cli", "search", *args, "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr and "Ray" not in p.stderr + p.stdout
    assert not any(results.rglob("*")) if results.exists() else True


PER_CELL = GOOD.replace(
    "  hidden: {int: [8, 64], log: true}\n",
    "  hidden:\n"
    "    - {int: [8, 64], log: true, cells: [rnn]}\n"
    "    - {int: [32, 256], step: 32, cells: [gru]}\n",
)


def test_a_parameter_may_take_a_range_per_group_of_cells():
    """One name, a spec per group of cells: each cell's study samples its own range, and a
    point is checked against the range of every cell it goes to."""
    import yaml

    space = parse_space(yaml.safe_load(PER_CELL), "per-cell.yaml")
    studies = [optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)) for _ in "12"]
    for _ in range(20):  # one study per cell, as the search has
        rnn, gru = (study.ask() for study in studies)
        Sampler(space.params, "rnn")(rnn)
        Sampler(space.params, "gru")(gru)
        assert 8 <= rnn.params["hidden"] <= 64
        assert 32 <= gru.params["hidden"] <= 256 and gru.params["hidden"] % 32 == 0
    ok = yaml.safe_load(PER_CELL + "points_to_evaluate:\n  - {hidden: 64}\n")
    assert parse_space(ok, "ok.yaml").points_for("gru") == [{"hidden": 64}]
    for point, named in (("{hidden: 40}", "off the step 32 from 32 (the range of gru)"),
                         ("{hidden: 128}", "outside [8, 64] (the range of rnn)")):  # fmt: skip
        doc = yaml.safe_load(PER_CELL + f"points_to_evaluate:\n  - {point}\n")
        with pytest.raises(SpaceError, match=re.escape(named)):
            parse_space(doc, "bad.yaml")


@pytest.mark.parametrize(
    "specs,key",
    [
        ("    - {int: [8, 64], log: true, cells: [rnn]}\n    - {int: [32, 256]}\n", "hidden.1"),
        (
            "    - {int: [8, 64], cells: [rnn, gru]}\n    - {int: [9, 9], cells: [gru]}\n",
            "hidden.1.cells",
        ),  # fmt: skip
    ],
    ids=["a spec without cells", "a cell in two specs"],
)
def test_a_list_of_specs_names_each_cell_once(specs, key):
    import yaml

    text = GOOD.replace("  hidden: {int: [8, 64], log: true}\n", "  hidden:\n" + specs)
    with pytest.raises(SpaceError, match=f"list.yaml: params.{re.escape(key)}"):
        parse_space(yaml.safe_load(text), "list.yaml")


TRANSFORMER = """
name: t
cells: [transformer]
trials: 3
budget: {max_steps: 100, eval_every: 10}
fixed: {train_digits: 3, test_digits: 5}
params:
  hidden: HIDDEN
  heads: {choice: [1, 2, 4]}
  pos: {choice: [alibi, rope]}
"""


@pytest.mark.parametrize(
    "hidden,named",
    [
        ("{int: [8, 64]}", "hidden 9, heads 1, pos rope"),  # 9 passes alone, 9 / 1 is odd
        ("{choice: [12, 24]}", "hidden 12, heads 4, pos rope"),  # 12 / 4 = 3: odd for rope
        ("{choice: [16, 32, 64]}", None),
        ("{int: [16, 64], step: 8}", None),
    ],
)
def test_settings_valid_alone_are_checked_together(hidden, named):
    """heads must divide hidden (and rope needs an even width per head): a space whose ranges
    can give a pair the transformer refuses is refused itself, naming the pair, not left to
    error trials mid-search."""
    import yaml

    doc = yaml.safe_load(TRANSFORMER.replace("HIDDEN", hidden))
    if named is None:
        assert parse_space(doc, "tf.yaml").cells == ("transformer",)
        return
    with pytest.raises(
        SpaceError, match=re.escape(f"tf.yaml: params: transformer can be given {named}")
    ):
        parse_space(doc, "tf.yaml")
