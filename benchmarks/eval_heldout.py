"""Held-out photographs, per downscaling kernel: FunkNN models (and LIIF) against bicubic.

    python benchmarks/eval_heldout.py --models funknn_lattice_photos funknn_cnn_continuous \
        --kernels bicubic antialiased --scales 2 3 4 --threads 1 --name heldout_quality

Protocol: every photograph of ``funknn_fast.superres.photos.HELDOUT_PHOTOS`` (7 mate photographs
fetched by ``scripts/fetch_photos.sh`` + astronaut, coffee, flower) as its centred ground truth
(``photos.heldout_image``: shorter side downscaled to ``--side``, default 384, then a centred
square crop); the input is its downscale by each scale with each kernel
(``degradations.degrade``; "bicubic" = Pillow's bicubic), clamped and rounded to 8 bits like a
saved image; every method renders the input back to the ground truth's size, clamped to [0, 1];
PSNR (RGB, no border shaved) per photograph, then mean and standard deviation over the
photographs, and the gain over bicubic upsampling (PyTorch bicubic, a = -0.75, as
``evaluation.upsample``) as mean +- standard deviation of the per-photograph gains. Models are
shipped weight names (``funknn_fast/weights``) or weights files: FunkNN weights render with
``inference.render`` (the lattice variant through the shared grid engine), ``liif_*`` with
``render_liif``. Writes ``benchmarks/results/<name>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from funknn_fast.atomic_files import write_text_atomically

ROOT = Path(__file__).resolve().parent.parent
MACHINE = "2-core AMD EPYC (Zen 2) CPU"


def renderer(name: str):
    """(label, render(low (C, h, w), size) -> (C, H, W)) of a shipped model name or of a
    weights file (``path/NAME.safetensors``, labelled NAME; LIIF when NAME starts with liif)."""
    from funknn_fast.models.checkpoint import WEIGHTS_DIR, load_model, resolve_weights
    from funknn_fast.models.liif import load_liif
    from funknn_fast.superres.inference import render, render_liif

    path = Path(name)
    label = path.with_suffix("").name if path.suffix == ".safetensors" else name
    if label.startswith("liif"):
        model = load_liif(path if path.suffix else WEIGHTS_DIR / f"{name}.safetensors")
        return label, lambda low, size: render_liif(model, low, size=size)
    model = load_model(resolve_weights(name))
    return label, lambda low, size: render(model, low, size=size)


def main(argv: list[str] | None = None) -> int:
    from funknn_fast.superres.degradations import KERNELS, degrade
    from funknn_fast.superres.evaluation import upsample
    from funknn_fast.superres.metrics import psnr
    from funknn_fast.superres.photos import HELDOUT_PHOTOS, heldout_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True,
                        help="shipped weight names or .safetensors files")
    parser.add_argument("--kernels", nargs="+", default=["bicubic"], choices=KERNELS)
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--side", type=int, default=384,
                        help="ground-truth side (photos.heldout_image; a multiple of the scales)")
    parser.add_argument("--name", default="heldout_quality", help="results file stem")
    parser.add_argument("--title", default="Held-out photographs per downscaling kernel "
                                            "(issue 13)")
    parser.add_argument("--note", default="", help="a paragraph written under the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = [renderer(n) for n in args.models]
    truths = {n: heldout_image(n, args.side) for n in HELDOUT_PHOTOS}
    scores: dict[tuple[str, int, str], list[float]] = {}
    seconds: dict[str, float] = {label: 0.0 for label, _ in models}
    began = time.perf_counter()
    for kernel in args.kernels:
        for scale in args.scales:
            for truth in truths.values():
                size = tuple(truth.shape[1:])
                low = degrade(truth, (size[0] // scale, size[1] // scale), kernel)
                low = (low.clamp(0, 1) * 255).round() / 255
                outputs = {"bicubic": upsample(low, size, "bicubic")}
                for label, render in models:
                    t = time.process_time()
                    with torch.inference_mode():
                        outputs[label] = render(low, size).clamp(0, 1)
                    seconds[label] += time.process_time() - t
                for method, estimate in outputs.items():
                    scores.setdefault((kernel, scale, method), []).append(psnr(estimate, truth))
            print(f"{kernel} x{scale} done ({time.perf_counter() - began:.0f} s)", flush=True)
    labels = ["bicubic"] + [label for label, _ in models]
    lines = [f"## {args.title}", "",
             f"Command: `python benchmarks/eval_heldout.py {' '.join(argv or sys.argv[1:])}`; "
             f"machine: {MACHINE}, Python {platform.python_version()}, torch {torch.__version__},"
             f" {args.threads} thread(s); date: {datetime.date.today()}; load average at the "
             f"end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}.", "",
             f"{len(truths)} held-out photographs ({', '.join(truths)}), each downscaled to "
             f"a shorter side of {args.side} (Pillow bicubic) and centre-cropped to "
             f"{args.side} x {args.side} as ground truth, input downscaled with each kernel "
             "(8-bit), PSNR in dB (RGB, no border shaved): mean +- standard deviation over the "
             "photographs; gain = the per-photograph PSNR minus PyTorch bicubic upsampling's, "
             "mean +- std. CPU seconds "
             "spent rendering per model: "
             + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ".", "",
             "| kernel | scale | " + " | ".join(labels) + " | "
             + " | ".join(f"{m} gain" for m in labels[1:]) + " |",
             "|---|---|" + "---|" * (2 * len(labels) - 1)]
    for kernel in args.kernels:
        for scale in args.scales:
            cells = []
            for method in labels:
                values = scores[(kernel, scale, method)]
                cells.append(f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}")
            base = scores[(kernel, scale, "bicubic")]
            for method in labels[1:]:
                gains = [a - b for a, b in zip(scores[(kernel, scale, method)], base)]
                cells.append(f"{statistics.mean(gains):+.2f} +- {statistics.stdev(gains):.2f}")
            lines.append(f"| {kernel} | x{scale} | " + " | ".join(cells) + " |")
    if args.note:
        lines += ["", args.note]
    write_text_atomically(ROOT / "benchmarks" / "results" / f"{args.name}.md",
                          "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
