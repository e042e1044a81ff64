"""Training LIIF on the FunkNN training data, under the same protocol and wall-clock budget.

The samples are FunkNN's (``funknn_fast.superres.data.CropSampler``: random n x n crops of the
bundled training photographs, antialiased bilinear low resolution, ``queries`` random target pixels
per
crop, modes "single" | "continuous" | "factor"), drawn from generators seeded as in
``funknn_fast.superres.training`` (same seed, same crops). The loss is FunkNN's: L1 (or, with
``loss="l2"``, mean squared error) between the predicted and the target intensities of all
queries of the batch. The learning rate follows
``funknn_fast.superres.training.learning_rate`` (linear warm-up, cosine decay to ``lr_min``).

LIIF needs the output pixel size: a target of n x n pixels has cell (2 / n, 2 / n), with
n = ``crop_size`` in modes "single" and "continuous" and n = 2 d (d the low-resolution size) in
mode "factor". Crops of a batch with the same low-resolution size share one encoder call.

Budget: training stops after ``steps`` steps or ``max_seconds`` seconds, whichever comes first;
with ``max_seconds`` the schedule's progress is max(step / steps, elapsed / max_seconds), so the
decay ends with the budget. ``clock="wall"`` counts wall-clock seconds; ``clock="cpu"`` counts the
CPU seconds of this process (all threads; ``time.process_time``), which is what a wall-clock
budget means on a dedicated machine with ``threads`` cores, and stays fair to the run when other
jobs share the machine.

Outputs in ``out_dir``: ``<name>.safetensors`` (weights and configuration, see
``funknn_fast.models.liif.save_liif``; written every ``checkpoint_every`` steps and at the end),
``<name>.json`` (the training configuration, steps done and seconds) and ``log.jsonl``.
Single process; no resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from funknn_fast.atomic_files import write_text_atomically
from funknn_fast.models.liif import LIIF, LIIF_140K, LIIF_EDSR, LIIFConfig, save_liif
from funknn_fast.superres.data import (
    MODES,
    TRAIN_PHOTOS,
    CropSampler,
    Sample,
    load_folder,
    load_photos,
)

SIZES: dict[str, LIIFConfig] = {"edsr": LIIF_EDSR, "140k": LIIF_140K}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class LIIFTrainConfig:
    """A LIIF training run; the fields shared with FunkNN's TrainConfig mean the same."""

    size: str = "edsr"
    mode: str = "continuous"
    data: str = "bundled"
    crop_size: int = 96
    batch_size: int = 8
    queries: int = 256
    min_scale: float = 2.0
    max_scale: float = 4.0
    steps: int = 1000
    max_seconds: float | None = None
    clock: str = "wall"
    lr: float = 1e-4
    lr_min: float = 1e-6
    warmup: int = 50
    loss: str = "l1"
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}, got {self.size!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("crop_size", "batch_size", "queries", "steps", "checkpoint_every",
                     "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {self.clock!r}")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if not self.lr > 0 or self.lr_min < 0 or self.warmup < 0:
            raise ValueError(
                f"need lr > 0, lr_min >= 0, warmup >= 0; got {self.lr}, {self.lr_min}, "
                f"{self.warmup}"
            )


def schedule(config: LIIFTrainConfig, step: int, elapsed: float) -> float:
    """Learning rate: linear warm-up over ``warmup`` steps, then cosine to ``lr_min``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    if config.max_seconds is not None:
        progress = max(progress, elapsed / config.max_seconds)
    progress = min(1.0, progress)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * progress))


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The random generator of one step, seeded like ``funknn_fast.superres.training``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + rank * 10_007 + step) % (2**63))


def target_cell(config: LIIFTrainConfig, sample: Sample) -> torch.Tensor:
    """(2,) cell of the target grid of a training sample (see module docstring)."""
    side = 2 * sample.low.shape[-1] if config.mode == "factor" else config.crop_size
    return torch.full((2,), 2.0 / side, dtype=sample.coords.dtype, device=sample.coords.device)


def batch_loss(model: LIIF, config: LIIFTrainConfig, samples: list[Sample]) -> torch.Tensor:
    """L1 (or L2) loss over all queries of ``samples``; one encoder pass per low-res size."""
    groups: dict[tuple[int, ...], list[Sample]] = {}
    for sample in samples:
        groups.setdefault(tuple(sample.low.shape), []).append(sample)
    predictions, targets = [], []
    for group in groups.values():
        low = torch.cat([s.low for s in group])
        coords = torch.cat([s.coords for s in group])
        predictions.append(model(coords, low, target_cell(config, group[0])).flatten(0, 1))
        targets.append(torch.cat([s.targets for s in group]).flatten(0, 1))
    prediction, target = torch.cat(predictions), torch.cat(targets)
    if config.loss == "l2":
        return F.mse_loss(prediction, target)
    return F.l1_loss(prediction, target)


def _write_json(path: Path, info: dict) -> None:
    write_text_atomically(path, json.dumps(info, indent=2) + "\n")


def train_liif(
    config: LIIFTrainConfig, out_dir: str | os.PathLike, name: str | None = None,
    device: str | torch.device = "cpu",
) -> LIIF:
    """Trains a LIIF per ``config`` on ``device`` and writes ``out_dir`` (see module
    docstring)."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or f"liif_{config.size}"
    torch.manual_seed(config.seed)
    images = load_photos(TRAIN_PHOTOS) if config.data == "bundled" else load_folder(config.data)
    sampler = CropSampler(images, config.crop_size, config.mode, config.queries,
                          config.min_scale, config.max_scale)
    model = LIIF(SIZES[config.size]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    log_path = out_dir / "log.jsonl"
    clock = CLOCKS[config.clock]
    began, began_wall = clock(), time.perf_counter()
    done = 0

    def save() -> None:
        save_liif(model, out_dir / f"{name}.safetensors")
        info = {"train": dataclasses.asdict(config), "steps_done": done,
                "train_seconds": clock() - began, "clock": config.clock,
                "wall_seconds": time.perf_counter() - began_wall,
                "parameters": sum(p.numel() for p in model.parameters())}
        _write_json(out_dir / f"{name}.json", info)

    model.train()
    for step in range(config.steps):
        elapsed = clock() - began
        if config.max_seconds is not None and elapsed >= config.max_seconds:
            break
        for group in optimizer.param_groups:
            group["lr"] = schedule(config, step, elapsed)
        generator = step_generator(config.seed, step)
        samples = [sampler.sample(generator) for _ in range(config.batch_size)]
        samples = [Sample(s.low.to(device), s.coords.to(device), s.targets.to(device))
                   for s in samples]
        loss = batch_loss(model, config, samples)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        if done % config.log_every == 0:
            record = {"step": done, "loss": float(loss.detach()),
                      "lr": optimizer.param_groups[0]["lr"],
                      "seconds": clock() - began,
                      "wall_seconds": time.perf_counter() - began_wall}
            with open(log_path, "a") as log:
                log.write(json.dumps(record) + "\n")
        if done % config.checkpoint_every == 0:
            save()
    save()
    return model.eval()
