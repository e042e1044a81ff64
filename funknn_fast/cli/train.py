"""``funknn train``: train a FunkNN super-resolution model.

Example (the shipped weights; the exact command is stored in the weights' JSON)::

    funknn train --out runs/cnn --variant cnn --mode continuous --steps 2000 \
        --batch-size 32 --queries 16 --lr 1e-3 --warmup 100 --threads 1 \
        --export funknn_fast/weights/funknn_cnn_continuous

(43 minutes on one core of the shared 2-core CPU: 2000 Adam steps of 32 crops x 16 queries.)

Training: ``funknn_fast.superres.training``. The output folder (``-o``) of a new run must not
hold another run (``--overwrite`` replaces it); ``--resume`` continues its checkpoint with the
recorded settings: options not given take the recorded values, and options given with other
values are refused unless ``--allow-changes`` (``funknn_fast.superres.run_folder``).

Under ``torchrun --nproc-per-node N -m funknn_fast.cli train ...`` the processes train one model
data-parallel (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from funknn_fast.cli import CommandError, common

OPTION_HELP = {
    "mode": "single (x2), continuous (x2 to x4) or factor (x2, rendered recursively)",
    "variant": "per-patch network: cnn (the paper's), mlp (the public code's)",
    "activation": "relu, or sin (SIREN-style, smoother derivatives)",
    "crop_size": "side of the random training crops, in pixels",
    "batch_size": "crops per step and process",
    "queries": "random target pixels per crop",
    "min_scale": "smallest upscaling factor drawn (continuous mode)",
    "max_scale": "largest upscaling factor drawn (continuous mode)",
    "steps": "Adam steps in all",
    "lr": "peak learning rate (after the warm-up)",
    "lr_min": "final learning rate of the cosine decay",
    "warmup": "steps of linear learning-rate warm-up",
    "seed": "seed of the initialisation and of every step's random draws",
    "checkpoint_every": "steps between checkpoints",
    "log_every": "steps between records of log.jsonl",
    "loss": "l1 (the paper's code) or l2",
    "dense": "lattice variant: supervise every pixel of every crop through the shared grid "
             "renderer (one scale per step from --dense-scales; --queries is unused)",
    "dense_scales": "comma-separated upscaling factors p/q (q <= 8) of --dense steps",
    "max_cpu_seconds": "CPU-second budget of this process (0: none); the cosine schedule "
                       "ends with it",
    "init": "a new run starts from these weights (a shipped model's name or a path)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    from funknn_fast.superres.training import TrainConfig

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train", help="train a FunkNN super-resolution model",
        description="Train FunkNN (L1, Adam, cosine schedule) on the bundled training photographs "
                    "or a folder of PNG/JPEG images; writes safetensors + JSON checkpoints.")
    parser.add_argument("-o", "--output", "--out", dest="out", required=True,
                        help="output folder (checkpoints, model, log), created if missing")
    parser.add_argument("--mode", choices=("single", "continuous", "factor"), default=defaults.mode)
    parser.add_argument("--variant", choices=("cnn", "mlp", "lattice"), default=defaults.variant)
    parser.add_argument("--activation", choices=("relu", "sin"), default=defaults.activation)
    parser.add_argument("--data", default=defaults.data,
                        help='"bundled" (the bundled training photographs), "photos" (bundled + '
                             'fetched photographs, scripts/fetch_photos.sh), "photos-extended" '
                             '(photos + 21 more fetched ones, at two sizes) or an image folder')
    parser.add_argument("--kernels", default=defaults.kernels,
                        help="downscaling kernels drawn per crop: comma-separated names of "
                             "bicubic, bilinear, area, lanczos, antialiased, blur, or 'mix' (all)")
    for name, kind in (("crop_size", int), ("batch_size", int), ("queries", int),
                       ("min_scale", float), ("max_scale", float), ("steps", int), ("lr", float),
                       ("lr_min", float), ("warmup", int), ("seed", int),
                       ("checkpoint_every", int), ("log_every", int),
                       ("max_cpu_seconds", float)):
        parser.add_argument("--" + name.replace("_", "-"), type=kind,
                            default=getattr(defaults, name))
    parser.add_argument("--loss", choices=("l1", "l2"), default=defaults.loss)
    parser.add_argument("--fused", action="store_true", help="train through the fused CNN path")
    parser.add_argument("--dense", action="store_true", default=None)
    parser.add_argument("--dense-scales", default=None)
    parser.add_argument("--init", default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue the checkpoint in the output folder, with its settings")
    parser.add_argument("--allow-changes", action="store_true",
                        help="with --resume: accept options that differ from the recorded ones")
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in a folder that holds one (its files are removed)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quiet", "--no-progress", dest="no_progress", action="store_true",
                        help="no progress bar")
    common.add_device_options(parser)
    parser.add_argument("--export", default=None,
                        help="also write the final weights to EXPORT.safetensors / EXPORT.json")
    _defaults_from_config(parser, defaults)
    parser.set_defaults(func=run)


def _defaults_from_config(parser: argparse.ArgumentParser, defaults) -> None:
    """Options of TrainConfig fields default to None (not given: the recorded value on
    --resume, else the TrainConfig default, shown in the help)."""
    for action in parser._actions:
        if hasattr(defaults, action.dest):
            text = action.help or OPTION_HELP.get(action.dest, "")
            action.help = f"{text} (default: {getattr(defaults, action.dest)})".lstrip()
            action.default = None


def _config_values(args: argparse.Namespace, names: set[str]) -> dict:
    """TrainConfig values: defaults, then (with --resume) the recorded ones, then those given."""
    from dataclasses import asdict

    from funknn_fast.superres.run_folder import RunFolderError, read_checkpoint_info
    from funknn_fast.superres.training import TrainConfig

    values = asdict(TrainConfig())
    if args.resume:
        try:
            recorded = read_checkpoint_info(Path(args.out))["train"]
        except RunFolderError as error:
            raise CommandError(f"--resume: {error}") from error
        values.update({k: v for k, v in recorded.items() if k in names})
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return values


def run(args: argparse.Namespace) -> int:
    import torch

    from funknn_fast.models.checkpoint import load_model, read_metadata, save_model
    from funknn_fast.superres.training import TrainConfig, train

    if args.threads is not None:
        if args.threads < 1:
            raise CommandError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    names = {f.name for f in fields(TrainConfig)}
    try:
        config = TrainConfig(**_config_values(args, names))
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from error
    if config.data not in ("bundled", "photos", "photos-extended") and not os.path.isdir(
            config.data):
        raise CommandError(f"--data: no such folder: {config.data}")
    common.output_folder(args.out)
    command = "funknn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        model = train(config, args.out, resume=args.resume, progress=not args.no_progress,
                      extra={"command": command}, allow_changes=args.allow_changes,
                      overwrite=args.overwrite, device=common.device_of(args).type)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(str(error)) from error
    if args.export and int(os.environ.get("RANK", "0")) == 0:
        meta = read_metadata(os.path.join(args.out, "model"))
        meta = {k: v for k, v in meta.items() if k not in ("format", "model")}
        paths = save_model(model, args.export, meta)
        load_model(args.export)  # round trip: the exported files load
        print(f"exported {paths[0]} and {paths[1]}")
    return 0
