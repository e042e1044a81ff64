"""Training FunkNN for super-resolution: modes "single", "continuous", "factor" (see data.py).

One step: every process draws ``batch_size`` random crops (``CropSampler``) with ``queries``
random target pixels each, the model predicts those pixels from the low-resolution crops, and the
L1 loss is minimised by Adam. The learning rate follows a linear warm-up over ``warmup`` steps
then a cosine decay from ``lr`` to ``lr_min`` at ``steps``. The random draws of step t on process
r come from a generator seeded with (seed, r, t), so a run is reproducible and a resumed run
continues exactly where the checkpoint left it.

Outputs in ``out_dir``: ``model.safetensors`` + ``model.json`` (the weights, loadable with
``funknn_fast.models.checkpoint.load_model``), ``checkpoint.safetensors`` +
``checkpoint.json`` (weights, Adam state and step, for ``resume``), ``log.jsonl`` (loss per logged
step). No pickle anywhere. The folder's rules (no silent overwrite of a run, resume only a
complete checkpoint with the same settings) are in ``funknn_fast.superres.run_folder``.

Data parallel: run under ``torchrun --nproc-per-node N``; processes join a process group (gloo on
CPU, nccl on CUDA), the model is wrapped in DistributedDataParallel (gradients averaged), each
process draws its own crops (effective batch N * batch_size), rank 0 writes the files.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from funknn_fast.atomic_files import write_text_atomically
from funknn_fast.models.checkpoint import (
    atomic_save_tensors,
    load_model,
    resolve_weights,
    save_model,
)
from funknn_fast.models.funknn import FunkNN
from funknn_fast.superres.data import (
    MODES,
    TRAIN_PHOTOS,
    CropSampler,
    Sample,
    dense_sizes,
    load_folder,
    load_photos,
)
from funknn_fast.superres.degradations import KERNELS
from funknn_fast.superres.grid_render import render_grid
from funknn_fast.superres.photos import extended_training_photos, training_photos
from funknn_fast.superres.run_folder import (
    RunFolderError,
    prepare_run_folder,
    read_checkpoint_info,
)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the JSON files)."""

    mode: str = "continuous"
    variant: str = "cnn"
    activation: str = "relu"
    # "bundled" (TRAIN_PHOTOS), "photos" (photos.training_photos), "photos-extended"
    # (photos.extended_training_photos) or a folder of images
    data: str = "bundled"
    # downscaling kernels drawn per crop, comma-separated (degradations.KERNELS) or "mix" (all)
    kernels: str = "antialiased"
    crop_size: int = 96
    batch_size: int = 64  # crops per step and process
    queries: int = 16  # target pixels per crop (many small crops: less correlated gradients)
    min_scale: float = 2.0
    max_scale: float = 4.0
    steps: int = 1000
    lr: float = 1e-3
    lr_min: float = 1e-5
    warmup: int = 50
    loss: str = "l1"  # "l1" (the paper's code) or "l2"
    # dense: every pixel of every crop is a target, rendered by grid_render (lattice variant);
    # one scale per step drawn from dense_scales (fractions p/q, q <= 8); queries is unused
    dense: bool = False
    dense_scales: str = "2,2.5,3,3.5,4"
    init: str = ""  # weights (shipped name or path) a new run starts from; "" = random init
    # CPU-second budget (this process, all threads; 0 = none): training stops at ``steps`` or
    # when the budget is spent, and the schedule's progress is max(step share, budget share)
    max_cpu_seconds: float = 0.0
    fused: bool = False  # train through funknn_fast.models.fused_cnn (measured slower for backward)
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        for name in ("crop_size", "batch_size", "queries", "steps", "checkpoint_every",
                     "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.kernel_names()  # validates
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if not self.lr > 0 or self.lr_min < 0:
            raise ValueError(f"need lr > 0 and lr_min >= 0, got {self.lr}, {self.lr_min}")
        if not self.max_cpu_seconds >= 0:
            raise ValueError(f"max_cpu_seconds must be >= 0, got {self.max_cpu_seconds}")
        if self.dense:
            if self.variant != "lattice" or self.mode != "continuous":
                raise ValueError("dense training needs variant 'lattice' and mode 'continuous', "
                                 f"got {self.variant!r} and {self.mode!r}")
            for scale in self.scale_values():
                dense_sizes(self.crop_size, scale)  # validates
                if not self.min_scale <= scale <= self.max_scale:
                    raise ValueError(f"dense_scales: {scale} is outside [min_scale, max_scale] "
                                     f"= [{self.min_scale}, {self.max_scale}]")

    def scale_values(self) -> tuple[float, ...]:
        """The scales of ``dense_scales`` as floats."""
        try:
            values = tuple(float(v) for v in self.dense_scales.split(","))
        except ValueError:
            raise ValueError("dense_scales must be comma-separated numbers, got "
                             f"{self.dense_scales!r}") from None
        return values

    def kernel_names(self) -> tuple[str, ...]:
        """The downscaling kernels of ``kernels`` ("mix" = all of degradations.KERNELS)."""
        names = KERNELS if self.kernels == "mix" else tuple(self.kernels.split(","))
        if not names or any(k not in KERNELS for k in names):
            raise ValueError(f"kernels must be 'mix' or comma-separated names from {KERNELS}, "
                             f"got {self.kernels!r}")
        return names

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def learning_rate(config: TrainConfig, step: int, cpu_seconds: float = 0.0) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up, then cosine to lr_min (over the
    steps, or over ``max_cpu_seconds`` when that share, of ``cpu_seconds`` spent, is larger)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = (step - config.warmup) / span
    if config.max_cpu_seconds:
        progress = max(progress, cpu_seconds / config.max_cpu_seconds)
    progress = min(1.0, progress)
    return config.lr_min + 0.5 * (config.lr - config.lr_min) * (1 + math.cos(math.pi * progress))


class BatchLoss(nn.Module):
    """L1 loss of a FunkNN on a list of samples (the module DDP wraps)."""

    def __init__(self, model: FunkNN, loss: str = "l1") -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, samples: list[Sample]) -> torch.Tensor:
        p = self.model.patch_size
        patches = torch.cat([self.model.sample_patches(s.coords, s.low)[0] for s in samples])
        targets = torch.cat([s.targets[0] for s in samples])
        prediction = self.model.network(patches) + patches[:, :, p // 2, p // 2]
        if self.loss == "l2":
            return F.mse_loss(prediction, targets)
        return F.l1_loss(prediction, targets)


class DenseLoss(nn.Module):
    """L1 (or L2) loss of a lattice FunkNN rendered on every pixel of the target crops.

    ``forward(low (B, C, d, d), target (B, C, n, n))``: ``grid_render.render_grid`` equals
    per-query evaluation at every pixel centre, so this is the per-query loss on all n * n
    pixels, at the shared path's cost.
    """

    def __init__(self, model: FunkNN, loss: str = "l1") -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, low: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prediction = render_grid(self.model, low, tuple(target.shape[2:]))
        if self.loss == "l2":
            return F.mse_loss(prediction, target)
        return F.l1_loss(prediction, target)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if world > 1:
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(requested: str = "auto") -> torch.device:
    """``requested`` ("auto": CUDA when available, "cpu" or "cuda"), this process's GPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    if requested != "cpu" and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _load_images(config: TrainConfig) -> list[torch.Tensor]:
    if config.data == "bundled":
        return load_photos(TRAIN_PHOTOS)
    if config.data == "photos":
        return training_photos()
    if config.data == "photos-extended":
        return extended_training_photos()
    return load_folder(config.data)


def _step_generator(config: TrainConfig, rank: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(
        (config.seed * 1_000_003 + rank * 10_007 + step) % (2**63)
    )


def _optimizer_tensors(optimizer: torch.optim.Adam, model: nn.Module) -> dict[str, torch.Tensor]:
    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                tensors[f"adam.{names[id(param)]}.{key}"] = torch.as_tensor(value).reshape(-1)
    return tensors


def _load_optimizer_tensors(optimizer: torch.optim.Adam, model: nn.Module,
                            tensors: dict[str, torch.Tensor]) -> None:
    for name, param in model.named_parameters():
        state = {}
        for key in ("step", "exp_avg", "exp_avg_sq"):
            value = tensors.get(f"adam.{name}.{key}")
            if value is None:
                break
            state[key] = value.reshape(()) if key == "step" else value.view_as(param).to(param)
        if len(state) == 3:
            optimizer.state[param] = state


def save_checkpoint(out_dir: Path, model: FunkNN, optimizer: torch.optim.Adam,
                    config: TrainConfig, step: int, extra: dict[str, Any]) -> None:
    """Writes checkpoint.safetensors/json (resumable) and model.safetensors/json (weights)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(_optimizer_tensors(optimizer, model))
    atomic_save_tensors(tensors, out_dir / "checkpoint.safetensors")
    info = {"step": step, "train": asdict(config), "model": model.config(), **extra}
    write_text_atomically(out_dir / "checkpoint.json", json.dumps(info, indent=2) + "\n")
    save_model(model, out_dir / "model", {"step": step, "train": asdict(config), **extra})


def load_checkpoint(out_dir: Path, model: FunkNN, optimizer: torch.optim.Adam) -> int:
    """Restores model and Adam state from ``out_dir``; returns the next step.

    A missing, corrupt or mismatched checkpoint raises ``run_folder.RunFolderError``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    info = read_checkpoint_info(out_dir)
    path = out_dir / "checkpoint.safetensors"
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise RunFolderError(f"checkpoint {path} is missing or corrupt: {error}") from error
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[1:2] or [str(error)]
        raise RunFolderError(f"checkpoint {path} does not match the model "
                             f"({model.config()}): {first[0].strip()}") from error
    _load_optimizer_tensors(optimizer, model, tensors)
    return int(info["step"])


def _cpu_seconds(began: float, world: int) -> float:
    """CPU seconds since ``began`` (``time.process_time``); the largest over the processes of a
    data-parallel run, so that they all stop at the same step."""
    seconds = time.process_time() - began
    if world > 1:
        value = torch.tensor([seconds], dtype=torch.float64)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        seconds = float(value)
    return seconds


def _dense_batch(sampler: CropSampler, config: TrainConfig, generator: torch.Generator,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(low (B, C, d, d), target (B, C, n, n)) of one dense step: one scale for the batch."""
    scales = config.scale_values()
    scale = scales[int(torch.randint(0, len(scales), (1,), generator=generator))]
    pairs = [sampler.sample_dense(generator, scale) for _ in range(config.batch_size)]
    low = torch.stack([pair[0] for pair in pairs]).to(device)
    return low, torch.stack([pair[1] for pair in pairs]).to(device)


def _initialise_from(model: FunkNN, weights: str) -> None:
    """Copies the weights of ``weights`` (a shipped name or a path) into ``model``."""
    source = load_model(resolve_weights(weights))
    if source.config() != model.config():
        raise ValueError(f"init weights {weights!r} are a {source.config()} model, the run "
                         f"trains a {model.config()} model")
    model.load_state_dict(source.state_dict())


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    allow_changes: bool = False,
    overwrite: bool = False,
    device: str = "auto",
) -> FunkNN:
    """Trains a FunkNN per ``config``; writes ``out_dir`` (see module docstring).

    ``resume``, ``allow_changes`` and ``overwrite``: ``run_folder.prepare_run_folder``;
    ``device``: "auto" (CUDA when available), "cpu" or "cuda".
    """
    rank, world = _distributed()
    device = _device(device)
    out_dir = Path(out_dir)
    recorded = prepare_run_folder(out_dir, asdict(config), resume, allow_changes, overwrite)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    images = _load_images(config)
    sampler = CropSampler(images, config.crop_size, config.mode, config.queries,
                          config.min_scale, config.max_scale, config.kernel_names())
    model = FunkNN(3, config.variant, config.activation, fused=config.fused).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    start, previous_seconds, previous_cpu = 0, 0.0, 0.0
    if recorded is not None:
        start = load_checkpoint(out_dir, model, optimizer)
        previous_seconds = float(recorded.get("train_seconds", 0.0))
        previous_cpu = float(recorded.get("cpu_seconds", 0.0))
    elif config.init:
        _initialise_from(model, config.init)
    loss_module: nn.Module = (DenseLoss if config.dense else BatchLoss)(model, config.loss)
    if world > 1:
        loss_module = nn.parallel.DistributedDataParallel(loss_module)
    extra = {"world_size": world, **(extra or {})}
    log_path = out_dir / "log.jsonl"
    steps = range(start, config.steps)
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=start, desc=f"train {config.mode}", unit="step")
    began = time.perf_counter() - previous_seconds
    began_cpu = time.process_time() - previous_cpu
    running = None
    model.train()
    for step in steps:
        # the budget's clock (a collective under DDP) only when there is a budget
        cpu_seconds = _cpu_seconds(began_cpu, world) if config.max_cpu_seconds else 0.0
        if config.max_cpu_seconds and cpu_seconds >= config.max_cpu_seconds:
            if rank == 0:
                save_checkpoint(out_dir, model, optimizer, config, step,
                                {**extra, "train_seconds": time.perf_counter() - began,
                                 "cpu_seconds": cpu_seconds, "budget_spent": True})
            break
        rate = learning_rate(config, step, cpu_seconds)
        for group in optimizer.param_groups:
            group["lr"] = rate
        generator = _step_generator(config, rank, step)
        if config.dense:
            loss = loss_module(*_dense_batch(sampler, config, generator, device))
        else:
            samples = [sampler.sample(generator) for _ in range(config.batch_size)]
            samples = [Sample(s.low.to(device), s.coords.to(device), s.targets.to(device))
                       for s in samples]
            loss = loss_module(samples)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        done = step + 1
        if rank == 0:
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{rate:.1e}")
            if done % config.log_every == 0 or done == config.steps:
                record = {"step": done, "loss": value, "loss_ema": running,
                          "seconds": time.perf_counter() - began,
                          "cpu_seconds": time.process_time() - began_cpu}
                with open(log_path, "a") as log:
                    log.write(json.dumps(record) + "\n")
            if done % config.checkpoint_every == 0 or done == config.steps:
                save_checkpoint(out_dir, model, optimizer, config, done,
                                {**extra, "train_seconds": time.perf_counter() - began,
                                 "cpu_seconds": time.process_time() - began_cpu})
    if bar is not None:
        bar.close()
    if world > 1:
        dist.barrier()
    return model.eval()
