"""Training: schedule, one Adam step by hand, checkpoints/resume, DDP with torchrun (gloo)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from funknn_fast.models.checkpoint import load_model
from funknn_fast.models.funknn import FunkNN
from funknn_fast.superres.data import CropSampler, Sample, load_folder, pixel_centre_coords
from funknn_fast.superres.grid_render import render_grid
from funknn_fast.superres.training import (
    BatchLoss,
    DenseLoss,
    TrainConfig,
    _step_generator,
    learning_rate,
    train,
)


@pytest.fixture()
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
            folder / f"{k}.png")
    return folder


def _config(folder, **changes):
    values = dict(data=str(folder), crop_size=8, batch_size=2, queries=3, steps=3, warmup=1,
                  checkpoint_every=2, log_every=1, lr=1e-3, variant="cnn")
    values.update(changes)
    return TrainConfig(**values)


def _by_hand(config, world):
    """The same training, written out: samples of every rank, one Adam step each."""
    torch.manual_seed(config.seed)
    sampler = CropSampler(load_folder(config.data), config.crop_size, config.mode,
                          config.queries, config.min_scale, config.max_scale)
    model = FunkNN(3, config.variant, config.activation, fused=config.fused)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_module = BatchLoss(model)
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        samples = []
        for rank in range(world):
            generator = _step_generator(config, rank, step)
            samples += [sampler.sample(generator) for _ in range(config.batch_size)]
        optimizer.zero_grad()
        loss_module(samples).backward()
        optimizer.step()
    return model


def test_learning_rate_schedule():
    config = TrainConfig(steps=100, warmup=10, lr=1e-3, lr_min=1e-5)
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 9) == pytest.approx(1e-3)
    assert learning_rate(config, 55) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(config, 100) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(mode="zoom")
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_train_matches_hand_written_loop_and_resumes(image_folder, tmp_path):
    config = _config(image_folder)
    model = train(config, tmp_path / "run", progress=False)
    expected = _by_hand(config, world=1)
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-6), name
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"model.safetensors", "model.json", "checkpoint.safetensors", "checkpoint.json",
            "log.jsonl"} <= files
    loaded = load_model(tmp_path / "run" / "model")
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    # stop after 2 steps (checkpoint), resume to 3: same weights as the straight run
    partial = _config(image_folder, steps=3)
    (tmp_path / "resumed").mkdir()
    train(_config(image_folder, steps=2), tmp_path / "resumed", progress=False)
    info = json.loads((tmp_path / "resumed" / "checkpoint.json").read_text())
    assert info["step"] == 2
    # the 2-step run's schedule differs; rewrite its config to the 3-step one and resume
    resumed = train(partial, tmp_path / "resumed", resume=True, allow_changes=True,
                    progress=False)
    reference = _by_hand_two_schedules(image_folder)
    for name, value in reference.state_dict().items():
        assert torch.allclose(resumed.state_dict()[name], value, atol=1e-6), name
    tensors = load_file(str(tmp_path / "resumed" / "checkpoint.safetensors"))
    assert any(k.startswith("adam.") for k in tensors)


def _by_hand_two_schedules(folder):
    """Steps 0-1 with the 2-step schedule, step 2 with the 3-step one (what resume does)."""
    first, second = _config(folder, steps=2), _config(folder, steps=3)
    torch.manual_seed(0)
    sampler = CropSampler(load_folder(str(folder)), 8, "continuous", 3)
    model = FunkNN(3, "cnn", fused=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_module = BatchLoss(model)
    for step, config in ((0, first), (1, first), (2, second)):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        generator = _step_generator(config, 0, step)
        samples = [sampler.sample(generator) for _ in range(2)]
        optimizer.zero_grad()
        loss_module(samples).backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("mode", ["single", "factor"])
def test_other_modes_and_mlp_train(image_folder, tmp_path, mode):
    config = _config(image_folder, mode=mode, variant="mlp", steps=2, crop_size=16)
    model = train(config, tmp_path / mode, progress=False)
    info = json.loads((tmp_path / mode / "model.json").read_text())
    assert info["train"]["mode"] == mode and info["model"]["variant"] == "mlp"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_ddp_two_cpu_processes_gloo(image_folder, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(29500 + os.getpid() % 1000), "-m", "funknn_fast.cli",
               "train", "--out", str(out), "--data", str(image_folder), "--crop-size", "8",
               "--batch-size", "2", "--queries", "3", "--steps", "3", "--warmup", "1",
               "--checkpoint-every", "2", "--log-every", "1", "--threads", "1", "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((out / "model.json").read_text())
    assert info["world_size"] == 2 and info["step"] == 3
    model = load_model(out / "model")
    expected = _by_hand(_config(image_folder), world=2)
    for name, value in expected.state_dict().items():
        # Measured here: at most 1.4e-4 (convs.3.weight; Adam divides by sqrt(v), which magnifies
        # the float32 summation-order differences of near-cancelling gradients). Training both
        # ranks on rank 0's samples instead moves weights by up to 5e-3.
        assert torch.allclose(model.state_dict()[name], value, atol=4e-4), name


def test_dense_loss_is_the_per_query_loss_on_every_pixel():
    """Dense training's loss and gradients equal the per-query path's on all pixel centres."""
    torch.manual_seed(0)
    model = FunkNN(3, "lattice").double()
    low = torch.rand(2, 3, 10, 10, dtype=torch.float64)
    target = torch.rand(2, 3, 25, 25, dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    dense = DenseLoss(model)(low, target)
    dense_grads = torch.autograd.grad(dense, params)
    coords = pixel_centre_coords(25, 25, torch.float64)[None]
    samples = [Sample(low[i : i + 1], coords, target[i].reshape(3, -1).t()[None])
               for i in range(2)]
    per_query = BatchLoss(model)(samples)
    per_query_grads = torch.autograd.grad(per_query, params)
    assert float(dense.detach()) == pytest.approx(float(per_query.detach()), rel=1e-12)
    for a, b in zip(dense_grads, per_query_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)


def test_dense_training_config_is_checked():
    with pytest.raises(ValueError, match="lattice"):
        TrainConfig(dense=True)
    with pytest.raises(ValueError, match="outside"):
        TrainConfig(dense=True, variant="lattice", dense_scales="2,5")
    with pytest.raises(ValueError, match="dense_scales"):
        TrainConfig(dense=True, variant="lattice", dense_scales="2,x")
    with pytest.raises(ValueError, match="max_cpu_seconds"):
        TrainConfig(max_cpu_seconds=-1)


def test_dense_training_matches_a_hand_written_loop(image_folder, tmp_path):
    config = _config(image_folder, variant="lattice", dense=True, crop_size=12, steps=2,
                     dense_scales="2,3")
    model = train(config, tmp_path / "dense", progress=False)
    torch.manual_seed(config.seed)
    sampler = CropSampler(load_folder(config.data), config.crop_size, config.mode,
                          config.queries, config.min_scale, config.max_scale)
    expected = FunkNN(3, "lattice")
    optimizer = torch.optim.Adam(expected.parameters(), lr=config.lr)
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        generator = _step_generator(config, 0, step)
        scale = (2.0, 3.0)[int(torch.randint(0, 2, (1,), generator=generator))]
        pairs = [sampler.sample_dense(generator, scale) for _ in range(config.batch_size)]
        low, target = (torch.stack([p[k] for p in pairs]) for k in (0, 1))
        optimizer.zero_grad()
        prediction = render_grid(expected, low, tuple(target.shape[2:]))
        torch.nn.functional.l1_loss(prediction, target).backward()
        optimizer.step()
    for name, value in expected.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-6), name


def test_cpu_budget_ends_training_and_the_schedule(image_folder, tmp_path):
    config = TrainConfig(steps=100, warmup=0, lr=1e-3, lr_min=1e-5, max_cpu_seconds=10.0)
    assert learning_rate(config, 0, 5.0) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(config, 50, 1.0) == pytest.approx((1e-3 + 1e-5) / 2)
    assert learning_rate(config, 1, 10.0) == pytest.approx(1e-5)
    budget = _config(image_folder, steps=1000, max_cpu_seconds=1e-3)
    train(budget, tmp_path / "budget", progress=False)
    info = json.loads((tmp_path / "budget" / "checkpoint.json").read_text())
    assert info["budget_spent"] is True and 1 <= info["step"] < 1000
    assert info["cpu_seconds"] >= 1e-3


def test_init_starts_from_given_weights(image_folder, tmp_path):
    first = train(_config(image_folder, variant="lattice", steps=1), tmp_path / "a",
                  progress=False)
    # lr tiny: the second run's weights stay at the first run's, not at a fresh random init
    second = train(_config(image_folder, variant="lattice", steps=1, lr=1e-12, lr_min=0,
                           init=str(tmp_path / "a" / "model")), tmp_path / "b", progress=False)
    for name, value in first.state_dict().items():
        assert torch.allclose(second.state_dict()[name], value, atol=1e-9), name
    with pytest.raises(ValueError, match="init weights"):
        train(_config(image_folder, variant="cnn", steps=1, init=str(tmp_path / "a" / "model")),
              tmp_path / "c", progress=False)
