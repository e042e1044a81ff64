"""Fused channels-last evaluation of FunkNN's per-patch CNN (same function, fewer passes).

``fused_cnn_patch_network(model, patches (N, C, p, p)) -> (N, C)`` computes exactly
``model.patch_network(patches)`` for ``variant="cnn"`` (see ``funknn_fast.models.funknn``),
centring of the patch on its centre sample and ``model.INPUT_SCALE`` included.

Each 2 x 2 'same' convolution (PyTorch pads one zero row at the bottom and one zero column at the
right) is one GEMM on channels-last data: with X (N, s, s, Cin) zero-padded to (N, s+1, s+1, Cin),
the four shifted views X[:, di:di+s, dj:dj+s] (di, dj in {0, 1}) are concatenated along channels
into (N s^2, 4 Cin) and multiplied by the (4 Cin, 64) matrix of the kernel taps; the bias rides in
``addmm``, the activation and the residual add run in place on the GEMM output. Max-pooling and
the flatten work on the channels-last layout (the first linear layer's columns are permuted from
NCHW (c, i, j) to (i, j, c) order). With autograd every op is differentiable (training can use
this path).

Without autograd (``torch.no_grad`` / ``inference_mode``) the queries go ``micro`` at a time
through direct convolutions on channels-last tensors (oneDNN on CPU; measured faster than the
im2col GEMM above), each on the input zero-padded at the bottom/right (= 'same'), with the
activation and the residual add in place; pooling and the linear layers follow the module path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_MICRO = 512  # queries per micro-chunk of the no-autograd path


def _conv_taps(conv: nn.Conv2d) -> torch.Tensor:
    """(Cout, Cin, 2, 2) kernel -> (4 Cin, Cout) matrix, rows ordered (di, dj, cin)."""
    weight = conv.weight
    return weight.permute(2, 3, 1, 0).reshape(4 * weight.shape[1], weight.shape[0])


def _conv_same_2x2(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """2x2 'same' conv of channels-last x (N, s, s, Cin) -> (N, s, s, Cout), bias included."""
    n, s, _, cin = x.shape
    padded = F.pad(x, (0, 0, 0, 1, 0, 1))
    columns = torch.cat(
        (padded[:, :s, :s], padded[:, :s, 1:], padded[:, 1:, :s], padded[:, 1:, 1:]), dim=3
    )
    out = torch.addmm(conv.bias, columns.reshape(n * s * s, 4 * cin), _conv_taps(conv))
    return out.view(n, s, s, -1)


def _activate(x: torch.Tensor, activation: nn.Module, inplace: bool) -> torch.Tensor:
    if isinstance(activation, nn.ReLU):
        return torch.relu_(x) if inplace else torch.relu(x)
    return activation(x)


def _max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """Channels-last (N, s, s, C) -> (N, s // 2, s // 2, C), floor mode like nn.MaxPool2d(2)."""
    pooled = F.max_pool2d(x.permute(0, 3, 1, 2), 2)
    return pooled.permute(0, 2, 3, 1)


def fused_cnn_patch_network(model: nn.Module, patches: torch.Tensor,
                            micro: int = DEFAULT_MICRO) -> torch.Tensor:
    """(N, C, p, p) patches -> (N, C): ``model.patch_network`` of a CNN FunkNN, fused path.

    Without autograd (``torch.no_grad``/``inference_mode``, or nothing requiring grad) the queries
    run ``micro`` at a time through channels-last direct convolutions with in-place activations
    and residual adds; otherwise every op is an autograd op.
    """
    if patches.dim() != 4:
        raise ValueError(f"patches must have shape (N, C, p, p), got {tuple(patches.shape)}")
    inplace = not (torch.is_grad_enabled() and any(p.requires_grad for p in model.parameters()))
    inplace = inplace and not (torch.is_grad_enabled() and patches.requires_grad)
    if patches.shape[0] == 0:
        return patches.new_zeros(0, model.linears[-1].out_features)
    if inplace:
        return _inference_network(model, patches, micro)
    c = patches.shape[-1] // 2
    x = (model.INPUT_SCALE * (patches - patches[:, :, c : c + 1, c : c + 1])).permute(0, 2, 3, 1)
    for k, (conv, act) in enumerate(zip(model.convs, model.conv_activations, strict=True)):
        y = _activate(_conv_same_2x2(x, conv), act, inplace)
        if k in model.RESIDUAL_CONVS:
            y = y.add_(x) if inplace else y + x
        x = y
        if k in model.POOL_AFTER_CONVS:
            x = _max_pool_2x2(x)
    n, s, _, channels = x.shape
    x = x.reshape(n, s * s * channels)
    first = model.linears[0]
    weight = first.weight.view(-1, channels, s, s).permute(0, 2, 3, 1).reshape(-1, s * s * channels)
    x = torch.addmm(first.bias, x, weight.t())
    for k in range(1, len(model.linears)):
        x = _activate(x, model.linear_activations[k - 1], inplace)
        linear = model.linears[k]
        x = torch.addmm(linear.bias, x, linear.weight.t())
    return x



def _activate_inplace(x: torch.Tensor, activation: nn.Module) -> torch.Tensor:
    if isinstance(activation, nn.ReLU):
        return x.relu_()
    return x.mul_(activation.w0).sin_()


def _inference_network(model: nn.Module, patches: torch.Tensor, micro: int) -> torch.Tensor:
    """No-autograd path: micro-chunks of queries, channels-last direct convolutions (oneDNN on
    CPU), bias in the convolution, activation and residual add in place."""
    total, _, side, _ = patches.shape
    centre = side // 2
    channels_last = torch.channels_last
    weights = [conv.weight.contiguous(memory_format=channels_last) for conv in model.convs]
    linears = [lin.weight.t().contiguous() for lin in model.linears]
    out = torch.empty(total, model.linears[-1].out_features, dtype=patches.dtype,
                      device=patches.device)
    for start in range(0, total, max(1, micro)):
        chunk = patches[start : start + micro]
        x = chunk - chunk[:, :, centre : centre + 1, centre : centre + 1]
        x = x.mul_(model.INPUT_SCALE).contiguous(memory_format=channels_last)
        for k, (conv, act) in enumerate(zip(model.convs, model.conv_activations, strict=True)):
            pooled_next = k in model.POOL_AFTER_CONVS and k not in model.RESIDUAL_CONVS
            if pooled_next and x.shape[-1] % 2:
                # the pool drops the last row/column: a 'valid' conv gives exactly the rest
                y = F.conv2d(x, weights[k], conv.bias)
            else:
                y = F.conv2d(F.pad(x, (0, 1, 0, 1)), weights[k], conv.bias)
            y = _activate_inplace(y, act)
            if k in model.RESIDUAL_CONVS:
                y.add_(x)
            x = F.max_pool2d(y, 2) if k in model.POOL_AFTER_CONVS else y
        x = x.flatten(1)
        for k, linear in enumerate(model.linears):
            x = torch.addmm(linear.bias, x, linears[k])
            if k < len(model.linear_activations):
                x = _activate_inplace(x, model.linear_activations[k])
        out[start : start + chunk.shape[0]] = x
    return out
