"""LIIF, the local implicit image function (Chen et al., CVPR 2021): FunkNN's baseline.

Written from the LIIF paper's description. An EDSR-baseline encoder (no upsampling) turns the
low-resolution image into a grid of latent codes, one per input pixel; each code is unfolded
with its 3 x 3 neighbours (zero padding). The intensity at a query x is a local ensemble over the
4 latent codes nearest to x: for each code z_t at position v_t an MLP decodes
[z_t, x - v_t, cell], and the 4 predictions are blended with area weights (the area of the
rectangle between x and the diagonally opposite code, normalised to sum to 1).

Shapes and conventions (the same inference API as FunkNN):

* ``image`` (B, C, h, w), intensities in [0, 1] (normalised to [-1, 1] inside the model; the
  prediction is mapped back).
* ``coords`` (B, Q, 2): (x, y) in the ``F.grid_sample`` ``align_corners=False`` convention:
  pixel position px = ((x + 1) w - 1) / 2, py = ((y + 1) h - 1) / 2, pixel k centred at k.
* ``cell``: (cell_x, cell_y), the width and height of one *output* pixel in the same
  normalised units: an output of size H x W has ``cell = (2 / W, 2 / H)``
  (:func:`cell_for_size`). A float, a pair, or a tensor of shape (2,), (B, 2) or (B, Q, 2).
* Result (B, Q, C).

The MLP sees the offset x - v_t and the cell scaled by the latent grid size, as in LIIF
(normalised difference times w or h, i.e. twice the offset in input pixels). The 4 nearest codes
are those at pixels floor(px) and floor(px) + 1 of each axis, clamped to the grid (near the
border two of them coincide).

Efficient evaluation: :meth:`LIIF.encode` runs the encoder once per image and returns a
:class:`LIIFFeatures`; :meth:`LIIF.query` decodes any chunk of queries from it;
``funknn_fast.superres.inference.render_liif`` renders a whole image that way (the counterpart
of ``funknn_fast.superres.inference.render``).
``encode(image, project=True)`` additionally folds the unfolding and the code part of the
MLP's first (linear) layer into one 3 x 3 convolution evaluated once per latent code, so each
query only gathers 4 hidden vectors; the result is the same function (equal up to rounding).

Configurations: :data:`LIIF_EDSR` (64 channels, 16 residual blocks, MLP 580 -> 256 x 4 -> 3;
1,567,299 parameters) and :data:`LIIF_140K`, the reduced LIIF of the FunkNN paper, whose exact
configuration the paper does not give: here 32 encoder channels, 4 residual blocks and an MLP
292 -> 96 x 4 -> 3 (140,483 parameters).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CellLike = float | Sequence[float] | torch.Tensor

_AREA_EPS = 1e-9


@dataclass(frozen=True)
class LIIFConfig:
    """Sizes of a LIIF: encoder width and depth, MLP width and number of hidden layers."""

    channels: int = 3
    encoder_features: int = 64
    encoder_blocks: int = 16
    hidden: int = 256
    hidden_layers: int = 4

    def __post_init__(self) -> None:
        for name in ("channels", "encoder_features", "hidden", "hidden_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.encoder_blocks) < 0:
            raise ValueError(f"encoder_blocks must be >= 0, got {self.encoder_blocks}")

    @property
    def code_dim(self) -> int:
        """Length of an unfolded latent code (3 x 3 neighbours of ``encoder_features``)."""
        return 9 * self.encoder_features


LIIF_EDSR = LIIFConfig()
LIIF_140K = LIIFConfig(encoder_features=32, encoder_blocks=4, hidden=96)


class ResidualBlock(nn.Module):
    """EDSR residual block: conv 3 x 3, ReLU, conv 3 x 3, plus the input (no batch norm)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class EDSREncoder(nn.Module):
    """EDSR-baseline without its upsampler: (B, C, h, w) -> (B, features, h, w)."""

    def __init__(self, channels: int, features: int, blocks: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(channels, features, 3, padding=1)
        self.body = nn.Sequential(
            *[ResidualBlock(features) for _ in range(blocks)],
            nn.Conv2d(features, features, 3, padding=1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.head(image)
        return x + self.body(x)


@dataclass
class LIIFFeatures:
    """What :meth:`LIIF.encode` computes once per image, reused by every query chunk.

    ``codes`` is (B, h * w, D), row-major over the latent grid: the unfolded codes (D = 9 x
    encoder features) or, when ``projected``, their image under the code part of the MLP's
    first layer plus its bias (D = hidden width).
    """

    codes: torch.Tensor
    height: int
    width: int
    projected: bool


def cell_for_size(
    height: int,
    width: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The cell (2 / width, 2 / height) of an output grid of ``height`` x ``width`` pixels."""
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height} x {width}")
    return torch.tensor([2.0 / width, 2.0 / height], dtype=dtype, device=device)


def _cell_tensor(cell: CellLike | None, coords: torch.Tensor) -> torch.Tensor:
    """Broadcasts ``cell`` to (B, Q, 2) in the dtype and on the device of ``coords``."""
    if cell is None:
        raise ValueError(
            "cell is required: LIIF decodes the output pixel size; pass cell=(2 / W_out, 2 / H_out)"
            " (see funknn_fast.models.liif.cell_for_size)"
        )
    if not isinstance(cell, torch.Tensor):
        values = [float(cell)] * 2 if isinstance(cell, (int, float)) else [float(c) for c in cell]
        if len(values) != 2:
            raise ValueError(f"cell must be a float or a pair (cell_x, cell_y), got {cell!r}")
        cell = torch.tensor(values, dtype=coords.dtype, device=coords.device)
    cell = cell.to(dtype=coords.dtype, device=coords.device)
    batch, queries = coords.shape[:2]
    if cell.dim() == 0:
        cell = cell.expand(2)
    if cell.dim() == 1 and cell.shape[0] == 2:
        return cell.expand(batch, queries, 2)
    if cell.dim() == 2 and cell.shape == (batch, 2):
        return cell[:, None, :].expand(batch, queries, 2)
    if cell.dim() == 3 and cell.shape == (batch, queries, 2):
        return cell
    raise ValueError(
        f"cell must have shape (2,), (B, 2) or (B, Q, 2) with B={batch}, Q={queries}, "
        f"got {tuple(cell.shape)}"
    )


def ensemble_corners(
    coords: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 4 nearest latent codes of each query: flat indices, offsets and blend weights.

    Returns ``index`` (B, Q, 4) int64 into the row-major h x w grid, ``offset`` (B, Q, 4, 2)
    = (x - v_t) times (w, h) in normalised units, and ``weight`` (B, Q, 4), the area weights,
    summing to 1 over the 4 corners. Corner order: (x0, y0), (x1, y0), (x0, y1), (x1, y1).
    A non-finite coordinate gives NaN offsets and weights (hence a NaN prediction).
    """
    px = ((coords[..., 0] + 1) * width - 1) / 2
    py = ((coords[..., 1] + 1) * height - 1) / 2
    x0 = torch.floor(px.detach())
    y0 = torch.floor(py.detach())
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1).clamp_(0, width - 1)
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1).clamp_(0, height - 1)
    index = (ys * width + xs).nan_to_num_(0).long()  # non-finite coords: NaN offsets, no error
    offset = torch.stack([2 * (px[..., None] - xs), 2 * (py[..., None] - ys)], dim=-1)
    area = (offset[..., 0] * offset[..., 1]).abs() + _AREA_EPS
    weight = area.flip(-1) / area.sum(dim=-1, keepdim=True)
    return index, offset, weight


class LIIF(nn.Module):
    """LIIF with an EDSR-baseline encoder: ``model(coords, image, cell) -> (B, Q, C)``."""

    def __init__(self, config: LIIFConfig = LIIF_EDSR) -> None:
        super().__init__()
        self.config = config
        self.encoder = EDSREncoder(config.channels, config.encoder_features, config.encoder_blocks)
        widths = [config.code_dim + 4] + [config.hidden] * config.hidden_layers
        self.hidden_layers = nn.ModuleList(
            nn.Linear(n_in, n_out) for n_in, n_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.output_layer = nn.Linear(config.hidden, config.channels)

    def _check_image(self, image: torch.Tensor) -> None:
        if not isinstance(image, torch.Tensor) or image.dim() != 4:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must have shape (B, C, h, w), got {shape}")
        if image.shape[1] != self.config.channels:
            raise ValueError(
                f"image has {image.shape[1]} channels, this LIIF expects {self.config.channels}"
            )
        if not image.is_floating_point():
            raise TypeError(f"image must have a floating dtype, got {image.dtype}")

    def encode(self, image: torch.Tensor, *, project: bool = False) -> LIIFFeatures:
        """Runs the encoder once: (B, C, h, w) -> :class:`LIIFFeatures` for :meth:`query`.

        With ``project=True`` the codes are stored already multiplied by the code part of the
        first MLP layer (a 3 x 3 convolution of the encoder output, no unfolded copy is made).
        """
        self._check_image(image)
        features = self.encoder(image * 2 - 1)
        batch, channels, height, width = features.shape
        if project:
            first = self.hidden_layers[0]
            code_weight = first.weight[:, : self.config.code_dim]
            kernel = code_weight.reshape(-1, channels, 3, 3)
            codes = F.conv2d(features, kernel, first.bias, padding=1)
        else:
            codes = F.unfold(features, 3, padding=1).view(batch, -1, height, width)
        codes = codes.permute(0, 2, 3, 1).reshape(batch, height * width, -1)
        return LIIFFeatures(codes=codes, height=height, width=width, projected=project)

    def query(
        self, features: LIIFFeatures, coords: torch.Tensor, cell: CellLike | None
    ) -> torch.Tensor:
        """Decodes queries from encoded features: coords (B, Q, 2) -> (B, Q, C)."""
        if coords.dim() != 3 or coords.shape[-1] != 2:
            raise ValueError(f"coords must have shape (B, Q, 2), got {tuple(coords.shape)}")
        if coords.shape[0] != features.codes.shape[0]:
            raise ValueError(
                f"coords batch size {coords.shape[0]} does not match the encoded batch size "
                f"{features.codes.shape[0]}"
            )
        if coords.dtype != features.codes.dtype:
            raise TypeError(
                f"coords dtype {coords.dtype} must match the image dtype {features.codes.dtype}"
            )
        cell = _cell_tensor(cell, coords)
        batch, queries = coords.shape[:2]
        index, offset, weight = ensemble_corners(coords, features.height, features.width)
        dim = features.codes.shape[-1]
        gathered = torch.gather(
            features.codes, 1, index.reshape(batch, queries * 4, 1).expand(-1, -1, dim)
        ).view(batch, queries, 4, dim)
        scaled_cell = cell * cell.new_tensor([features.width, features.height])
        geometry = torch.cat([offset, scaled_cell[:, :, None, :].expand(-1, -1, 4, -1)], dim=-1)
        first = self.hidden_layers[0]
        if features.projected:
            hidden = gathered + geometry @ first.weight[:, self.config.code_dim :].T
        else:
            hidden = first(torch.cat([gathered, geometry], dim=-1))
        for layer in self.hidden_layers[1:]:
            hidden = layer(F.relu(hidden))
        prediction = self.output_layer(F.relu(hidden))
        blended = (prediction * weight[..., None]).sum(dim=2)
        return (blended + 1) / 2

    def forward(
        self, coords: torch.Tensor, image: torch.Tensor, cell: CellLike | None = None
    ) -> torch.Tensor:
        """One-shot evaluation: ``query(encode(image), coords, cell)``."""
        return self.query(self.encode(image), coords, cell)

    @torch.no_grad()
    def evaluate(
        self,
        coords: torch.Tensor,
        image: torch.Tensor,
        cell: CellLike | None,
        *,
        chunk_size: int = 16384,
        project: bool = True,
    ) -> torch.Tensor:
        """Inference in query chunks, encoding the image once: (B, Q, 2) -> (B, Q, C)."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        features = self.encode(image, project=project)
        cell = _cell_tensor(cell, coords)
        out = coords.new_empty(coords.shape[0], coords.shape[1], self.config.channels)
        for start in range(0, coords.shape[1], chunk_size):
            stop = start + chunk_size
            out[:, start:stop] = self.query(features, coords[:, start:stop], cell[:, start:stop])
        return out


def save_liif(model: LIIF, path: str | os.PathLike[str]) -> None:
    """Writes the weights and the configuration to a safetensors file (atomically)."""
    from funknn_fast.models.checkpoint import atomic_save_tensors

    metadata = {"liif_config": json.dumps(dataclasses.asdict(model.config))}
    atomic_save_tensors(dict(model.state_dict()), pathlib.Path(path), metadata)


def load_liif(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> LIIF:
    """Reads a LIIF written by :func:`save_liif`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "liif_config" not in metadata:
        raise ValueError(f"{path} holds no LIIF configuration (not written by save_liif)")
    model = LIIF(LIIFConfig(**json.loads(metadata["liif_config"])))
    model.load_state_dict(load_file(str(path), device=str(map_location)))
    return model
