"""Autograd glue shared by the ``funknn_fast`` custom ops (C++, CUDA and Triton backends).

The forward ops take ``(image, coords, step, *attrs)`` (image (B, C, H, W), coords (B, Q, 2),
step (2,); attrs: the int arguments such as patch_size, padding code, jet mode) and have a
backward op ``backward_op(grad, image, coords, step, *attrs, output_mask)`` returning the
gradients w.r.t. (image, coords, step); ``output_mask`` (3 bools) says which are needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def masked_grads(grads: Sequence, mask: Sequence[bool], trailing: int) -> tuple:
    """``grads`` with None where ``mask`` is False, then ``trailing`` Nones (non-tensor inputs)."""
    return tuple(g if m else None for g, m in zip(grads, mask, strict=True)) + (None,) * trailing


def save_tensor_inputs(ctx, inputs, output) -> None:
    """setup_context of a forward op: saves (image, coords, step), keeps the other inputs."""
    image, coords, step, *attrs = inputs
    ctx.save_for_backward(image, coords, step)
    ctx.attrs = tuple(attrs)


def no_setup(ctx, inputs, output) -> None:
    """setup_context of an op whose backward only raises."""


def first_order_backward(backward_op: Callable) -> Callable:
    """The autograd backward (with ``save_tensor_inputs`` as setup) of a forward op whose
    gradients come from ``backward_op`` (module docstring)."""

    def backward(ctx, grad):
        image, coords, step = ctx.saved_tensors
        mask = list(ctx.needs_input_grad[:3])
        grads = backward_op(grad, image, coords, step, *ctx.attrs, mask)
        return masked_grads(grads, mask, len(ctx.attrs))

    return backward


def save_backward_inputs(ctx, inputs, output) -> None:
    """setup_context of a backward op ``(grad, image, coords, step, *attrs, output_mask)`` that
    has a double-backward op: saves the four tensors, keeps the attrs; None stands for zero
    incoming gradients."""
    grad, image, coords, step, *attrs, _ = inputs
    ctx.save_for_backward(grad, image, coords, step)
    ctx.attrs = tuple(attrs)
    ctx.set_materialize_grads(False)


def second_order_backward(double_backward_op: Callable) -> Callable:
    """The autograd backward (with ``save_backward_inputs`` as setup) of a backward op whose
    gradients come from ``double_backward_op(grad, image, coords, step, gg_image, gg_coords,
    gg_step, *attrs, output_mask)`` -> gradients w.r.t. (grad, image, coords, step)."""

    def backward(ctx, gg_image, gg_coords, gg_step):
        grad, image, coords, step = ctx.saved_tensors
        mask = list(ctx.needs_input_grad[:4])
        trailing = len(ctx.attrs) + 1  # the attrs and output_mask
        if not any(mask) or (gg_image is None and gg_coords is None and gg_step is None):
            return (None,) * (4 + trailing)
        grads = double_backward_op(
            grad, image, coords, step, gg_image, gg_coords, gg_step, *ctx.attrs, mask
        )
        return masked_grads(grads, mask, trailing)

    return backward
