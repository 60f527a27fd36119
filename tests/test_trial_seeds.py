"""A search trial of several training seeds (budget.trial_seeds): its seeds train side by side as
each would alone, it scores as its worst seed, costs them all, and resumes exactly."""

import dataclasses

import pytest
import torch

from adder.config import TrainConfig
from adder.train import load_checkpoint, save_checkpoint, train
from search.trainable import combined, train_seeds

# Seeds 2 and 3 of this small LSTM (2 layers: dropout, which draws from torch's global generator)
# solve 2-digit sums at different steps (225 and 350 here).
CFG = TrainConfig(
    cell="lstm",
    hidden=32,
    layers=2,
    dropout=0.1,
    lr=0.01,
    batch_size=64,
    steps=400,
    eval_every=25,
    train_digits=2,
    test_digits=2,
    eval_size=200,
    stop_when_solved=True,
    seed=2,
)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def alone(cfg: TrainConfig) -> list[dict]:
    reports = []
    train(cfg, report=lambda m, c: reports.append(m))
    return reports


def test_seeds_side_by_side_train_as_alone_and_the_trial_scores_as_its_worst():
    seeds = [alone(dataclasses.replace(CFG, seed=CFG.seed + k)) for k in range(2)]
    first, second = seeds
    assert first[-1]["solved_step"] < second[-1]["solved_step"]  # one ends before the other
    trial = []
    train_seeds(CFG, 2, lambda m, c: trial.append(m))
    assert [m["step"] for m in trial] == [m["step"] for m in second]
    for i, m in enumerate(trial):
        a, b = first[min(i, len(first) - 1)], second[i]  # an ended seed keeps its last figures
        assert m["exact_match"] == min(a["exact_match"], b["exact_match"])
        assert m["val_loss"] == max(a["val_loss"], b["val_loss"])
        assert m["mean_exact_match"] == pytest.approx((a["exact_match"] + b["exact_match"]) / 2)
        assert m["gflop"] == pytest.approx(a["gflop"] + b["gflop"])
    assert trial[-1]["solved_step"] == second[-1]["solved_step"]
    assert trial[-1]["solved_gflop"] == pytest.approx(
        first[-1]["solved_gflop"] + second[-1]["solved_gflop"]
    )
    assert all(m["solved_step"] is None for m in trial[:-1])  # solved when every seed is


@pytest.mark.parametrize("at", [100, 250])  # both seeds training; seed 2 ended, seed 3 not
def test_a_trial_of_seeds_resumes_as_it_would_have_gone_on(tmp_path, at):
    whole = []
    train_seeds(CFG, 2, lambda m, c: whole.append(m))
    cut = next(i for i, m in enumerate(whole) if m["step"] > at)

    class Killed(Exception):
        pass

    before = []

    def report(m, checkpoint):
        before.append(m)
        if len(before) == cut:
            save_checkpoint(checkpoint(), tmp_path / "checkpoint.pt")
            raise Killed

    with pytest.raises(Killed):
        train_seeds(CFG, 2, report)
    state = load_checkpoint(tmp_path / "checkpoint.pt")  # the safe load takes it whole
    assert [s["ended"] is not None for s in state["seeds"]] == [at == 250, False]
    after = []
    train_seeds(CFG, 2, lambda m, c: after.append(m), resume=state)
    timeless = [{k: v for k, v in m.items() if k != "samples_per_s"} for m in (*before, *after)]
    assert timeless == [{k: v for k, v in m.items() if k != "samples_per_s"} for m in whole]


@pytest.mark.parametrize("cfg", [CFG, dataclasses.replace(CFG, stop_when_solved=False, steps=100)])
def test_a_run_resumed_where_it_ended_reports_nothing_and_keeps_its_model(tmp_path, cfg):
    """Killed after its last report (a verification run: while scoring its fresh sums), a run
    resumes at its end (solved, or out of steps): nothing is left to train, so it reports
    nothing (its last figures stand; not a diverged run's, nor a step further) and hands back
    the state it resumed from, for verification to score."""
    states = []
    train_seeds(cfg, 1, lambda m, c: states.append(c()))
    save_checkpoint(states[-1], tmp_path / "checkpoint.pt")
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    after = []
    summary, checkpoint = train_seeds(cfg, 1, lambda m, c: after.append(m), resume=state)
    assert after == []
    assert summary["status"] == "ok" and summary["steps"] == state["step"]
    assert checkpoint is not None
    assert torch.equal(checkpoint()["model"]["head.weight"], state["model"]["head.weight"])


def test_seeds_combine_worst_figures_and_added_compute():
    a = {"step": 100, "exact_match": 1.0, "val_loss": 0.1, "gflop": 2.0, "status": "ok"}
    a |= {"solved_step": 75, "solved_gflop": 1.5, "samples_per_s": 100.0}
    b = {"step": 100, "exact_match": 0.5, "val_loss": float("nan"), "gflop": 3.0, "status": "ok"}
    b |= {"solved_step": None, "solved_gflop": None, "samples_per_s": 300.0}
    m = combined([a, b])
    assert (m["exact_match"], m["mean_exact_match"], m["gflop"]) == (0.5, 0.75, 5.0)
    assert m["val_loss"] != m["val_loss"]  # NaN is the worst loss there is
    assert m["solved_step"] is None and m["solved_gflop"] is None
    assert m["samples_per_s"] == pytest.approx(2 / (1 / 100 + 1 / 300))
    assert combined([a, {**b, "solved_step": 90, "solved_gflop": 2.5}])["solved_gflop"] == 4.0
    assert combined([a, {**b, "status": "diverged"}])["status"] == "diverged"
    assert combined([a]) == a
