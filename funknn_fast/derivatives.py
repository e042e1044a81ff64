"""Exact spatial derivatives of a FunkNN continuous image: value, gradient, Hessian, Laplacian.

``funknn_derivatives(model, coords (B, Q, 2), image (B, C, h, w), order="laplacian")`` returns a
:class:`Derivatives` with

* ``value``     (B, Q, C)        the model output u(x, y) (equal to ``model(coords, image)``);
* ``gradient``  (B, Q, C, 2)     (du/dx, du/dy);
* ``hessian``   (B, Q, C, 2, 2)  [[u_xx, u_xy], [u_xy, u_yy]] (``order="hessian"`` only);
* ``laplacian`` (B, Q, C)        u_xx + u_yy (``order="laplacian"`` or ``"hessian"``).

Units. By default derivatives are taken w.r.t. the normalised query coordinates (x, y) of
``funknn_fast.patch_sample`` (``grid_sample`` convention, align_corners=False: the image spans
[-1, 1] on both axes). With ``output_size=(H, W)`` they are per *output pixel* of an H x W
rendering of the continuous image (one output pixel is 2 / W in x and 2 / H in y), i.e.
d/dx_pixel = (2 / W) d/dx, d2/dx_pixel2 = (2 / W)^2 d2/dx2, and so on; the Laplacian is then
(2 / W)^2 u_xx + (2 / H)^2 u_yy.

Method (forward mode on patch jets). ``funknn_fast.ops.jets.patch_sample_jets`` returns every patch
sample together with its derivatives in the query coordinate (the whole patch moves with the
query). The per-patch network is then evaluated on these jets in forward mode, all components
stacked along the batch dimension so that each layer is one large GEMM:

* affine layers (2 x 2 'same' convolutions, linear layers) act on every component, the bias on
  the value only;
* ReLU multiplies every component by the mask of the value; max-pooling gathers every component
  at the value's argmax (ties resolved like ``F.max_pool2d``); for such networks the network's own
  second derivative vanishes almost everywhere, so the second-order components propagate
  linearly: value + gradient + Laplacian costs four passes, the Hessian six. Without autograd,
  ReLU networks run the value pass first (recording masks and argmaxes) and then one component
  at a time, so only one component's activations are alive at once;
* sin(w0 z) includes its second-order terms:
  (sin(w0 z))'' = w0 cos(w0 z) z'' - w0^2 sin(w0 z) z' z';
* the network's input INPUT_SCALE * (patch - centre sample) and the residual add of the centre
  sample (the plain Keys-cubic interpolant) are linear: applied componentwise.

The result is exact (equal to autograd double backward through the reference backend to float64
rounding, except on the measure-zero set where ReLU/max-pool or the Keys knots are not smooth) and
differentiable w.r.t. the model parameters (the patch spacing included) and the image, so losses
on gradients or Laplacians can be trained or inverted through it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import nn

from funknn_fast.models.funknn import INPUT_SCALE, FunkNN, Sine
from funknn_fast.ops.jets import JET_COMPONENTS, patch_sample_jets

ORDERS = ("gradient", "laplacian", "hessian")
DEFAULT_CHUNK = 1024


@dataclass
class Derivatives:
    """Value (B, Q, C), gradient (B, Q, C, 2), Hessian (B, Q, C, 2, 2) and Laplacian (B, Q, C).

    ``hessian`` is None unless ``order="hessian"``; ``laplacian`` is None for
    ``order="gradient"``. Units as requested from :func:`funknn_derivatives`.
    """

    value: torch.Tensor
    gradient: torch.Tensor
    hessian: torch.Tensor | None = None
    laplacian: torch.Tensor | None = None


# ---------------------------------------------------------------- layers on stacked jets
#
# A jet tensor stacks K components along the leading (batch) dimension: (K * N, ...), component 0
# the value, 1 and 2 the x and y derivatives, then either the Laplacian (K = 4) or xx, xy, yy
# (K = 6).


def _activation_jets(x: torch.Tensor, activation: nn.Module, components: int,
                     inplace: bool) -> torch.Tensor:
    """Elementwise activation of a stacked jet (K N, ...)."""
    stacked = x.view(components, -1, *x.shape[1:])
    value = stacked[0]
    if isinstance(activation, nn.ReLU):
        mask = (value > 0).to(x.dtype)
        if inplace:
            stacked.mul_(mask)
            return x
        return (stacked * mask).view_as(x)
    if isinstance(activation, Sine):
        w0 = activation.w0
        phase = w0 * value
        sin, cos = torch.sin(phase), torch.cos(phase)
        slope, curvature = w0 * cos, -(w0 * w0) * sin
        dx, dy = stacked[1], stacked[2]
        parts = [sin, slope * dx, slope * dy]
        if components == 4:
            parts.append(slope * stacked[3] + curvature * (dx * dx + dy * dy))
        elif components == 6:
            parts += [
                slope * stacked[3] + curvature * dx * dx,
                slope * stacked[4] + curvature * dx * dy,
                slope * stacked[5] + curvature * dy * dy,
            ]
        return torch.cat(parts)
    raise TypeError(f"no forward-mode rule for activation {type(activation).__name__}")


def _affine_jets(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor,
                 value_rows: int) -> torch.Tensor:
    """x (K N', F) @ weight_t (F, F') with the bias added to the first ``value_rows`` rows."""
    out = x @ weight_t
    if torch.is_grad_enabled() and (bias.requires_grad or out.requires_grad):
        return torch.cat((out[:value_rows] + bias, out[value_rows:]))
    out[:value_rows] += bias
    return out


def _conv_same_2x2_jets_inplace(x: torch.Tensor, conv: nn.Conv2d,
                                value_batch: int) -> torch.Tensor:
    """No-autograd variant of :func:`_conv_same_2x2_jets`: one GEMM per kernel tap, each tap's
    product written into one reused buffer and added in place to the shifted output (three
    activation-sized buffers alive: input, output and tap, instead of the six of the im2col
    form)."""
    n, s, _, cin = x.shape
    weight = conv.weight
    flat = x.reshape(n * s * s, cin)
    out = (flat @ weight[:, :, 0, 0].t()).view(n, s, s, -1)
    out[:value_batch] += conv.bias
    tap_flat = torch.empty_like(out).view(n * s * s, -1)
    tap = tap_flat.view(n, s, s, -1)
    torch.mm(flat, weight[:, :, 0, 1].t(), out=tap_flat)
    out[:, :, : s - 1] += tap[:, :, 1:]
    torch.mm(flat, weight[:, :, 1, 0].t(), out=tap_flat)
    out[:, : s - 1] += tap[:, 1:]
    torch.mm(flat, weight[:, :, 1, 1].t(), out=tap_flat)
    out[:, : s - 1, : s - 1] += tap[:, 1:, 1:]
    return out


def _conv_same_2x2_jets(x: torch.Tensor, conv: nn.Conv2d, value_batch: int) -> torch.Tensor:
    """2x2 'same' conv (zero row/column padded at bottom/right) of channels-last jets."""
    n, s, _, cin = x.shape
    padded = nn.functional.pad(x, (0, 0, 0, 1, 0, 1))
    columns = torch.cat(
        (padded[:, :s, :s], padded[:, :s, 1:], padded[:, 1:, :s], padded[:, 1:, 1:]), dim=3
    ).reshape(n * s * s, 4 * cin)
    taps = conv.weight.permute(2, 3, 1, 0).reshape(4 * cin, conv.weight.shape[0])
    return _affine_jets(columns, taps, conv.bias, value_batch * s * s).view(n, s, s, -1)


def _max_pool_2x2_jets(x: torch.Tensor, components: int) -> torch.Tensor:
    """2x2 max-pool (floor mode) of channels-last jets at the value's argmax."""
    n, s, _, c = x.shape
    half = s // 2
    windows = (
        x[:, : 2 * half, : 2 * half]
        .reshape(components, n // components, half, 2, half, 2, c)
        .permute(0, 1, 2, 4, 6, 3, 5)
        .reshape(components, n // components, half, half, c, 4)
    )
    index = windows[0].argmax(dim=-1, keepdim=True)
    picked = torch.gather(windows, -1, index.expand(components, *index.shape))
    return picked.reshape(n, half, half, c)


def _cnn_jets(model: FunkNN, jets: torch.Tensor, inplace: bool) -> torch.Tensor:
    """Per-patch CNN on patch jets (K, N, C, p, p) -> (K, N, C_out), before the centre residual."""
    components, batch, channels, p, _ = jets.shape
    x = jets.permute(0, 1, 3, 4, 2).reshape(components * batch, p, p, channels)
    for k, (conv, act) in enumerate(zip(model.convs, model.conv_activations, strict=True)):
        conv_jets = _conv_same_2x2_jets_inplace if inplace else _conv_same_2x2_jets
        y = _activation_jets(conv_jets(x, conv, batch), act, components, inplace)
        if k in model.RESIDUAL_CONVS:
            y = y.add_(x) if inplace else y + x
        x = y
        if k in model.POOL_AFTER_CONVS:
            x = _max_pool_2x2_jets(x, components)
    n, s, _, width = x.shape
    x = x.reshape(n, s * s * width)
    first = model.linears[0]
    weight = first.weight.view(-1, width, s, s).permute(0, 2, 3, 1).reshape(-1, s * s * width)
    x = _affine_jets(x, weight.t(), first.bias, batch)
    return _linear_stack_jets(model, x, batch, components, inplace, start=1)


def _linear_stack_jets(model: FunkNN, x: torch.Tensor, batch: int, components: int,
                       inplace: bool, start: int) -> torch.Tensor:
    for k in range(start, len(model.linears)):
        if k > 0:
            x = _activation_jets(x, model.linear_activations[k - 1], components, inplace)
        linear = model.linears[k]
        x = _affine_jets(x, linear.weight.t(), linear.bias, batch)
    return x.view(components, batch, -1)


class _ReluRecord:
    """Masks and max-pool windows of the value pass of a ReLU network, replayed on tangents."""

    def __init__(self) -> None:
        self.items: list[torch.Tensor] = []
        self.cursor: int | None = None  # None: recording (value pass)

    def relu_(self, x: torch.Tensor) -> torch.Tensor:
        if self.cursor is None:
            mask = x > 0
            self.items.append(mask)
        else:
            mask = self.items[self.cursor]
            self.cursor += 1
        return x.mul_(mask)

    def max_pool_(self, x: torch.Tensor) -> torch.Tensor:
        """2x2 max-pool (floor mode) of channels-last x (N, s, s, C) through strided views.

        The value pass keeps, per output, the index (uint8) of the first maximum in the scan order
        (0, 0), (0, 1), (1, 0), (1, 1) of the window, like ``F.max_pool2d``; tangents select it.
        """
        half = x.shape[1] // 2
        views = [x[:, di : 2 * half : 2, dj : 2 * half : 2] for di in (0, 1) for dj in (0, 1)]
        if self.cursor is None:
            best = views[0].clone()
            index = torch.zeros(best.shape, dtype=torch.uint8, device=x.device)
            for k in (1, 2, 3):
                larger = views[k] > best
                best = torch.where(larger, views[k], best)
                index.masked_fill_(larger, k)
            self.items.append(index)
            return best
        index = self.items[self.cursor]
        self.cursor += 1
        out = views[0].clone()
        for k in (1, 2, 3):
            out = torch.where(index == k, views[k], out)
        return out


def _relu_network_pass(model: FunkNN, x: torch.Tensor, record: _ReluRecord,
                       with_bias: bool) -> torch.Tensor:
    """One component (N, C, p, p) through a ReLU FunkNN network, no autograd, in place."""
    value_rows = x.shape[0] if with_bias else 0
    if model.variant == "cnn":
        x = x.permute(0, 2, 3, 1).contiguous()
        for k, conv in enumerate(model.convs):
            y = record.relu_(_conv_same_2x2_jets_inplace(x, conv, value_rows))
            x = y.add_(x) if k in model.RESIDUAL_CONVS else y
            if k in model.POOL_AFTER_CONVS:
                x = record.max_pool_(x)
        n, s, _, width = x.shape
        x = x.reshape(n, s * s * width)
        weight = model.linears[0].weight.view(-1, width, s, s).permute(0, 2, 3, 1)
        weights = [weight.reshape(-1, s * s * width)] + [lin.weight for lin in model.linears[1:]]
    else:
        x = x.reshape(x.shape[0], -1)
        weights = [lin.weight for lin in model.linears]
    for k, (weight, linear) in enumerate(zip(weights, model.linears, strict=True)):
        if k > 0:
            x = record.relu_(x)
        x = _affine_jets(x, weight.t(), linear.bias, value_rows)
    return x


def _relu_network_jets_low_memory(model: FunkNN, jets: torch.Tensor) -> torch.Tensor:
    """ReLU network on jets (K, N, C, p, p) one component at a time (no autograd).

    The value pass records the ReLU masks and max-pool argmaxes; every derivative component then
    propagates linearly through the same masks, so only one component's activations are alive at
    a time (about 1/K of the stacked evaluation's memory, the same arithmetic).
    """
    record = _ReluRecord()
    outputs = [_relu_network_pass(model, jets[0], record, with_bias=True)]
    for component in jets[1:]:
        record.cursor = 0
        outputs.append(_relu_network_pass(model, component, record, with_bias=False))
    return torch.stack(outputs)


def network_jets(model: FunkNN, jets: torch.Tensor) -> torch.Tensor:
    """FunkNN output jets (K, N, C) from patch jets (K, N, C, p, p) (centre residual included)."""
    components, batch, channels, p, _ = jets.shape
    inplace = not torch.is_grad_enabled() or not (
        jets.requires_grad or any(q.requires_grad for q in model.parameters())
    )
    centre = jets[:, :, :, p // 2, p // 2]
    # The network's input: INPUT_SCALE * (patch - centre sample), linear, so componentwise.
    centred = INPUT_SCALE * (jets - centre[..., None, None])
    relu_only = all(isinstance(act, nn.ReLU) for act in model.linear_activations) and (
        model.variant != "cnn" or all(isinstance(act, nn.ReLU) for act in model.conv_activations)
    )
    if inplace and relu_only:
        out = _relu_network_jets_low_memory(model, centred)
    elif model.variant == "cnn":
        out = _cnn_jets(model, centred, inplace)
    else:
        flat = centred.reshape(components * batch, channels * p * p)
        out = _linear_stack_jets(model, flat, batch, components, inplace, start=0)
    return out + centre


# ---------------------------------------------------------------- public API


def _check_arguments(model: nn.Module, coords: torch.Tensor, image: torch.Tensor, order: str,
                     output_size: tuple[int, int] | None, chunk: int | None) -> None:
    if not isinstance(model, FunkNN):
        raise TypeError(
            f"model must be a funknn_fast.models.funknn.FunkNN, got {type(model).__name__}"
        )
    if model.variant not in ("cnn", "mlp"):
        raise ValueError(f"model: exact derivatives support the cnn and mlp variants, not "
                         f"{model.variant!r} (use autograd through model(coords, image))")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if not isinstance(coords, torch.Tensor) or coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError("coords must be a tensor of shape (B, Q, 2)")
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        raise ValueError("image must be a tensor of shape (B, C, h, w)")
    if image.shape[1] != model.channels:
        raise ValueError(f"image must have {model.channels} channels, got {image.shape[1]}")
    if output_size is not None and (
        not isinstance(output_size, (tuple, list))
        or len(output_size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in output_size)
        or min(output_size) < 1
    ):
        raise ValueError(f"output_size must be a pair of positive ints (H, W), got {output_size!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")


def _output_jets(model: FunkNN, coords: torch.Tensor, image: torch.Tensor, mode: str,
                 backend: str) -> torch.Tensor:
    jets = patch_sample_jets(image, coords, model.step.to(coords.dtype), model.patch_size,
                             model.padding, mode, backend)
    components, batch, queries, channels, p, _ = jets.shape
    out = network_jets(model, jets.reshape(components, batch * queries, channels, p, p))
    return out.reshape(components, batch, queries, channels)


def funknn_derivatives(
    model: FunkNN,
    coords: torch.Tensor,
    image: torch.Tensor,
    order: str = "laplacian",
    output_size: tuple[int, int] | None = None,
    chunk: int | None = DEFAULT_CHUNK,
    backend: str = "auto",
) -> Derivatives:
    """Value, gradient and (per ``order``) Laplacian / Hessian of ``model`` at ``coords``.

    Args:
        model: a FunkNN (CNN or MLP, ReLU or sin).
        coords: (B, Q, 2) query coordinates (x, y), grid_sample convention, align_corners=False.
        image: (B, C, h, w) low-resolution input of the model.
        order: "gradient", "laplacian" (value, gradient, Laplacian: 4 stacked network passes) or
            "hessian" (full Hessian: 6 passes).
        output_size: None for derivatives in normalised coordinates; (H, W) for derivatives per
            output pixel of an H x W rendering (see module docstring).
        chunk: queries per network evaluation (bounds memory); None evaluates all at once.
        backend: patch-jets backend ("auto", "torch", "cpu", "triton", "cuda"; see
            ``funknn_fast.ops.jets``).

    Returns:
        :class:`Derivatives`; differentiable w.r.t. the model parameters and the image.
    """
    _check_arguments(model, coords, image, order, output_size, chunk)
    mode = order
    if output_size is not None and order == "laplacian" and output_size[0] != output_size[1]:
        mode = "hessian"  # the pixel Laplacian weights u_xx and u_yy differently
    queries = coords.shape[1]
    step = max(queries, 1) if chunk is None else chunk
    pieces = [
        _output_jets(model, coords[:, start:start + step], image, mode, backend)
        for start in range(0, max(queries, 1), step)
    ]
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)  # (K, B, Q, C)
    scale_x = scale_y = 1.0
    if output_size is not None:
        scale_x, scale_y = 2.0 / output_size[1], 2.0 / output_size[0]
    names = JET_COMPONENTS[mode]
    parts = dict(zip(names, out.unbind(0), strict=True))
    gradient = torch.stack((parts["x"] * scale_x, parts["y"] * scale_y), dim=-1)
    result = Derivatives(value=parts["value"], gradient=gradient)
    if mode == "laplacian":
        result.laplacian = parts["laplacian"] * (scale_x * scale_x)
    elif mode == "hessian":
        uxx = parts["xx"] * (scale_x * scale_x)
        uxy = parts["xy"] * (scale_x * scale_y)
        uyy = parts["yy"] * (scale_y * scale_y)
        result.laplacian = uxx + uyy
        if order == "hessian":
            result.hessian = torch.stack(
                (torch.stack((uxx, uxy), dim=-1), torch.stack((uxy, uyy), dim=-1)), dim=-2
            )
    return result
