"""``patch_sample``: batched Keys-cubic patch gathering, FunkNN's spatial transformer.

Contract (every backend, tested against an independent float64 evaluation):

* ``image`` (B, C, H, W), floating point, H, W >= 1 (non-square allowed).
* ``coords`` (B, Q, 2): (x, y) in the normalised convention of ``F.grid_sample`` with
  ``align_corners=False``: pixel position px = ((x + 1) W - 1) / 2, py = ((y + 1) H - 1) / 2
  (pixel k is centred at k). Values outside [-1, 1] are valid.
* ``step``: (step_x, step_y) in input pixels, a float, a pair or a tensor of shape (2,)
  (a 0-d tensor applies to both axes). Python numbers must be finite; tensor values are not
  read on the host (no device synchronisation: a non-finite step gives NaN samples).
* float16/bfloat16 images take float32 coords and step; 16-bit coords (and step) are converted
  to float32 with a warning (16-bit coordinates resolve only about 1/512 of the image).
* Result (B, Q, C, p, p), out[b, q, c, i, j] = I_c(px + (j - (p-1)/2) step_x,
  py + (i - (p-1)/2) step_y), where I_c is Keys cubic convolution (a = -0.5) over the 4 x 4 taps
  floor(.) - 1 .. floor(.) + 2 of each axis.
* ``padding``: "reflection" (half-sample symmetric: i < 0 -> -i - 1, i >= W -> 2W - 1 - i,
  period 2W), "border" (clamped taps) or "zeros" (taps outside count as 0).
* Differentiable in ``image``, ``coords`` and ``step`` to second order on every backend (any
  order on "torch").
* Non-finite coordinates give NaN samples (and NaN gradients); nothing is read out of bounds.
  Positions beyond 2^40 pixels are clamped there. Q = 0 gives an empty (B, 0, C, p, p) result.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import torch

from funknn_fast.ops import cpp_ops
from funknn_fast.ops.backends import LOW_PRECISION, select_backend
from funknn_fast.ops.padding import padding_code
from funknn_fast.ops.reference import patch_sample_reference

StepLike = float | Sequence[float] | torch.Tensor


def _check_image_and_coords(image: torch.Tensor, coords: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if not isinstance(coords, torch.Tensor):
        raise TypeError(f"coords must be a torch.Tensor, got {type(coords).__name__}")
    if image.dim() != 4:
        raise ValueError(f"image must have shape (B, C, H, W), got {tuple(image.shape)}")
    if coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(f"coords must have shape (B, Q, 2), got {tuple(coords.shape)}")
    if coords.shape[0] != image.shape[0]:
        raise ValueError(
            f"coords batch size {coords.shape[0]} does not match image batch size {image.shape[0]}"
        )
    if image.shape[2] < 1 or image.shape[3] < 1:
        raise ValueError(f"image height and width must be >= 1, got {tuple(image.shape[2:])}")
    if not image.is_floating_point():
        raise TypeError(f"image must have a floating dtype, got {image.dtype}")
    if not coords.is_floating_point():
        raise TypeError(f"coords must have a floating dtype, got {coords.dtype}")
    if coords.device != image.device:
        raise ValueError(
            f"coords is on {coords.device} but image is on {image.device}: move both to one device"
        )
    allowed = {image.dtype} | ({torch.float32} if image.dtype in LOW_PRECISION else set())
    if coords.dtype not in allowed:
        raise TypeError(
            f"coords dtype {coords.dtype} must match image dtype {image.dtype}"
            + (" (or be float32)" if image.dtype in LOW_PRECISION else "")
        )


def _float32_positions(coords: torch.Tensor, step: StepLike) -> tuple[torch.Tensor, StepLike]:
    """16-bit coords and step upcast to float32, with a warning: 16-bit coordinates resolve only
    about 1/512 of the image, so the kernels compute positions and weights in float32."""
    if coords.dtype not in LOW_PRECISION:
        return coords, step
    warnings.warn(
        f"patch_sample: {coords.dtype} coordinates resolve only about 1/512 of the image; they are "
        "converted to float32 (pass float32 coordinates with 16-bit images)",
        UserWarning,
        stacklevel=3,
    )
    if isinstance(step, torch.Tensor) and step.dtype in LOW_PRECISION:
        step = step.float()
    return coords.float(), step


def _as_step_tensor(step: StepLike, image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    if isinstance(step, torch.Tensor):
        if not step.is_floating_point():
            raise TypeError(f"step must have a floating dtype, got {step.dtype}")
        if step.device != image.device:
            raise ValueError(f"step is on {step.device} but image is on {image.device}")
        if step.dim() == 0:
            step = step.expand(2)
        if step.shape != (2,):
            raise ValueError(
                f"step must have shape (2,) = (step_x, step_y), got {tuple(step.shape)}"
            )
        if step.dtype != coords.dtype:
            raise TypeError(f"step dtype {step.dtype} must match coords dtype {coords.dtype}")
        # No value check: reading a device tensor would synchronise with the host (every call
        # of a training step or render chunk); a non-finite step gives NaN samples like a
        # non-finite coordinate.
        return step
    if isinstance(step, numbers.Real) and not isinstance(step, bool):
        values = [float(step), float(step)]
    elif (
        isinstance(step, Sequence)
        and len(step) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in step)
    ):
        values = [float(v) for v in step]
    else:
        raise TypeError(f"step must be a float, a pair of floats or a tensor (2,), got {step!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"step must be finite, got {values}")
    return torch.tensor(values, dtype=coords.dtype, device=image.device)


def patch_sample(
    image: torch.Tensor,
    coords: torch.Tensor,
    step: StepLike,
    patch_size: int = 9,
    padding: str = "reflection",
    backend: str = "auto",
) -> torch.Tensor:
    """Resamples a p x p patch of ``image`` around every query coordinate (see module docstring).

    Args:
        image: (B, C, H, W) floating tensor.
        coords: (B, Q, 2) query coordinates (x, y), grid_sample convention, align_corners=False.
        step: patch spacing (step_x, step_y) in input pixels.
        patch_size: p >= 1, the patch is p x p, centred on the query.
        padding: "reflection", "border" or "zeros".
        backend: "auto", "torch", "cpu", "cuda" or "triton" (see ``funknn_fast.backends``).

    Returns:
        (B, Q, C, p, p) tensor of image's dtype.
    """
    _check_image_and_coords(image, coords)
    if isinstance(patch_size, bool) or not isinstance(patch_size, numbers.Integral):
        raise TypeError(f"patch_size must be an int, got {patch_size!r}")
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    patch_size = int(patch_size)
    code = padding_code(padding)
    coords, step = _float32_positions(coords, step)
    step_tensor = _as_step_tensor(step, image, coords)
    name = select_backend(backend, image)
    if name == "cpu":
        return cpp_ops.OPS.patch_sample(image, coords, step_tensor, patch_size, code)
    if name == "cuda":
        return cpp_ops.OPS.patch_sample(image, coords, step_tensor, patch_size, code)
    if name == "triton":
        from funknn_fast.kernels.patch_sample_triton import triton_patch_sample

        return triton_patch_sample(image, coords, step_tensor, patch_size, padding)
    # 16-bit images: positions and weights in float32 (the coordinates' dtype), result rounded.
    return patch_sample_reference(
        image.to(coords.dtype), coords, step_tensor, patch_size, padding
    ).to(image.dtype)
