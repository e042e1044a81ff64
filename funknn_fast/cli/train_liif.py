"""``funknn train-liif``: trains the LIIF baseline (EDSR or 140K) like a FunkNN run.

``--match-funknn WEIGHTS`` copies the data protocol (mode, data, crop size, batch size, queries,
scale range, loss, seed) and the wall-clock budget (``train_seconds``) from the JSON file written
with FunkNN weights, so that both models are trained the same way; explicit options still
override.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from funknn_fast.cli import CommandError, common

PROTOCOL_FIELDS = ("mode", "data", "crop_size", "batch_size", "queries", "min_scale",
                   "max_scale", "loss", "seed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-liif", help="train the LIIF baseline (EDSR-baseline or 140K) on FunkNN's data",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--model", "--size", dest="size", choices=("edsr", "140k"),
                        default="edsr", help="LIIF-EDSR (1.5 M parameters) or LIIF-140K")
    parser.add_argument("-o", "--output", "--out", dest="out", required=True,
                        help="output folder (created if missing)")
    parser.add_argument("--name", help="weights file stem (default liif_<model>)")
    parser.add_argument("--match-funknn", metavar="WEIGHTS",
                        help="FunkNN weights (.json/.safetensors): copy their protocol, budget")
    parser.add_argument("--mode", choices=("single", "continuous", "factor"),
                        help="training mode, as for funknn train (default: continuous)")
    parser.add_argument("--data", help='"bundled" or a folder of PNG/JPEG images')
    parser.add_argument("--loss", choices=("l1", "l2"), help="training loss (default: l1)")
    parser.add_argument("--clock", choices=("wall", "cpu"),
                        help="what --max-seconds counts: wall-clock seconds (default) or this "
                             "process's CPU seconds (fair when other jobs share the machine)")
    for name, kind, text in (
        ("crop-size", int, "side of the random training crops"),
        ("batch-size", int, "crops per step"),
        ("queries", int, "random target pixels per crop"),
        ("min-scale", float, "smallest upscaling factor drawn"),
        ("max-scale", float, "largest upscaling factor drawn"),
        ("steps", int, "Adam steps"),
        ("max-seconds", float, "training budget in seconds (see --clock)"),
        ("lr", float, "peak learning rate"),
        ("lr-min", float, "final learning rate of the cosine decay"),
        ("warmup", int, "steps of linear warm-up"),
        ("seed", int, "random seed"),
        ("checkpoint-every", int, "steps between checkpoints"),
        ("log-every", int, "steps between log records"),
        ("threads", int, "torch CPU threads"),
    ):
        parser.add_argument(f"--{name}", type=kind,
                            help=f"{text} (default: LIIFTrainConfig's, or --match-funknn's)")
    common.add_device_options(parser)
    parser.set_defaults(func=run)


def _funknn_protocol(path: str) -> dict:
    json_path = Path(path).with_suffix(".json")
    if not json_path.is_file():
        raise CommandError(f"--match-funknn: {json_path} not found")
    try:
        info = json.loads(json_path.read_text())
        train = info["train"]
        values = {k: train[k] for k in PROTOCOL_FIELDS if k in train}
        seconds = info.get("train_seconds")
    except (OSError, ValueError, KeyError, TypeError) as error:
        message = f"--match-funknn: {json_path} has no training record: {error}"
        raise CommandError(message) from error
    if seconds is not None:
        values["max_seconds"] = float(seconds)
        values["steps"] = 10**9
    return values


def run(args: argparse.Namespace) -> int:
    from funknn_fast.superres.liif_training import LIIFTrainConfig, train_liif

    values: dict = {"size": args.size}
    if args.match_funknn:
        values.update(_funknn_protocol(args.match_funknn))
    for key in ("mode", "data", "loss", "clock", "crop_size", "batch_size", "queries", "min_scale",
                "max_scale", "steps", "max_seconds", "lr", "lr_min", "warmup", "seed",
                "checkpoint_every", "log_every", "threads"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    try:
        config = LIIFTrainConfig(**values)
    except ValueError as error:
        raise CommandError(str(error)) from error
    common.output_folder(args.out)
    train_liif(config, args.out, args.name, device=common.device_of(args))
    print(f"wrote {Path(args.out) / ((args.name or f'liif_{args.size}') + '.safetensors')}")
    return 0
