"""Tests for funknn_fast.superres.liif_training and ``funknn train-liif`` (tiny runs)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from funknn_fast.models.liif import LIIFConfig, load_liif
from funknn_fast.superres import liif_training
from funknn_fast.superres.data import Sample
from funknn_fast.superres.liif_training import LIIFTrainConfig, schedule, target_cell, train_liif

TINY = LIIFConfig(encoder_features=4, encoder_blocks=1, hidden=8, hidden_layers=2)


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        array = (rng.random((24, 20 + 4 * k, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"{k}.png")
    return folder


@pytest.fixture
def tiny_sizes(monkeypatch):
    monkeypatch.setitem(liif_training.SIZES, "edsr", TINY)


def _config(folder, **overrides):
    values = dict(data=str(folder), crop_size=16, batch_size=2, queries=16, steps=3,
                  warmup=1, checkpoint_every=2, log_every=1)
    values.update(overrides)
    return LIIFTrainConfig(**values)


def test_tiny_run_writes_loadable_weights_log_and_record(photo_folder, tiny_sizes, tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "run"
    model = train_liif(_config(photo_folder), out)
    loaded = load_liif(out / "liif_edsr.safetensors")
    assert loaded.config == TINY
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)
    torch.manual_seed(0)
    fresh = liif_training.LIIF(TINY)
    changed = [not torch.equal(a, b) for a, b in
               zip(fresh.state_dict().values(), model.state_dict().values(), strict=True)]
    assert all(changed)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in log)
    record = json.loads((out / "liif_edsr.json").read_text())
    assert record["steps_done"] == 3 and record["train"]["crop_size"] == 16
    assert not list(out.glob(".*tmp"))


def test_same_seed_gives_the_same_weights(photo_folder, tiny_sizes, tmp_path):
    first = train_liif(_config(photo_folder, steps=2), tmp_path / "a")
    second = train_liif(_config(photo_folder, steps=2), tmp_path / "b")
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_wall_clock_budget_stops_training(photo_folder, tiny_sizes, tmp_path):
    train_liif(_config(photo_folder, steps=1000, max_seconds=1e-9), tmp_path / "run")
    record = json.loads((tmp_path / "run" / "liif_edsr.json").read_text())
    assert record["steps_done"] == 0
    assert (tmp_path / "run" / "liif_edsr.safetensors").is_file()


def test_cpu_clock_budget_counts_process_time(photo_folder, tiny_sizes, tmp_path, monkeypatch):
    ticks = iter(float(t) for t in range(1000))
    monkeypatch.setitem(liif_training.CLOCKS, "cpu", lambda: next(ticks))
    train_liif(_config(photo_folder, steps=1000, max_seconds=2.5, clock="cpu",
                       log_every=1000, checkpoint_every=1000), tmp_path / "run")
    record = json.loads((tmp_path / "run" / "liif_edsr.json").read_text())
    # clock reads: start 0, then 1 and 2 before steps 0 and 1, 3 stops before step 2.
    assert record["steps_done"] == 2 and record["clock"] == "cpu"
    with pytest.raises(ValueError, match="clock"):
        LIIFTrainConfig(clock="gpu")


def test_schedule_warmup_cosine_and_time_budget():
    config = LIIFTrainConfig(steps=101, warmup=1, lr=1e-3, lr_min=1e-5)
    assert schedule(config, 0, 0.0) == pytest.approx(1e-3)
    assert schedule(config, 51, 0.0) == pytest.approx((1e-3 + 1e-5) / 2)
    assert schedule(config, 101, 0.0) == pytest.approx(1e-5)
    timed = LIIFTrainConfig(steps=10**9, warmup=1, lr=1e-3, lr_min=1e-5, max_seconds=10.0)
    assert schedule(timed, 5, 5.0) == pytest.approx((1e-3 + 1e-5) / 2)
    assert schedule(timed, 5, 20.0) == pytest.approx(1e-5)


def test_target_cell_follows_the_mode():
    sample = Sample(torch.rand(1, 3, 10, 10), torch.rand(1, 4, 2), torch.rand(1, 4, 3))
    cell = target_cell(LIIFTrainConfig(mode="continuous", crop_size=40), sample)
    torch.testing.assert_close(cell, torch.tensor([0.05, 0.05]))
    cell = target_cell(LIIFTrainConfig(mode="factor", crop_size=40), sample)
    torch.testing.assert_close(cell, torch.tensor([0.1, 0.1]))


def test_grouped_batch_loss_equals_the_per_sample_loss():
    torch.manual_seed(0)
    model = liif_training.LIIF(TINY).double()
    config = LIIFTrainConfig(crop_size=12)
    samples = [Sample(torch.rand(1, 3, d, d, dtype=torch.float64),
                      torch.rand(1, 5, 2, dtype=torch.float64) * 2 - 1,
                      torch.rand(1, 5, 3, dtype=torch.float64)) for d in (4, 6, 4, 5, 6)]
    predictions = [model(s.coords, s.low, target_cell(config, s))[0] for s in samples]
    errors = torch.cat(predictions) - torch.cat([s.targets[0] for s in samples])
    grouped = liif_training.batch_loss(model, config, samples)
    torch.testing.assert_close(grouped, errors.abs().mean(), rtol=1e-12, atol=1e-12)
    config = LIIFTrainConfig(crop_size=12, loss="l2")
    grouped = liif_training.batch_loss(model, config, samples)
    torch.testing.assert_close(grouped, errors.square().mean(), rtol=1e-12, atol=1e-12)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="size"):
        LIIFTrainConfig(size="huge")
    with pytest.raises(ValueError, match="max_seconds"):
        LIIFTrainConfig(max_seconds=0)
    with pytest.raises(ValueError, match="crop_size"):
        LIIFTrainConfig(crop_size=0)
    with pytest.raises(ValueError, match="loss"):
        LIIFTrainConfig(loss="huber")


def test_command_copies_the_funknn_protocol(photo_folder, tiny_sizes, tmp_path, capsys):
    import argparse

    from funknn_fast.cli import train_liif as command

    record = {"train": {"mode": "single", "crop_size": 16, "batch_size": 1, "queries": 8,
                        "data": str(photo_folder), "seed": 3, "lr": 0.5, "loss": "l2"},
              "train_seconds": 1e-9}
    (tmp_path / "funknn.json").write_text(json.dumps(record))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["train-liif", "--out", str(tmp_path / "run"),
                              "--match-funknn", str(tmp_path / "funknn.safetensors")])
    assert args.func(args) == 0
    info = json.loads((tmp_path / "run" / "liif_edsr.json").read_text())
    assert info["train"]["mode"] == "single" and info["train"]["crop_size"] == 16
    assert info["train"]["seed"] == 3 and info["train"]["max_seconds"] == 1e-9
    assert info["train"]["loss"] == "l2"
    assert info["train"]["lr"] == 1e-4  # the learning rate is LIIF's own, not copied
    missing = parser.parse_args(["train-liif", "--out", str(tmp_path / "x"),
                                 "--match-funknn", str(tmp_path / "none.json")])
    with pytest.raises(command.CommandError, match="not found"):
        missing.func(missing)
