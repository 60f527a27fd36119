"""`adder report` on real search folders: the smoke search, finished, and as an interrupted one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from adder.errors import UserError
from search.report import find_search

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
VERIFY = {
    "cells": {
        "gru": {"digits": {"10": {"mean": 0.99, "min": 0.97, "solved": 1, "n": 2}},
                "seeds": [1, 2]},
    }
}  # fmt: skip


def report(run_adder, folder: Path):
    """Run `adder report folder`: (process, report.md, plots) as it printed them."""
    p = run_adder("report", folder, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    md, *plots = (Path(line) for line in p.stdout.strip().splitlines())
    return p, md, plots


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG, path
    with Image.open(path) as im:
        im.load()  # decodes every pixel
        assert im.size[0] > 0 and im.size[1] > 0


@pytest.fixture(scope="module")
def finished(smoke_results, run_adder, tmp_path_factory):
    """The smoke search, copied (as if off a cluster) with a verify.json added, and reported."""
    folder = tmp_path_factory.mktemp("report") / "smoke"
    shutil.copytree(smoke_results[0], folder)
    (folder / "verify.json").write_text(json.dumps(VERIFY))
    cells = list(json.loads((folder / "leaderboard.json").read_text())["cells"])
    return folder, cells, *report(run_adder, folder)


@pytest.fixture(scope="module")
def interrupted(smoke_results, run_adder, tmp_path_factory):
    """The smoke search as a killed driver leaves it: a trial RUNNING in Tune's state, no
    optuna.db or leaderboard yet, a result line torn in half."""
    folder = tmp_path_factory.mktemp("report-interrupted") / "smoke"
    shutil.copytree(smoke_results[0], folder)
    for name in ("optuna.db", "leaderboard.json", "leaderboard.md", "trials.csv"):
        (folder / name).unlink()
    state = next((folder / "tune").glob("experiment_state*.json"))
    data = json.loads(state.read_text())
    trial = json.loads(data["trial_data"][0][0])
    trial["status"] = "RUNNING"
    data["trial_data"][0][0] = json.dumps(trial)
    state.write_text(json.dumps(data))
    torn = next((folder / "tune").glob("*/result.json"))
    torn.write_text(torn.read_text() + '{"step": 999, "val_lo')
    return folder, *report(run_adder, folder)


@pytest.mark.slow
def test_report_writes_readable_pngs_beside_report_md(finished):
    folder, cells, p, md, plots = finished
    assert md == folder.resolve() / "report.md" and md.is_file()
    names = {plot.name for plot in plots}
    assert {"curves.png", "asha.png", *(f"params-{c}.png" for c in cells)} <= names
    for plot in plots:
        assert plot.parent == md.parent
        assert_png(plot)


@pytest.mark.slow
def test_report_md_covers_every_cell_plot_and_section(finished):
    folder, cells, p, md, plots = finished
    text = md.read_text()
    for section in (
        "Leaderboard (leaderboard.json)",
        "Trials and compute per cell",
        "Learning curves",
        "Parameter importances",
        "What ASHA did",
        "Verification",
    ):
        assert f"## {section}" in text, section  # fmt: skip
    for cell in cells:
        assert f"| {cell} |" in text  # in the leaderboard and the compute table
        assert f"- {cell}: stopped at" in text or f"- {cell}: none stopped" in text
    for plot in plots:
        assert f"]({plot.name})" in text
    importance = text.split("## Parameter importances")[1].split("## ")[0]
    for cell in cells:  # an importance for every cell, or a line that says why not
        assert f" {cell} |" in importance or f"- {cell}: " in importance
    assert "| gru | 10 | 0.99 | 0.97 | 1 | 2 |" in text  # verify.json
    verification = text.split("## Verification")[1]  # the search's own race, then adder verify
    assert "Verified: each cell's 2 best settings retrained" in verification
    for cell in cells:
        assert f"| {cell} | **" in verification  # the winner of the cell's race, in bold


@pytest.mark.slow
def test_report_on_an_interrupted_search_skips_importances_with_a_note(interrupted):
    folder, p, md, plots = interrupted
    text = md.read_text()
    assert "**Not finished**: 1 trial(s) still running" in text
    assert "no leaderboard.json yet" in text
    assert text.count("no optuna.db for this cell yet") == 4  # spaces/smoke.yaml's cells
    assert "inferred from the trials" in text
    assert "importances.png" not in {plot.name for plot in plots}
    assert "The search has not finished: its verification" in text
    assert "No `adder verify` run yet" in text
    for plot in plots:
        assert_png(plot)


def test_missing_folder_is_one_line_exit_2(run_adder, tmp_path):
    p = run_adder("report", tmp_path / "nope", cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and p.stdout == ""
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("adder report: error: ") and str(tmp_path / "nope") in line


def test_a_folder_without_a_search_names_the_searches_inside(tmp_path):
    (tmp_path / "found" / "tune").mkdir(parents=True)
    (tmp_path / "found" / "tune" / "experiment_state-2026.json").write_text("{}")
    with pytest.raises(UserError, match=r"holds no search \(it holds the searches found\)"):
        find_search(tmp_path)
    assert find_search(tmp_path / "found") == (tmp_path / "found").resolve()


def test_leaderboard_names_the_settings_that_differ_from_the_cells_defaults():
    from search.results import COLUMNS, other_settings, table_rows

    tuned = {"cell": "transformer", "layers": 3, "hidden": 32, "heads": 2, "pos": "alibi",
             "schedule": "cosine", "nines": 0.2, "ema": 0.998, "steps": 3000}  # fmt: skip
    assert other_settings(tuned) == "heads 2, ema 0.998, nines 0.2"  # alibi, cosine: defaults
    assert other_settings({"cell": "gru", "schedule": "cosine"}) == "schedule cosine"
    assert other_settings({"cell": "rnn", "nonlinearity": "tanh", "steps": 6000}) == "-"
    board = {"cells": {"transformer": {"config": tuned, "trial_id": "t1"}}}
    (row,) = table_rows(board)
    assert row[COLUMNS.index("other settings")] == "heads 2, ema 0.998, nines 0.2"


def test_leaderboard_shows_no_cost_for_an_unsolved_answer_not_the_sentinel():
    from search.metrics import UNSOLVED
    from search.results import COLUMNS, table_rows

    config = {"cell": "gru", "layers": 1}
    board = {
        "cells": {
            "gru": {"config": config, "trial_id": "t1", "cost_to_solve": UNSOLVED + 0.07},
            "rnn": {"config": {**config, "cell": "rnn"}, "trial_id": "t2", "cost_to_solve": 41.5},
        }
    }
    costs = [row[COLUMNS.index("cost_to_solve (GFLOP)")] for row in table_rows(board)]
    assert costs == [None, 41.5]  # leaderboard.md and adder report: "-"
