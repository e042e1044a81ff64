"""Training the continuous prior on random-ellipse phantoms: auto-encoder, flow, FunkNN.

``python -m funknn_fast.prior.train --out PATH [--stages autoencoder,flow,funknn] [options]``

Stages (each saves ``PATH.safetensors`` + ``PATH.json`` with every part trained so far, so a later
stage or a rerun of one stage loads the others from the same file):

* ``autoencoder``: ``d x d`` phantoms (``--size``), Adam, loss MSE + Laplacian-pyramid L1;
* ``flow``: the encoder's latents of the training phantoms, maximum likelihood;
* ``funknn``: FunkNN (``--variant``) from the ``d x d`` phantom to the *analytic* phantom value at
  uniformly random coordinates of ``[-1, 1]^2`` (a continuous target: no resampling), L1 loss.

Learning rates: linear warm-up over 5% of the steps (or of the time budget), cosine decay to 1%
of the peak. Every stage also stops at ``--max-minutes`` if given, counted on ``--clock``:
"wall" (wall clock, the default) or "cpu" (this process's CPU time, ``time.process_time``: on a
dedicated core it is the wall clock, and other jobs on the machine cannot shorten the training).
Data: train phantoms ``0 .. --train-count`` of the "train" split (seed ``--seed``), rasterized
once with 2 x 2 supersampling.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior.autoencoder import AutoEncoder, reconstruction_loss
from funknn_fast.prior.flow import LatentFlow
from funknn_fast.prior.generator import load_parts, read_info, save_parts
from funknn_fast.prior.phantoms import ellipse_function, phantom_parameters, rasterize

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
STAGES = ("autoencoder", "flow", "funknn")


@dataclass
class PriorTrainConfig:
    size: int = 32
    edge_width: float = 0.06
    train_count: int = 20000
    seed: int = 0
    channels: tuple[int, ...] = (16, 32, 64, 128)
    latent: int = 64
    ae_steps: int = 6000
    ae_batch: int = 64
    ae_lr: float = 1e-3
    pyramid_weight: float = 1.0
    flow_steps: int = 3000
    flow_batch: int = 256
    flow_lr: float = 1e-3
    couplings: int = 5
    flow_hidden: tuple[int, ...] = (256, 256)
    variant: str = "mlp"
    funknn_steps: int = 4000
    funknn_batch: int = 16
    funknn_queries: int = 256
    funknn_lr: float = 1e-3
    max_minutes: float | None = None
    clock: str = "wall"
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {self.clock!r}")

    def phantom_info(self) -> dict:
        return {"size": self.size, "edge_width": self.edge_width, "seed": self.seed,
                "train_count": self.train_count}


def schedule(step: int, steps: int, peak: float, time_fraction: float = 0.0) -> float:
    """Linear warm-up over 5% of the run, then cosine from ``peak`` to ``peak / 100``.

    Progress is the larger of the step fraction and ``time_fraction`` (elapsed / ``max_minutes``)
    in both phases, so a run cut by its time budget (``steps`` set far beyond reach) warms up over
    its first 5% of time, not over 5% of ``steps``, and still ends at the low rate.
    """
    warm = max(1, steps // 20)
    warm_progress = max((step + 1) / warm, time_fraction / 0.05)
    if warm_progress < 1.0:
        return peak * warm_progress
    progress = max((step - warm) / max(1, steps - warm), time_fraction)
    return peak * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def training_phantoms(
    config: PriorTrainConfig, chunk: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameters ``(N, K, 6)`` and images ``(N, 1, d, d)`` of the training phantoms."""
    params = phantom_parameters(range(config.train_count), "train", config.seed)
    images = torch.cat([
        rasterize(params[s : s + chunk], config.size, config.edge_width, supersample=2)
        for s in range(0, config.train_count, chunk)
    ])
    return params, images


def _loop(
    name: str,
    steps: int,
    peak_lr: float,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[int, torch.Generator], torch.Tensor],
    config: PriorTrainConfig,
    log: Callable[[dict], None],
    round_index: int = 0,
) -> dict:
    # a resumed round draws other batches than the rounds before it
    generator = torch.Generator().manual_seed(config.seed + 1_000_003 * round_index)
    start, cpu_start = time.perf_counter(), time.process_time()
    clock = CLOCKS[config.clock]
    clock_start = clock()
    smoothed, step = None, 0
    budget = None if config.max_minutes is None else 60.0 * config.max_minutes
    for step in range(steps):
        fraction = 0.0 if budget is None else (clock() - clock_start) / budget
        for group in optimizer.param_groups:
            group["lr"] = schedule(step, steps, peak_lr, fraction)
        loss = loss_fn(step, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        smoothed = value if smoothed is None else 0.95 * smoothed + 0.05 * value
        elapsed = time.perf_counter() - start
        if step % config.log_every == 0 or step == steps - 1:
            log({"stage": name, "step": step, "loss": value, "smoothed": smoothed,
                 "seconds": round(elapsed, 1),
                 "cpu_seconds": round(time.process_time() - cpu_start, 1)})
        if budget is not None and clock() - clock_start > budget:
            log({"stage": name, "stopped_at": step, "reason": "max_minutes"})
            break
    return {"steps_done": step + 1, "seconds": round(time.perf_counter() - start, 1),
            "cpu_seconds": round(time.process_time() - cpu_start, 1), "final_loss": smoothed}


def _start(fresh: nn.Module, initial: nn.Module | None, name: str) -> nn.Module:
    """``fresh``, or ``initial`` (a resumed part) after checking it has the same configuration."""
    if initial is None:
        return fresh
    if initial.config() != fresh.config():
        raise ValueError(f"--resume: the {name} to resume has configuration {initial.config()}, "
                         f"the options give {fresh.config()}")
    return initial.train()


def train_autoencoder(
    config: PriorTrainConfig, images: torch.Tensor, log, initial: AutoEncoder | None = None,
    round_index: int = 0,
) -> tuple[AutoEncoder, dict]:
    torch.manual_seed(config.seed)
    model = _start(AutoEncoder(config.size, config.channels, config.latent), initial,
                   "autoencoder")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.ae_lr)

    def loss_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(len(images), (config.ae_batch,), generator=generator)
        batch = images[index]
        return reconstruction_loss(model(batch), batch, config.pyramid_weight)

    summary = _loop("autoencoder", config.ae_steps, config.ae_lr, optimizer, loss_fn, config, log,
                    round_index)
    return model.eval(), summary


@torch.no_grad()
def encode_all(model: AutoEncoder, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    return torch.cat([model.encoder(images[s : s + chunk]) for s in range(0, len(images), chunk)])


def fit_flow(
    config: PriorTrainConfig, latents: torch.Tensor, log, initial: LatentFlow | None = None,
    round_index: int = 0,
) -> tuple[LatentFlow, dict]:
    torch.manual_seed(config.seed)
    flow = _start(LatentFlow(config.latent, config.couplings, config.flow_hidden), initial,
                  "flow")
    if initial is None:
        flow.set_normalization(latents)
    optimizer = torch.optim.Adam(flow.parameters(), lr=config.flow_lr)

    def loss_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(len(latents), (config.flow_batch,), generator=generator)
        return -flow.log_prob(latents[index]).mean() / config.latent

    summary = _loop("flow", config.flow_steps, config.flow_lr, optimizer, loss_fn, config, log,
                    round_index)
    return flow.eval(), summary


def train_funknn(
    config: PriorTrainConfig, params: torch.Tensor, images: torch.Tensor, log,
    initial: FunkNN | None = None, round_index: int = 0,
) -> tuple[FunkNN, dict]:
    torch.manual_seed(config.seed)
    model = _start(FunkNN(channels=1, variant=config.variant), initial, "funknn")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.funknn_lr)

    def loss_fn(step: int, generator: torch.Generator) -> torch.Tensor:
        index = torch.randint(len(images), (config.funknn_batch,), generator=generator)
        coords = torch.rand(config.funknn_batch, config.funknn_queries, 2, generator=generator)
        coords = 2.0 * coords - 1.0
        target = ellipse_function(params[index], coords.double(), config.edge_width).float()
        return F.l1_loss(model(coords, images[index]), target)

    summary = _loop("funknn", config.funknn_steps, config.funknn_lr, optimizer, loss_fn, config,
                    log, round_index)
    return model.eval(), summary


def run(
    config: PriorTrainConfig,
    out: Path,
    stages: tuple[str, ...],
    log,
    merge: tuple[Path, ...] = (),
    resume: Path | None = None,
) -> dict:
    """Train ``stages`` in order; other parts come from ``out`` (if present), then ``merge``.

    Each part not trained here is taken from the first of those files that has it. With
    ``resume`` (a prior file, e.g. a committed checkpoint), each stage starts from that file's
    part instead of a fresh one (same configuration required; the flow keeps its latent
    standardisation) for another round of its budget: a warm restart (fresh Adam state, the
    learning-rate schedule from its peak again, other batches). The record of the stage lists
    the rounds (``rounds``: the summaries of the resumed file's rounds, then this one).
    """
    parts, metadata = {}, {"phantoms": config.phantom_info(), "training": {}}
    for source in (out, *merge):
        if source == out and not out.with_name(out.name + ".json").is_file():
            continue
        previous = read_info(source)
        if previous.get("phantoms", metadata["phantoms"]) != metadata["phantoms"]:
            raise ValueError(f"{source} was trained on other phantoms: {previous['phantoms']}")
        kept = tuple(p for p in STAGES if p in previous and p not in stages and p not in parts)
        parts.update(load_parts(source, kept))
        for part in kept:
            metadata["training"][part] = previous.get("training", {}).get(part)
    if not stages:
        save_parts(out, parts, metadata)
        return metadata
    resumed_info = read_info(resume) if resume is not None else {}
    if resume is not None and resumed_info.get("phantoms") != metadata["phantoms"]:
        raise ValueError(f"--resume: {resume} was trained on other phantoms: "
                         f"{resumed_info.get('phantoms')}")
    params, images = training_phantoms(config)
    for stage in stages:
        initial, rounds = None, []
        if resume is not None:
            initial = load_parts(resume, (stage,))[stage]
            previous = resumed_info.get("training", {}).get(stage) or {}
            rounds = previous.get("rounds") or [previous.get("summary")]
        if stage == "autoencoder":
            parts["autoencoder"], summary = train_autoencoder(config, images, log, initial,
                                                              len(rounds))
        elif stage == "flow":
            if "autoencoder" not in parts:
                raise ValueError("the flow stage needs a trained autoencoder (stage autoencoder)")
            latents = encode_all(parts["autoencoder"], images)
            parts["flow"], summary = fit_flow(config, latents, log, initial, len(rounds))
        else:
            parts["funknn"], summary = train_funknn(config, params, images, log, initial,
                                                    len(rounds))
        metadata["training"][stage] = {"summary": summary, "config": _jsonable(asdict(config))}
        if resume is not None:
            metadata["training"][stage].update(resumed_from=str(resume), rounds=[*rounds, summary])
        save_parts(out, parts, metadata)
        log({"stage": stage, "saved": str(out), **summary})
    return metadata


def _jsonable(values: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m funknn_fast.prior.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output stem (no suffix)")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)} ('' with --merge)")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="prior files to take the other parts from (first wins)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="prior file whose parts the stages start from (another round)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--log", type=Path, default=None, help="JSON-lines log file")
    for field in fields(PriorTrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if isinstance(default, tuple):
            parser.add_argument(flag, type=int, nargs="+", default=list(default))
        elif field.name == "max_minutes":
            parser.add_argument(flag, type=float, default=None)
        elif field.name == "clock":
            parser.add_argument(flag, choices=sorted(CLOCKS), default=default,
                                help="what --max-minutes counts: wall clock or process CPU time")
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stages = tuple(s for s in args.stages.split(",") if s)
    unknown = [s for s in stages if s not in STAGES]
    if unknown or not (stages or args.merge):
        print(f"error: --stages must name some of {STAGES}, got {args.stages!r}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    values = {f.name: getattr(args, f.name) for f in fields(PriorTrainConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    config = PriorTrainConfig(**values)
    log_file = args.log.open("a") if args.log else None

    def log(record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if log_file:
            log_file.write(line + "\n")
            log_file.flush()

    log({"command": " ".join(sys.argv), "config": _jsonable(asdict(config))})
    run(config, args.out, stages, log, tuple(args.merge), args.resume)
    if log_file:
        log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
