"""``patch_sample_jets``: a patch and its derivatives in the query coordinate, in one pass.

Every sample of a FunkNN patch moves with its query (the patch is centred on the query), so the
derivative of sample (i, j) in the query coordinate is the derivative of the Keys-cubic
interpolant at that sample's position. This op returns those derivatives for all samples at
once; ``funknn_fast.derivatives`` pushes them through the network in forward mode.

Contract (same conventions as ``funknn_fast.patch_sample``):

* ``image`` (B, C, H, W), ``coords`` (B, Q, 2) = (x, y) in the normalised ``grid_sample``
  convention (align_corners=False), ``step`` (step_x, step_y) in input pixels.
* Result ``jets`` of shape (K, B, Q, C, p, p); component k of the leading axis is
  ``derivatives="gradient"``  (K = 3): value, d/dx, d/dy;
  ``derivatives="laplacian"`` (K = 4): value, d/dx, d/dy, d2/dx2 + d2/dy2;
  ``derivatives="hessian"``   (K = 6): value, d/dx, d/dy, d2/dx2, d2/dxdy, d2/dy2;
  all derivatives are taken w.r.t. the *normalised* coordinates (x, y), i.e. the pixel
  derivatives times W / 2 (x) and H / 2 (y). ``jets[0]`` equals ``patch_sample(...)``.
* Second derivatives of the C1 Keys interpolant exist everywhere except on the knots (integer
  pixel positions), where the one-sided value of the cell to the right (above) is returned, as
  autograd through the reference does.
* Differentiable to first order in ``image``, ``coords`` and ``step`` on every backend (the
  derivatives in ``coords`` and ``step`` use the third derivatives of the Keys weights, constant
  on each cell); to any order on ``backend="torch"``.
* Backends (``backend=``):
  "torch"  plain PyTorch (``patch_sample_jets_reference``), any device and dtype, any order;
  "cpu"    C++ kernels (csrc/patch_jets.cpp), CPU float32/float64 tensors;
  "triton" fused Triton kernels (kernels/patch_jets_triton.py, ops
           ``funknn_fast::triton_patch_sample_jets*``), CUDA tensors, or CPU tensors when
           TRITON_INTERPRET=1 was set before import (how CI checks them); float16/bfloat16
           images with float32 coords accumulate in float32;
  "cuda"   CUDA C++ kernels (the CUDA key of ``funknn_fast::patch_sample_jets``,
           csrc/cuda/patch_jets_cuda.cu), CUDA tensors, when the extension was built with them.
  "auto" (or the ``FUNKNN_BACKEND`` environment variable, as for ``patch_sample``) takes, on
  CUDA tensors, "triton", else "cuda", else "torch"; on CPU tensors "cpu" for float32/float64,
  else "torch". An explicitly named backend that cannot run the call raises
  ``BackendUnavailableError``.
"""

from __future__ import annotations

import numbers

import torch

from funknn_fast.ops import cpp_ops, op_autograd
from funknn_fast.ops.backends import BackendUnavailableError, select_backend
from funknn_fast.ops.padding import PADDING_CODES, padding_code
from funknn_fast.ops.patch_sample import (
    StepLike,
    _as_step_tensor,
    _check_image_and_coords,
    _float32_positions,
)
from funknn_fast.ops.reference import MAX_POSITION, keys_weights, pad_indices, patch_offsets

JET_MODES: dict[str, int] = {"gradient": 0, "laplacian": 1, "hessian": 2}
JET_COMPONENTS: dict[str, tuple[str, ...]] = {
    "gradient": ("value", "x", "y"),
    "laplacian": ("value", "x", "y", "laplacian"),
    "hessian": ("value", "x", "y", "xx", "xy", "yy"),
}
_MODE_NAMES = {code: name for name, code in JET_MODES.items()}


def jet_mode(derivatives: str) -> int:
    """Integer mode of the compiled op for ``derivatives``; raises ValueError naming the choices."""
    try:
        return JET_MODES[derivatives]
    except (KeyError, TypeError):
        raise ValueError(
            f"derivatives must be one of {sorted(JET_MODES)}, got {derivatives!r}"
        ) from None


# ---------------------------------------------------------------- plain-torch reference


def keys_weights_d1(t: torch.Tensor) -> torch.Tensor:
    """d/dt of the Keys weights; shape (..., 4)."""
    t2 = t * t
    return 0.5 * torch.stack(
        (-3 * t2 + 4 * t - 1, 9 * t2 - 10 * t, -9 * t2 + 8 * t + 1, 3 * t2 - 2 * t), dim=-1
    )


def keys_weights_d2(t: torch.Tensor) -> torch.Tensor:
    """d2/dt2 of the Keys weights; shape (..., 4)."""
    return torch.stack((-3 * t + 2, 9 * t - 5, -9 * t + 4, 3 * t - 1), dim=-1)


def _axis_jet_taps(
    position: torch.Tensor, size: int, padding: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tap indices, validity and weights with 1st / 2nd derivatives (..., 4) of positions (...)."""
    finite = torch.isfinite(position)
    clamped = position.clamp(-MAX_POSITION, MAX_POSITION)
    inside = (position.abs() <= MAX_POSITION).to(position.dtype).unsqueeze(-1)
    base = torch.where(finite, torch.floor(clamped.detach()), torch.zeros_like(clamped))
    t = torch.where(finite, clamped - base, torch.full_like(clamped, float("nan")))
    first = base.to(torch.int64) - 1
    index, valid = pad_indices(
        first.unsqueeze(-1) + torch.arange(4, device=position.device), size, padding
    )
    return index, valid, keys_weights(t), keys_weights_d1(t) * inside, keys_weights_d2(t) * inside


def patch_sample_jets_reference(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int, padding: str,
    derivatives: str = "hessian",
) -> torch.Tensor:
    """Plain-PyTorch jets (K, B, Q, C, p, p); differentiable to any order. Inputs validated."""
    if padding not in PADDING_CODES:
        raise ValueError(f"padding must be one of {sorted(PADDING_CODES)}, got {padding!r}")
    mode = jet_mode(derivatives)
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    offsets = patch_offsets(patch_size, coords.dtype, coords.device)
    px = ((coords[..., 0] + 1) * width - 1) / 2
    py = ((coords[..., 1] + 1) * height - 1) / 2
    ix, vx, wx, dwx, d2wx = _axis_jet_taps(px.unsqueeze(-1) + offsets * step[0], width, padding)
    iy, vy, wy, dwy, d2wy = _axis_jet_taps(py.unsqueeze(-1) + offsets * step[1], height, padding)
    flat = iy[:, :, :, :, None, None] * width + ix[:, :, None, None, :, :]
    valid = vy[:, :, :, :, None, None] & vx[:, :, None, None, :, :]
    taps = patch_size * 4 * patch_size * 4
    values = torch.gather(
        image.reshape(batch, 1, channels, height * width).expand(batch, queries, channels, -1),
        3,
        flat.reshape(batch, queries, 1, taps).expand(batch, queries, channels, taps),
    ).reshape(batch, queries, channels, patch_size, 4, patch_size, 4)
    values = values * valid[:, :, None].to(values.dtype)

    def contract(weights_y: torch.Tensor, weights_x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bqil,bqjk,bqciljk->bqcij", weights_y, weights_x, values)

    scale_x, scale_y = width / 2, height / 2
    parts = [contract(wy, wx), scale_x * contract(wy, dwx), scale_y * contract(dwy, wx)]
    if mode == 1:
        parts.append(scale_x**2 * contract(wy, d2wx) + scale_y**2 * contract(d2wy, wx))
    elif mode == 2:
        parts += [
            scale_x**2 * contract(wy, d2wx),
            scale_x * scale_y * contract(dwy, dwx),
            scale_y**2 * contract(d2wy, wx),
        ]
    return torch.stack(parts)


# ---------------------------------------------------------------- compiled op registration

OPS = cpp_ops.OPS


def _fake_jets(image, coords, step, patch_size, padding, mode):
    components = len(JET_COMPONENTS[_MODE_NAMES[mode]])
    batch, channels = image.shape[:2]
    return image.new_empty((components, batch, coords.shape[1], channels, patch_size, patch_size))


def _fake_jets_backward(grad_jets, image, coords, step, patch_size, padding, mode, output_mask):
    return (
        torch.empty(image.shape, dtype=image.dtype, device=image.device),
        torch.empty(coords.shape, dtype=coords.dtype, device=coords.device),
        torch.empty(step.shape, dtype=step.dtype, device=step.device),
    )


def _jets_second_order(ctx, *grads):
    raise RuntimeError(
        "patch_sample_jets: the compiled backend is differentiable to first order; "
        "use backend='torch' for higher-order derivatives of the jets"
    )


if OPS is not None:
    torch.library.register_fake("funknn_fast::patch_sample_jets")(_fake_jets)
    torch.library.register_fake("funknn_fast::patch_sample_jets_backward")(_fake_jets_backward)
    torch.library.register_autograd(
        "funknn_fast::patch_sample_jets",
        op_autograd.first_order_backward(OPS.patch_sample_jets_backward),
        setup_context=op_autograd.save_tensor_inputs,
    )
    torch.library.register_autograd(
        "funknn_fast::patch_sample_jets_backward",
        _jets_second_order,
        setup_context=op_autograd.no_setup,
    )


# ---------------------------------------------------------------- backend choice


def has_cuda_jets_kernels() -> bool:
    """True when the compiled extension registers CUDA kernels of ``patch_sample_jets``."""
    return OPS is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
        "funknn_fast::patch_sample_jets", "CUDA"
    )


def _select_jets_backend(backend: str, image: torch.Tensor) -> str:
    """The backend of one call (module docstring): ``patch_sample``'s choice, except that "cuda"
    also needs the jets CUDA kernels ("auto" then falls back to "torch")."""
    try:
        name = select_backend(backend, image)
    except BackendUnavailableError as error:
        raise BackendUnavailableError(f"patch_sample_jets: {error}") from None
    if name == "cuda" and not has_cuda_jets_kernels():
        if backend == "auto":
            return "torch"
        raise BackendUnavailableError(
            "patch_sample_jets: backend 'cuda' is unavailable: the compiled extension has no "
            "CUDA jets kernels (csrc/cuda/patch_jets_cuda.cu was not built); use 'triton', "
            "'torch' or 'auto'"
        )
    return name


# ---------------------------------------------------------------- public entry point


def patch_sample_jets(
    image: torch.Tensor,
    coords: torch.Tensor,
    step: StepLike,
    patch_size: int = 9,
    padding: str = "reflection",
    derivatives: str = "hessian",
    backend: str = "auto",
) -> torch.Tensor:
    """Patches and their query-coordinate derivatives, (K, B, Q, C, p, p) (module docstring).

    Args:
        image: (B, C, H, W) floating tensor.
        coords: (B, Q, 2) query coordinates (x, y), grid_sample convention, align_corners=False.
        step: patch spacing (step_x, step_y) in input pixels.
        patch_size: p >= 1.
        padding: "reflection", "border" or "zeros".
        derivatives: "gradient" (K = 3), "laplacian" (K = 4) or "hessian" (K = 6).
        backend: "auto", "torch", "cpu", "triton" or "cuda" (module docstring).

    Returns:
        Tensor (K, B, Q, C, p, p) of image's dtype; derivatives in normalised coordinates.
    """
    _check_image_and_coords(image, coords)
    if isinstance(patch_size, bool) or not isinstance(patch_size, numbers.Integral):
        raise TypeError(f"patch_size must be an int, got {patch_size!r}")
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch_size}")
    patch_size = int(patch_size)
    code = padding_code(padding)
    mode = jet_mode(derivatives)
    coords, step = _float32_positions(coords, step)
    step_tensor = _as_step_tensor(step, image, coords)
    name = _select_jets_backend(backend, image)
    if name in ("cpu", "cuda"):
        return OPS.patch_sample_jets(image, coords, step_tensor, patch_size, code, mode)
    if name == "triton":
        from funknn_fast.kernels.patch_jets_triton import forward_op

        return forward_op(image, coords, step_tensor, patch_size, code, mode)
    # 16-bit images: positions and weights in float32 (the coordinates' dtype), result rounded.
    return patch_sample_jets_reference(
        image.to(coords.dtype), coords, step_tensor, patch_size, padding, derivatives
    ).to(image.dtype)
