"""Training the prior end to end on a tiny configuration, files and merging."""

import json

import pytest
import torch

from funknn_fast.prior.generator import PriorFileError, load_parts, load_prior, read_info
from funknn_fast.prior.train import PriorTrainConfig, main, run, schedule

TINY = dict(size=16, edge_width=0.1, train_count=8, channels=(4, 4), latent=4, ae_steps=3,
            ae_batch=4, flow_steps=3, flow_batch=8, couplings=2, flow_hidden=(8,),
            funknn_steps=2, funknn_batch=2, funknn_queries=8, log_every=1)


def test_all_stages_write_a_loadable_prior(tmp_path):
    records = []
    run(PriorTrainConfig(**TINY), tmp_path / "prior", ("autoencoder", "flow", "funknn"),
        records.append)
    prior = load_prior(tmp_path / "prior")
    info = read_info(tmp_path / "prior")
    assert info["phantoms"]["size"] == 16 and set(info["training"]) == {
        "autoencoder", "flow", "funknn"}
    assert any(r.get("stage") == "flow" and "loss" in r for r in records)
    with torch.no_grad():
        samples = prior.sample(2, 20, torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, 20, 20) and torch.isfinite(samples).all()


def test_stages_can_be_trained_apart_and_merged(tmp_path):
    config = PriorTrainConfig(**TINY)
    run(config, tmp_path / "ae", ("autoencoder", "flow"), lambda r: None)
    run(config, tmp_path / "fk", ("funknn",), lambda r: None)
    run(config, tmp_path / "both", (), lambda r: None, merge=(tmp_path / "ae", tmp_path / "fk"))
    merged = load_prior(tmp_path / "both")
    alone = load_parts(tmp_path / "fk", ("funknn",))["funknn"]
    for a, b in zip(merged.funknn.parameters(), alone.parameters(), strict=True):
        assert torch.equal(a, b)
    # each part comes from the first file that has it
    run(PriorTrainConfig(**{**TINY, "ae_steps": 1}), tmp_path / "other", ("autoencoder",),
        lambda r: None)
    run(config, tmp_path / "first", (), lambda r: None, merge=(tmp_path / "ae", tmp_path / "other"))
    first = load_parts(tmp_path / "first", ("autoencoder",))["autoencoder"]
    original = load_parts(tmp_path / "ae", ("autoencoder",))["autoencoder"]
    for a, b in zip(first.parameters(), original.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(PriorFileError, match="no 'autoencoder' part"):
        load_prior(tmp_path / "fk")
    other = PriorTrainConfig(**{**TINY, "edge_width": 0.2})
    with pytest.raises(ValueError, match="other phantoms"):
        run(other, tmp_path / "x", (), lambda r: None, merge=(tmp_path / "ae",))


def test_schedule_warms_up_then_decays_and_follows_the_clock():
    assert schedule(0, 100, 1.0) == pytest.approx(0.2)
    assert schedule(5, 100, 1.0) == pytest.approx(1.0)
    assert schedule(99, 100, 1.0) < 0.02
    assert schedule(10, 100, 1.0, time_fraction=1.0) == pytest.approx(0.01)
    # A time-budgeted run (steps far out of reach) warms up over 5% of its time, not its steps.
    assert schedule(10, 10**6, 1.0, time_fraction=0.025) == pytest.approx(0.5)
    assert schedule(10, 10**6, 1.0, time_fraction=0.05) == pytest.approx(1.0, rel=1e-2)


def test_cpu_clock_budget_counts_process_time(tmp_path, monkeypatch):
    from funknn_fast.prior import train

    ticks = iter(float(t) for t in range(10_000))
    monkeypatch.setitem(train.CLOCKS, "cpu", lambda: 60.0 * next(ticks))  # a minute per read
    records = []
    config = PriorTrainConfig(**{**TINY, "ae_steps": 50, "max_minutes": 2.5, "clock": "cpu"})
    run(config, tmp_path / "prior", ("autoencoder",), records.append)
    # reads: start 0; per step one for the schedule and one for the budget check (1 and 2 at
    # step 0, 3 and 4 at step 1 where 4 > 2.5 minutes stops the stage).
    assert any(r.get("reason") == "max_minutes" and r.get("stopped_at") == 1 for r in records)
    with pytest.raises(ValueError, match="clock"):
        PriorTrainConfig(clock="gpu")


def test_command_line(tmp_path, capsys):
    argv = ["--out", str(tmp_path / "p"), "--stages", "autoencoder", "--log", str(tmp_path / "l")]
    for key, value in TINY.items():
        flag = "--" + key.replace("_", "-")
        argv += [flag, *map(str, value)] if isinstance(value, tuple) else [flag, str(value)]
    assert main(argv) == 0
    lines = (tmp_path / "l").read_text().splitlines()
    assert json.loads(lines[0])["config"]["channels"] == [4, 4]
    assert main(["--out", str(tmp_path / "q"), "--stages", "decoder"]) == 2


def test_training_resumes_from_a_prior_file(tmp_path):
    """A resumed round starts from the file's weights: its first loss is the first round's last
    (and far below a fresh start's first); the record keeps both rounds; other options fail."""
    config = PriorTrainConfig(**{**TINY, "ae_steps": 40, "ae_lr": 3e-3})
    first, second = [], []
    run(config, tmp_path / "round1", ("autoencoder",), first.append)
    run(config, tmp_path / "round2", ("autoencoder",), second.append,
        resume=tmp_path / "round1")
    losses = [[r["loss"] for r in records if r.get("stage") == "autoencoder" and "loss" in r]
              for records in (first, second)]
    assert losses[1][0] < 0.5 * losses[0][0]
    assert losses[1][0] < 1.5 * losses[0][-1]
    info = read_info(tmp_path / "round2")["training"]["autoencoder"]
    assert info["resumed_from"] == str(tmp_path / "round1")
    assert [r["steps_done"] for r in info["rounds"]] == [40, 40]
    with pytest.raises(ValueError, match="--resume"):
        run(PriorTrainConfig(**{**TINY, "latent": 5}), tmp_path / "bad", ("autoencoder",),
            lambda r: None, resume=tmp_path / "round1")
