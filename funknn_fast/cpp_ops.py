"""Autograd and fake-tensor registration of the compiled ``funknn_fast::patch_sample`` ops.

The forward op's backward is the op ``patch_sample_backward``; its own backward is the op
``patch_sample_double_backward``, so first and second derivatives (Hessians in the coordinates
included) are exact and computed by the compiled kernels. Third derivatives are not provided by
the compiled kernels: use ``backend="torch"`` for them. Shapes follow ``funknn_fast.patch_sample``.
"""

from __future__ import annotations

import torch

from funknn_fast._extension import extension_loaded

OPS = torch.ops.funknn_fast if extension_loaded() else None


def _contiguous_empty(like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(like.shape, dtype=dtype or like.dtype, device=like.device)


def _fake_forward(image, coords, step, patch_size, padding):
    batch, channels = image.shape[:2]
    return image.new_empty((batch, coords.shape[1], channels, patch_size, patch_size))


def _fake_backward(grad_output, image, coords, step, patch_size, padding, output_mask):
    return _contiguous_empty(image), _contiguous_empty(coords), _contiguous_empty(step)


def _fake_double_backward(
    grad_output, image, coords, step, gg_image, gg_coords, gg_step, patch_size, padding, mask
):
    return (
        _contiguous_empty(grad_output, image.dtype),
        _contiguous_empty(image),
        _contiguous_empty(coords),
        _contiguous_empty(step),
    )


def _setup_forward(ctx, inputs, output):
    image, coords, step, patch_size, padding = inputs
    ctx.save_for_backward(image, coords, step)
    ctx.patch_size, ctx.padding = patch_size, padding


def _forward_backward(ctx, grad_output):
    image, coords, step = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:3])
    grads = OPS.patch_sample_backward(
        grad_output, image, coords, step, ctx.patch_size, ctx.padding, mask
    )
    return tuple(g if m else None for g, m in zip(grads, mask)) + (None, None)


def _setup_backward(ctx, inputs, output):
    grad_output, image, coords, step, patch_size, padding, _ = inputs
    ctx.save_for_backward(grad_output, image, coords, step)
    ctx.patch_size, ctx.padding = patch_size, padding
    ctx.set_materialize_grads(False)


def _backward_backward(ctx, gg_image, gg_coords, gg_step):
    grad_output, image, coords, step = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:4])
    if not any(mask) or (gg_image is None and gg_coords is None and gg_step is None):
        return (None,) * 7
    grads = OPS.patch_sample_double_backward(
        grad_output,
        image,
        coords,
        step,
        gg_image,
        gg_coords,
        gg_step,
        ctx.patch_size,
        ctx.padding,
        mask,
    )
    return tuple(g if m else None for g, m in zip(grads, mask)) + (None, None, None)


def _setup_double_backward(ctx, inputs, output):
    pass


def _third_order(ctx, *grads):
    raise RuntimeError(
        "patch_sample: the compiled backends provide exact first and second derivatives; "
        "third-order derivatives need backend='torch'"
    )


if OPS is not None:
    torch.library.register_fake("funknn_fast::patch_sample")(_fake_forward)
    torch.library.register_fake("funknn_fast::patch_sample_backward")(_fake_backward)
    torch.library.register_fake("funknn_fast::patch_sample_double_backward")(_fake_double_backward)
    torch.library.register_autograd(
        "funknn_fast::patch_sample", _forward_backward, setup_context=_setup_forward
    )
    torch.library.register_autograd(
        "funknn_fast::patch_sample_backward", _backward_backward, setup_context=_setup_backward
    )
    torch.library.register_autograd(
        "funknn_fast::patch_sample_double_backward",
        _third_order,
        setup_context=_setup_double_backward,
    )
