"""The continuous generative prior ``z -> FunkNN(x, G(z))`` and its files.

``ContinuousPrior`` bundles the auto-encoder (:mod:`.autoencoder`), the latent flow
(:mod:`.flow`) and a FunkNN model (``funknn_fast.models.funknn.FunkNN``):

* :meth:`ContinuousPrior.generate` ``z (B, L) -> low-res images (B, C, d, d)``:
  ``decoder(flow.from_base(z))`` with ``z ~ N(0, I)`` for samples;
* :meth:`ContinuousPrior.field` ``(coords (B, Q, 2), images) -> (B, Q, C)``: the continuous image
  (``grid_sample(align_corners=False)`` coordinates, ``[-1, 1]^2``);
* :meth:`ContinuousPrior.render` ``(images, size) -> (B, C, size, size)`` at pixel centres,
  chunked.

Files: ``<stem>.safetensors`` (tensors prefixed ``autoencoder.``, ``flow.``, ``funknn.``) and
``<stem>.json`` (``{"format": "funknn_fast.prior", "autoencoder": cfg, "flow": cfg, "funknn": cfg,
"phantoms": {...}, ...}``), written atomically; no pickle. The shipped files are
``funknn_fast/weights/prior_ellipses.*`` (made by ``scripts/train_prior.sh``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from funknn_fast.atomic_files import write_text_atomically
from funknn_fast.models.checkpoint import atomic_save_tensors, weight_paths
from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior.autoencoder import AutoEncoder
from funknn_fast.prior.flow import LatentFlow
from funknn_fast.prior.phantoms import pixel_centers

FORMAT = "funknn_fast.prior"
DEFAULT_PRIOR = Path(__file__).resolve().parent.parent / "weights" / "prior_ellipses"
PARTS = ("autoencoder", "flow", "funknn")


class PriorFileError(ValueError):
    """Prior files are missing, unreadable or inconsistent."""


class ContinuousPrior(nn.Module):
    def __init__(self, autoencoder: AutoEncoder, flow: LatentFlow, funknn: FunkNN) -> None:
        super().__init__()
        if flow.features != autoencoder.latent:
            raise ValueError(
                f"flow features ({flow.features}) must equal the latent size ({autoencoder.latent})"
            )
        if funknn.channels != autoencoder.image_channels:
            raise ValueError(
                f"funknn channels ({funknn.channels}) must equal the image channels "
                f"({autoencoder.image_channels})"
            )
        self.autoencoder, self.flow, self.funknn = autoencoder, flow, funknn

    @property
    def latent(self) -> int:
        return self.autoencoder.latent

    @property
    def device(self) -> torch.device:
        """The device of the prior's weights (``prior.to(device)`` moves them)."""
        return next(self.parameters()).device

    def generate(self, z: torch.Tensor, decoder: nn.Module | None = None) -> torch.Tensor:
        """Low-res images ``(B, C, d, d)`` from base latents ``z (B, L)``.

        ``decoder`` replaces the auto-encoder's decoder (the solvers fine-tune a copy).
        """
        decoder = self.autoencoder.decoder if decoder is None else decoder
        return decoder(self.flow.from_base(z))

    def field(self, coords: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.funknn(coords, images)

    def render(self, images: torch.Tensor, size: int, chunk: int = 1 << 14) -> torch.Tensor:
        """``FunkNN`` at the ``size x size`` pixel centres: ``(B, C, size, size)`` (device of
        ``images``)."""
        coords = pixel_centers(size, images.shape[0], images.dtype, images.device)
        values = torch.cat(
            [self.funknn(coords[:, s : s + chunk], images) for s in range(0, size * size, chunk)],
            dim=1,
        )
        return values.transpose(1, 2).reshape(images.shape[0], -1, size, size)

    def sample(
        self, count: int, size: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``count`` continuous samples rendered at ``size x size``: ``(count, C, size, size)``
        on the prior's device (``z`` is drawn on the device of ``generator``, the CPU by default,
        then moved: a seeded CPU generator gives the same samples on every device)."""
        source = "cpu" if generator is None else generator.device
        z = torch.randn(count, self.latent, generator=generator, device=source).to(self.device)
        return self.render(self.generate(z), size)


def save_parts(
    path: str | os.PathLike, modules: dict[str, nn.Module], metadata: dict[str, Any]
) -> tuple[Path, Path]:
    """Write the given parts (names from ``PARTS``, each with ``config()``) and ``metadata``."""
    tensor_path, json_path = weight_paths(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tensors, info = {}, {"format": FORMAT, **metadata}
    for name, module in modules.items():
        if name not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {name!r}")
        info[name] = module.config()
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().contiguous().cpu()
    atomic_save_tensors(tensors, tensor_path)
    write_text_atomically(json_path, json.dumps(info, indent=2) + "\n")
    return tensor_path, json_path


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    _, json_path = weight_paths(path)
    if not json_path.is_file():
        raise PriorFileError(
            f"no prior at {json_path}: train one with scripts/train_prior.sh "
            "(python -m funknn_fast.prior.train)"
        )
    try:
        info = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PriorFileError(f"prior config {json_path} is not valid JSON: {error}") from error
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise PriorFileError(f"{json_path} is not a {FORMAT} file")
    return info


def build_part(name: str, config: dict[str, Any]) -> nn.Module:
    if name == "autoencoder":
        return AutoEncoder(**config)
    if name == "flow":
        return LatentFlow(**config)
    if name == "funknn":
        return FunkNN(**config)
    raise ValueError(f"part must be one of {PARTS}, got {name!r}")


def load_parts(path: str | os.PathLike, names: tuple[str, ...] = PARTS) -> dict[str, nn.Module]:
    """Rebuild and load the parts ``names`` from a prior file; checks names and shapes."""
    info = read_info(path)
    tensor_path, _ = weight_paths(path)
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise PriorFileError(f"prior weights {tensor_path} are missing or corrupt: {error}"
                             ) from error
    parts = {}
    for name in names:
        if not isinstance(info.get(name), dict):
            raise PriorFileError(f"{tensor_path.with_suffix('.json')} has no {name!r} part")
        try:
            module = build_part(name, info[name])
        except (TypeError, ValueError) as error:
            raise PriorFileError(f"{tensor_path.with_suffix('.json')}: bad {name!r} config: "
                                 f"{error}") from error
        prefix = f"{name}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise PriorFileError(f"{tensor_path}: {name} weights do not match: {error}") from None
        parts[name] = module.eval()
    return parts


def load_prior(path: str | os.PathLike = DEFAULT_PRIOR) -> ContinuousPrior:
    parts = load_parts(path)
    prior = ContinuousPrior(parts["autoencoder"], parts["flow"], parts["funknn"])
    prior.info = read_info(path)
    return prior.eval()
