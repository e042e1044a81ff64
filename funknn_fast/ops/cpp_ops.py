"""Autograd and fake-tensor registration of the compiled ``funknn_fast::patch_sample`` ops.

The forward op's backward is the op ``patch_sample_backward``; its own backward is the op
``patch_sample_double_backward``, so first and second derivatives (Hessians in the coordinates
included) are exact and computed by the compiled kernels. Third derivatives are not provided by
the compiled kernels: use ``backend="torch"`` for them. Shapes follow ``funknn_fast.patch_sample``.
"""

from __future__ import annotations

import torch

from funknn_fast.ops import op_autograd
from funknn_fast.ops._extension import extension_loaded

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
        "funknn_fast::patch_sample",
        op_autograd.first_order_backward(OPS.patch_sample_backward),
        setup_context=op_autograd.save_tensor_inputs,
    )
    torch.library.register_autograd(
        "funknn_fast::patch_sample_backward",
        op_autograd.second_order_backward(OPS.patch_sample_double_backward),
        setup_context=op_autograd.save_backward_inputs,
    )
    torch.library.register_autograd(
        "funknn_fast::patch_sample_double_backward",
        _third_order,
        setup_context=op_autograd.no_setup,
    )
