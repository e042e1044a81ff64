"""``funknn train``: train a FunkNN super-resolution model (see ``funknn_fast.superres.training``).

Example (the shipped weights; the exact command is stored in the weights' JSON)::

    funknn train --out runs/cnn --variant cnn --mode continuous --steps 2000 \
        --batch-size 32 --queries 16 --lr 1e-3 --warmup 100 --threads 1 \
        --export funknn_fast/weights/funknn_cnn_continuous

(43 minutes on one core of the shared 2-core CPU: 2000 Adam steps of 32 crops x 16 queries.)

Under ``torchrun --nproc-per-node N -m funknn_fast.cli train ...`` the processes train one model
data-parallel (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import fields

from funknn_fast.cli import CommandError


def register(subparsers: argparse._SubParsersAction) -> None:
    from funknn_fast.superres.training import TrainConfig

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train", help="train a FunkNN super-resolution model",
        description="Train FunkNN (L1, Adam, cosine schedule) on the bundled training photographs "
                    "or a folder of PNG/JPEG images; writes safetensors + JSON checkpoints.")
    parser.add_argument("--out", required=True, help="output folder (checkpoints, model, log)")
    parser.add_argument("--mode", choices=("single", "continuous", "factor"), default=defaults.mode)
    parser.add_argument("--variant", choices=("cnn", "mlp"), default=defaults.variant)
    parser.add_argument("--activation", choices=("relu", "sin"), default=defaults.activation)
    parser.add_argument("--data", default=defaults.data,
                        help='"bundled" (the bundled training photographs) or an image folder')
    for name, kind in (("crop_size", int), ("batch_size", int), ("queries", int),
                       ("min_scale", float), ("max_scale", float), ("steps", int), ("lr", float),
                       ("lr_min", float), ("warmup", int), ("seed", int),
                       ("checkpoint_every", int), ("log_every", int)):
        parser.add_argument("--" + name.replace("_", "-"), type=kind,
                            default=getattr(defaults, name))
    parser.add_argument("--loss", choices=("l1", "l2"), default=defaults.loss)
    parser.add_argument("--fused", action="store_true", help="train through the fused CNN path")
    parser.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--export", default=None,
                        help="also write the final weights to EXPORT.safetensors / EXPORT.json")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from funknn_fast.models.checkpoint import load_model, read_metadata, save_model
    from funknn_fast.superres.training import TrainConfig, train

    if args.threads is not None:
        if args.threads < 1:
            raise CommandError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.data != "bundled" and not os.path.isdir(args.data):
        raise CommandError(f"--data: no such folder: {args.data}")
    names = {f.name for f in fields(TrainConfig)}
    try:
        config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    except ValueError as error:
        raise CommandError(str(error)) from error
    command = "funknn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        model = train(config, args.out, resume=args.resume, progress=not args.no_progress,
                      extra={"command": command})
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    if args.export and int(os.environ.get("RANK", "0")) == 0:
        meta = read_metadata(os.path.join(args.out, "model"))
        meta = {k: v for k, v in meta.items() if k not in ("format", "model")}
        paths = save_model(model, args.export, meta)
        load_model(args.export)  # round trip: the exported files load
        print(f"exported {paths[0]} and {paths[1]}")
    return 0
