"""Fused Triton kernels of ``patch_sample_jets``: a patch and its query-coordinate derivatives.

Shapes and conventions are those of ``funknn_fast.ops.jets`` (and ``csrc/patch_jets.cpp``, whose
math these kernels follow): image (B, C, H, W), coords (B, Q, 2) = (x, y) in the ``grid_sample``
convention with ``align_corners=False`` (px = ((x + 1) W - 1) / 2), step (2,) = (step_x, step_y)
in input pixels; result (K, B, Q, C, p, p) with, for sample (i, j) at pixel position
(px + (j - (p-1)/2) step_x, py + (i - (p-1)/2) step_y) of the Keys-cubic (a = -0.5) interpolant f,
and s_x = W / 2, s_y = H / 2 (derivatives w.r.t. the normalised coordinates):

* mode 0, "gradient"  (K = 3): f, s_x f_x, s_y f_y;
* mode 1, "laplacian" (K = 4): f, s_x f_x, s_y f_y, s_x^2 f_xx + s_y^2 f_yy;
* mode 2, "hessian"   (K = 6): f, s_x f_x, s_y f_y, s_x^2 f_xx, s_x s_y f_xy, s_y^2 f_yy.

Padding, knots (one-sided second derivatives of the cell to the right / above), NaN/inf
coordinates (NaN jets) and the 2^40-pixel clamp (derivatives vanish beyond it) are those of the
C++ kernels; the per-axis taps come from ``patch_sample_triton._axis_taps``.

Two ``torch.library`` custom ops, for CUDA tensors and, under ``TRITON_INTERPRET=1`` (set before
this module is imported), CPU tensors:

* ``funknn_fast::triton_patch_sample_jets`` -- forward. One program handles BLOCK (query,
  sample) pairs; per pair the x and y weights with their first and second derivatives live in
  registers, each of the 16 taps is read once per chunk of up to 4 channels (one vector load of a
  channels-last copy of the image) and feeds every requested component.
* ``funknn_fast::triton_patch_sample_jets_backward`` -- gradients w.r.t. image, coords and step
  (``output_mask`` selects them). The coordinate and step gradients need the interpolant's
  derivatives one order higher than the jets (third derivatives of the Keys weights, constant per
  cell). Tiles of (BLOCK_Q queries) x (p*p samples padded to a power of two): per-query coordinate
  gradients are register reductions, the step gradient one partial per program summed on the
  host in a fixed order. Image gradient: float atomics by default; under
  ``torch.use_deterministic_algorithms(True)`` the (value, index) contributions are written out and
  summed by ``index_put_(accumulate=True)`` in chunks of queries (the scheme of
  ``patch_sample_triton``). Its autograd raises: the compiled jets are differentiable to first
  order (``backend="torch"`` for more).

Dtypes: float32 and float64; float16/bfloat16 images with float32 coords and step (weights and
accumulation in float32, jets in the image dtype). Launches run on the tensors' device
(``patch_sample_triton.launch_device``); component offsets are 64-bit whatever width Triton gives
``component_stride``; image-gradient atomics are relaxed (no fences).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from funknn_fast.kernels import patch_sample_triton as pst
from funknn_fast.kernels.patch_sample_triton import MAX_POSITION, _axis_taps, _scatter_row
from funknn_fast.ops import op_autograd
from funknn_fast.ops.padding import PADDING_CODES

JET_COUNTS = (3, 4, 6)  # components K of modes 0 (gradient), 1 (Laplacian), 2 (Hessian)
FORWARD_CONFIG = (256, 8)  # (query, sample) pairs per program, warps
_MODE_NAMES = {"gradient": 0, "laplacian": 1, "hessian": 2}


# ------------------------------------------------------------------------------------ device math


@triton.jit
def _axis_third(u, n, PADDING: tl.constexpr):
    """Third derivatives in u of the 4 Keys weights (-3, 9, -9, 3), with the zeroing rules of
    ``_axis_taps``'s derivatives (taps outside under zeros padding, positions past the 2^40 clamp)
    and NaN for non-finite u."""
    nan_or_zero = u - u
    finite = nan_or_zero == 0
    inside = (~finite) | ((u <= MAX_POSITION) & (u >= -MAX_POSITION))
    if PADDING == 0:  # zeros: the validity of each tap, as _axis_taps computes it
        clamped = tl.where(u < -MAX_POSITION, -MAX_POSITION, u)
        clamped = tl.where(u > MAX_POSITION, MAX_POSITION, clamped)
        base = tl.where(finite, tl.floor(clamped), 0.0)
        f = tl.minimum(tl.maximum(base.to(tl.int64) - 1, -8), n + 8).to(tl.int32)
        v0 = inside & (f >= 0) & (f < n)
        v1 = inside & (f + 1 >= 0) & (f + 1 < n)
        v2 = inside & (f + 2 >= 0) & (f + 2 < n)
        v3 = inside & (f + 3 >= 0) & (f + 3 < n)
    else:
        v0 = inside
        v1 = inside
        v2 = inside
        v3 = inside
    t0 = tl.where(v0, nan_or_zero - 3.0, 0.0)
    t1 = tl.where(v1, nan_or_zero + 9.0, 0.0)
    t2 = tl.where(v2, nan_or_zero - 9.0, 0.0)
    t3 = tl.where(v3, nan_or_zero + 3.0, 0.0)
    return t0, t1, t2, t3


@triton.jit
def _vector_row_jets(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, e0, e1, e2, e3,
                     channel, mask, CB: tl.constexpr, SECOND: tl.constexpr):
    """Forward: one row of 4 taps of the channels-last image (CB channels per tap), contracted
    with the x weights, their first and (SECOND) second derivatives: (BLOCK, CB) each."""
    a0 = tl.load(row_ptr + (i0 * CB)[:, None] + channel[None, :], mask=mask, other=0.0)
    a1 = tl.load(row_ptr + (i1 * CB)[:, None] + channel[None, :], mask=mask, other=0.0)
    a2 = tl.load(row_ptr + (i2 * CB)[:, None] + channel[None, :], mask=mask, other=0.0)
    a3 = tl.load(row_ptr + (i3 * CB)[:, None] + channel[None, :], mask=mask, other=0.0)
    a0 = a0.to(w0.dtype)
    a1 = a1.to(w0.dtype)
    a2 = a2.to(w0.dtype)
    a3 = a3.to(w0.dtype)
    value = w0[:, None] * a0 + w1[:, None] * a1 + w2[:, None] * a2 + w3[:, None] * a3
    d_value = d0[:, None] * a0 + d1[:, None] * a1 + d2[:, None] * a2 + d3[:, None] * a3
    if SECOND:
        dd_value = e0[:, None] * a0 + e1[:, None] * a1 + e2[:, None] * a2 + e3[:, None] * a3
    else:
        dd_value = d_value
    return value, d_value, dd_value


@triton.jit
def _row_jets(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, e0, e1, e2, e3,
              t0, t1, t2, t3, mask, THIRD: tl.constexpr):
    """Backward: one row of 4 taps (one channel plane) contracted with the x weights and their
    first, second and (THIRD) third derivatives."""
    a0 = tl.load(row_ptr + i0, mask=mask, other=0.0).to(w0.dtype)
    a1 = tl.load(row_ptr + i1, mask=mask, other=0.0).to(w0.dtype)
    a2 = tl.load(row_ptr + i2, mask=mask, other=0.0).to(w0.dtype)
    a3 = tl.load(row_ptr + i3, mask=mask, other=0.0).to(w0.dtype)
    value = w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3
    d_value = d0 * a0 + d1 * a1 + d2 * a2 + d3 * a3
    dd_value = e0 * a0 + e1 * a1 + e2 * a2 + e3 * a3
    if THIRD:
        ddd_value = t0 * a0 + t1 * a1 + t2 * a2 + t3 * a3
    else:
        ddd_value = dd_value
    return value, d_value, dd_value, ddd_value


@triton.jit
def _add_vector_row_jets(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, e0, e1, e2, e3,
                         channel, mask, wy, dy, ey, f, fx, fy, fxx, fxy, fyy, CB: tl.constexpr,
                         SECOND: tl.constexpr, FIRST: tl.constexpr):
    """Forward: the value f and pixel derivatives fx, fy (SECOND: fxx, fxy, fyy), (BLOCK, CB)
    each, plus the contribution of one tap row of y weight wy (derivatives dy, ey); FIRST starts
    the sums (the values passed in are ignored). Without SECOND, fxx, fxy, fyy are placeholders."""
    a, ax, axx = _vector_row_jets(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, e0, e1,
                                  e2, e3, channel, mask, CB, SECOND)
    if FIRST:
        f = wy[:, None] * a
        fx = wy[:, None] * ax
        fy = dy[:, None] * a
        if SECOND:
            fxx = wy[:, None] * axx
            fxy = dy[:, None] * ax
            fyy = ey[:, None] * a
        else:
            fxx = f
            fxy = f
            fyy = f
    else:
        f += wy[:, None] * a
        fx += wy[:, None] * ax
        fy += dy[:, None] * a
        if SECOND:
            fxx += wy[:, None] * axx
            fxy += dy[:, None] * ax
            fyy += ey[:, None] * a
    return f, fx, fy, fxx, fxy, fyy


@triton.jit
def _add_row_jets(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, e0, e1, e2, e3,
                  t0, t1, t2, t3, mask, wy, dy, ey, ty, fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy,
                  fyyy, THIRD: tl.constexpr, FIRST: tl.constexpr):
    """Backward: the pixel derivatives of orders 1, 2 (THIRD: and 3) of one channel plane's
    interpolant plus the contribution of one tap row of y weight wy (derivatives dy, ey, ty);
    FIRST starts the sums (the values passed in are ignored). Without THIRD, the third-order
    outputs are placeholders."""
    a, ax, axx, axxx = _row_jets(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, e0, e1,
                                 e2, e3, t0, t1, t2, t3, mask, THIRD)
    if FIRST:
        fx = wy * ax
        fy = dy * a
        fxx = wy * axx
        fxy = dy * ax
        fyy = ey * a
        if THIRD:
            fxxx = wy * axxx
            fxxy = dy * axx
            fxyy = ey * ax
            fyyy = ty * a
        else:
            fxxx = fx
            fxxy = fx
            fxyy = fx
            fyyy = fx
    else:
        fx += wy * ax
        fy += dy * a
        fxx += wy * axx
        fxy += dy * ax
        fyy += ey * a
        if THIRD:
            fxxx += wy * axxx
            fxxy += dy * axx
            fxyy += ey * ax
            fyyy += ty * a
    return fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy, fyyy


# ------------------------------------------------------------------------------------ kernels


@triton.jit(do_not_specialize=["total", "Q", "C", "H", "W", "NCH", "component_stride"])
def _jets_forward_kernel(
    image_ptr, coords_ptr, step_ptr, out_ptr, total, Q, C, H, W, NCH, component_stride,
    P: tl.constexpr, CB: tl.constexpr, PADDING: tl.constexpr, MODE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    PP: tl.constexpr = P * P
    SECOND: tl.constexpr = MODE != 0
    # 64-bit: K * B * Q * C * p^2 passes 2^31 while one component still fits (Triton then types
    # the argument i32 and k * component_stride would wrap).
    component_stride = component_stride.to(tl.int64)
    e, emask, bq, s, b, ux, uy = pst._element_positions(coords_ptr, step_ptr, total, Q, H, W, P,
                                                        BLOCK)
    x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3 = _axis_taps(
        ux, W, PADDING)
    y0, y1, y2, y3, wy0, wy1, wy2, wy3, dy0, dy1, dy2, dy3, ey0, ey1, ey2, ey3 = _axis_taps(
        uy, H, PADDING)
    scale_x = (W * 0.5).to(ux.dtype)
    scale_y = (H * 0.5).to(ux.dtype)
    channel = tl.arange(0, CB)
    mask2 = emask[:, None] & (channel[None, :] < CB)
    out_row = bq * C * PP + s
    for chunk in range(0, NCH):
        plane = image_ptr + ((b * NCH + chunk) * H * W * CB)[:, None]
        f, fx, fy, fxx, fxy, fyy = _add_vector_row_jets(
            plane + (y0 * W * CB)[:, None], x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2,
            dx3, ex0, ex1, ex2, ex3, channel, mask2, wy0, dy0, ey0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            CB, SECOND, True)
        f, fx, fy, fxx, fxy, fyy = _add_vector_row_jets(
            plane + (y1 * W * CB)[:, None], x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2,
            dx3, ex0, ex1, ex2, ex3, channel, mask2, wy1, dy1, ey1, f, fx, fy, fxx, fxy, fyy,
            CB, SECOND, False)
        f, fx, fy, fxx, fxy, fyy = _add_vector_row_jets(
            plane + (y2 * W * CB)[:, None], x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2,
            dx3, ex0, ex1, ex2, ex3, channel, mask2, wy2, dy2, ey2, f, fx, fy, fxx, fxy, fyy,
            CB, SECOND, False)
        f, fx, fy, fxx, fxy, fyy = _add_vector_row_jets(
            plane + (y3 * W * CB)[:, None], x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2,
            dx3, ex0, ex1, ex2, ex3, channel, mask2, wy3, dy3, ey3, f, fx, fy, fxx, fxy, fyy,
            CB, SECOND, False)
        c = chunk * CB + channel
        dst = out_ptr + out_row[:, None] + (c * PP)[None, :]
        smask = emask[:, None] & (c < C)[None, :]
        dtype = out_ptr.dtype.element_ty
        tl.store(dst, f.to(dtype), mask=smask)
        tl.store(dst + component_stride, (scale_x * fx).to(dtype), mask=smask)
        tl.store(dst + 2 * component_stride, (scale_y * fy).to(dtype), mask=smask)
        if MODE == 1:
            lap = (scale_x * scale_x) * fxx + (scale_y * scale_y) * fyy
            tl.store(dst + 3 * component_stride, lap.to(dtype), mask=smask)
        if MODE == 2:
            tl.store(dst + 3 * component_stride, ((scale_x * scale_x) * fxx).to(dtype),
                     mask=smask)
            tl.store(dst + 4 * component_stride, ((scale_x * scale_y) * fxy).to(dtype),
                     mask=smask)
            tl.store(dst + 5 * component_stride, ((scale_y * scale_y) * fyy).to(dtype),
                     mask=smask)


@triton.jit
def _scatter_jet_row(gimg_ptr, val_ptr, idx_ptr, row_index, x0, x1, x2, x3, wy, dy, ey,
                     a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, mask, slot,
                     slot_mask, MODE: tl.constexpr, DETERMINISTIC: tl.constexpr):
    """Image gradient of one tap row: tap k gets wy a0k + dy a1k (+ ey a2k for second-order
    modes)."""
    v0 = wy * a00 + dy * a10
    v1 = wy * a01 + dy * a11
    v2 = wy * a02 + dy * a12
    v3 = wy * a03 + dy * a13
    if MODE != 0:
        v0 += ey * a20
        v1 += ey * a21
        v2 += ey * a22
        v3 += ey * a23
    _scatter_row(gimg_ptr, val_ptr, idx_ptr, row_index, x0, x1, x2, x3, v0, v1, v2, v3, mask,
                 slot, slot_mask, DETERMINISTIC)


@triton.jit(do_not_specialize=[
    "q_begin", "q_end", "partial_offset", "Q", "C", "H", "W", "component_stride"])
def _jets_backward_kernel(
    go_ptr, image_ptr, coords_ptr, step_ptr, gimg_ptr, gcoords_ptr, partial_ptr, val_ptr, idx_ptr,
    q_begin, q_end, partial_offset, Q, C, H, W, component_stride,
    P: tl.constexpr, PPAD: tl.constexpr, PADDING: tl.constexpr, MODE: tl.constexpr,
    BLOCK_Q: tl.constexpr, NEED_IMAGE: tl.constexpr, NEED_POS: tl.constexpr,
    DETERMINISTIC: tl.constexpr,
):
    # With coefficients c_alpha of the pixel derivatives f_alpha of a sample (grad_jets times the
    # chain factors), the sample's contribution is sum_alpha c_alpha f_alpha. Its image gradient
    # at tap (l, k) is wy_l a0_k + dwy_l a1_k + d2wy_l a2_k with a0 = c_f wx + c_x dwx + c_xx d2wx,
    # a1 = c_y wx + c_xy dwx, a2 = c_yy wx; its derivative in the sample position is
    # sum_alpha c_alpha d f_alpha / d(px, py), one derivative order above the jets.
    PP: tl.constexpr = P * P
    SECOND: tl.constexpr = MODE != 0
    component_stride = component_stride.to(tl.int64)  # see the forward
    pid = tl.program_id(0)
    q_local = pid.to(tl.int64) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q = q_begin + q_local
    qmask = q < q_end
    s = tl.arange(0, PPAD)
    mask = qmask[:, None] & (s < PP)[None, :]
    ox, oy, ux, uy = pst._tile_geometry(coords_ptr, step_ptr, q, qmask, s, H, W, P)
    x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3 = _axis_taps(
        ux, W, PADDING)
    y0, y1, y2, y3, wy0, wy1, wy2, wy3, dy0, dy1, dy2, dy3, ey0, ey1, ey2, ey3 = _axis_taps(
        uy, H, PADDING)
    if NEED_POS and SECOND:
        tx0, tx1, tx2, tx3 = _axis_third(ux, W, PADDING)
        ty0, ty1, ty2, ty3 = _axis_third(uy, H, PADDING)
    else:
        tx0, tx1, tx2, tx3 = ex0, ex1, ex2, ex3
        ty0, ty1, ty2, ty3 = ey0, ey1, ey2, ey3
    scale_x = (W * 0.5).to(ux.dtype)
    scale_y = (H * 0.5).to(ux.dtype)
    b = q // Q
    gpx = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
    gpy = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
    slot = (q_local * C)[:, None] * (PPAD * 16) + (s * 16)[None, :]
    slot_mask = qmask[:, None] & (s < PPAD)[None, :]
    for c in range(0, C):
        plane = ((b * C + c) * H * W)[:, None]
        go = go_ptr + ((q * C + c) * PP)[:, None] + s[None, :]
        c_f = tl.load(go, mask=mask, other=0.0).to(ux.dtype)
        c_x = scale_x * tl.load(go + component_stride, mask=mask, other=0.0).to(ux.dtype)
        c_y = scale_y * tl.load(go + 2 * component_stride, mask=mask, other=0.0).to(ux.dtype)
        if MODE == 1:
            lap = tl.load(go + 3 * component_stride, mask=mask, other=0.0).to(ux.dtype)
            c_xx = (scale_x * scale_x) * lap
            c_xy = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
            c_yy = (scale_y * scale_y) * lap
        elif MODE == 2:
            c_xx = (scale_x * scale_x) * tl.load(go + 3 * component_stride, mask=mask,
                                                 other=0.0).to(ux.dtype)
            c_xy = (scale_x * scale_y) * tl.load(go + 4 * component_stride, mask=mask,
                                                 other=0.0).to(ux.dtype)
            c_yy = (scale_y * scale_y) * tl.load(go + 5 * component_stride, mask=mask,
                                                 other=0.0).to(ux.dtype)
        else:
            c_xx = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
            c_xy = c_xx
            c_yy = c_xx
        if NEED_POS:
            # Interpolant derivatives up to order 2 (gradient mode) or 3, in pixel units.
            fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy, fyyy = _add_row_jets(
                image_ptr + plane + y0 * W, x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2,
                dx3, ex0, ex1, ex2, ex3, tx0, tx1, tx2, tx3, mask, wy0, dy0, ey0, ty0,
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, SECOND, True)
            fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy, fyyy = _add_row_jets(
                image_ptr + plane + y1 * W, x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2,
                dx3, ex0, ex1, ex2, ex3, tx0, tx1, tx2, tx3, mask, wy1, dy1, ey1, ty1,
                fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy, fyyy, SECOND, False)
            fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy, fyyy = _add_row_jets(
                image_ptr + plane + y2 * W, x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2,
                dx3, ex0, ex1, ex2, ex3, tx0, tx1, tx2, tx3, mask, wy2, dy2, ey2, ty2,
                fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy, fyyy, SECOND, False)
            fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy, fyyy = _add_row_jets(
                image_ptr + plane + y3 * W, x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2,
                dx3, ex0, ex1, ex2, ex3, tx0, tx1, tx2, tx3, mask, wy3, dy3, ey3, ty3,
                fx, fy, fxx, fxy, fyy, fxxx, fxxy, fxyy, fyyy, SECOND, False)
            hx = c_f * fx + c_x * fxx + c_y * fxy
            hy = c_f * fy + c_x * fxy + c_y * fyy
            if MODE == 1:
                hx += c_xx * fxxx + c_yy * fxyy
                hy += c_xx * fxxy + c_yy * fyyy
            if MODE == 2:
                hx += c_xx * fxxx + c_xy * fxxy + c_yy * fxyy
                hy += c_xx * fxxy + c_xy * fxyy + c_yy * fyyy
            gpx += hx
            gpy += hy
        if NEED_IMAGE:
            a00 = c_f * wx0 + c_x * dx0
            a01 = c_f * wx1 + c_x * dx1
            a02 = c_f * wx2 + c_x * dx2
            a03 = c_f * wx3 + c_x * dx3
            a10 = c_y * wx0
            a11 = c_y * wx1
            a12 = c_y * wx2
            a13 = c_y * wx3
            a20 = c_yy * wx0
            a21 = c_yy * wx1
            a22 = c_yy * wx2
            a23 = c_yy * wx3
            if SECOND:
                a00 += c_xx * ex0
                a01 += c_xx * ex1
                a02 += c_xx * ex2
                a03 += c_xx * ex3
            if MODE == 2:
                a10 += c_xy * dx0
                a11 += c_xy * dx1
                a12 += c_xy * dx2
                a13 += c_xy * dx3
            cslot = slot + c * (PPAD * 16)
            _scatter_jet_row(gimg_ptr, val_ptr, idx_ptr, plane + y0 * W, x0, x1, x2, x3, wy0,
                             dy0, ey0, a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22,
                             a23, mask, cslot, slot_mask, MODE, DETERMINISTIC)
            _scatter_jet_row(gimg_ptr, val_ptr, idx_ptr, plane + y1 * W, x0, x1, x2, x3, wy1,
                             dy1, ey1, a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22,
                             a23, mask, cslot + 4, slot_mask, MODE, DETERMINISTIC)
            _scatter_jet_row(gimg_ptr, val_ptr, idx_ptr, plane + y2 * W, x0, x1, x2, x3, wy2,
                             dy2, ey2, a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22,
                             a23, mask, cslot + 8, slot_mask, MODE, DETERMINISTIC)
            _scatter_jet_row(gimg_ptr, val_ptr, idx_ptr, plane + y3 * W, x0, x1, x2, x3, wy3,
                             dy3, ey3, a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22,
                             a23, mask, cslot + 12, slot_mask, MODE, DETERMINISTIC)
    if NEED_POS:
        gpx = tl.where(mask, gpx, 0.0)
        gpy = tl.where(mask, gpy, 0.0)
        tl.store(gcoords_ptr + 2 * q, tl.sum(gpx, axis=1) * scale_x, mask=qmask)
        tl.store(gcoords_ptr + 2 * q + 1, tl.sum(gpy, axis=1) * scale_y, mask=qmask)
        partial = partial_ptr + 2 * (partial_offset + pid)
        tl.store(partial, tl.sum(tl.sum(gpx * ox[None, :], axis=1), axis=0))
        tl.store(partial + 1, tl.sum(tl.sum(gpy * oy[None, :], axis=1), axis=0))


# ------------------------------------------------------------------------------------ launchers


def _check_jets_inputs(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int, padding: int,
    mode: int,
) -> None:
    """The checks of ``patch_sample_triton`` (shapes, dtypes, device), then the mode."""
    try:
        pst._check_inputs(image, coords, step, patch_size, padding)
    except (ValueError, TypeError, RuntimeError) as error:
        message = str(error).replace("triton_patch_sample:", "triton_patch_sample_jets:", 1)
        raise type(error)(message) from None
    if mode not in (0, 1, 2):
        raise ValueError(
            f"triton_patch_sample_jets: mode must be 0 (gradient), 1 (Laplacian) or 2 (Hessian), "
            f"got {mode}"
        )


def _forward(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int, padding: int,
    mode: int,
) -> torch.Tensor:
    _check_jets_inputs(image, coords, step, patch_size, padding, mode)
    batch, channels = image.shape[:2]
    p = patch_size
    out = torch.empty(
        (JET_COUNTS[mode], batch, coords.shape[1], channels, p, p), dtype=image.dtype,
        device=image.device,
    )
    block, warps = pst._launch_config("FUNKNN_TRITON_FORWARD_CONFIG", FORWARD_CONFIG)
    return pst._launch_forward(
        _jets_forward_kernel, out, image, coords, step, p, padding, out[0].numel(),
        lanes_per_query=p * p, block=block, warps=warps, MODE=mode,
    )


def _backward(
    grad_jets: torch.Tensor,
    image: torch.Tensor,
    coords: torch.Tensor,
    step: torch.Tensor,
    patch_size: int,
    padding: int,
    mode: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_jets_inputs(image, coords, step, patch_size, padding, mode)
    pst._check_on_device("triton_patch_sample_jets_backward", image, grad_jets=grad_jets)
    batch, channels = image.shape[:2]
    queries = coords.shape[1]
    p = patch_size
    expected = (JET_COUNTS[mode], batch, queries, channels, p, p)
    if tuple(grad_jets.shape) != expected:
        raise ValueError(
            f"triton_patch_sample_jets_backward: grad_jets must be (K, B, Q, C, p, p) = "
            f"{expected}, got {tuple(grad_jets.shape)}"
        )
    if len(output_mask) != 3:
        raise ValueError(
            f"triton_patch_sample_jets_backward: output_mask must have 3 entries, "
            f"got {list(output_mask)}"
        )
    return pst._launch_tile_backward(
        _jets_backward_kernel, grad_jets, image, coords, step, p, padding, output_mask,
        grad_jets[0].numel(), MODE=mode,
    )


# ------------------------------------------------------------------------------------ ops

_FORWARD_SCHEMA = (
    "(Tensor image, Tensor coords, Tensor step, int patch_size, int padding, int mode) -> Tensor"
)
_BACKWARD_SCHEMA = (
    "(Tensor grad_jets, Tensor image, Tensor coords, Tensor step, int patch_size, int padding, "
    "int mode, bool[] output_mask) -> (Tensor, Tensor, Tensor)"
)

forward_op = torch.library.custom_op(
    "funknn_fast::triton_patch_sample_jets", _forward, mutates_args=(), schema=_FORWARD_SCHEMA
)
backward_op = torch.library.custom_op(
    "funknn_fast::triton_patch_sample_jets_backward", _backward, mutates_args=(),
    schema=_BACKWARD_SCHEMA,
)


@forward_op.register_fake
def _fake_forward(image, coords, step, patch_size, padding, mode):
    if mode not in (0, 1, 2):
        raise ValueError(f"triton_patch_sample_jets: mode must be 0, 1 or 2, got {mode}")
    batch, channels = image.shape[:2]
    return image.new_empty(
        (JET_COUNTS[mode], batch, coords.shape[1], channels, patch_size, patch_size)
    )


@backward_op.register_fake
def _fake_backward(grad_jets, image, coords, step, patch_size, padding, mode, output_mask):
    return (pst.contiguous_empty(image), pst.contiguous_empty(coords),
            pst.contiguous_empty(step))


def _second_order(ctx, *grads):
    raise RuntimeError(
        "patch_sample_jets: the Triton backend is differentiable to first order; "
        "use backend='torch' for higher-order derivatives of the jets"
    )


forward_op.register_autograd(
    op_autograd.first_order_backward(backward_op), setup_context=op_autograd.save_tensor_inputs
)
backward_op.register_autograd(_second_order, setup_context=op_autograd.no_setup)


def triton_patch_sample_jets(
    image: torch.Tensor,
    coords: torch.Tensor,
    step: torch.Tensor,
    patch_size: int,
    padding: str,
    derivatives: str = "hessian",
) -> torch.Tensor:
    """Patch jets (K, B, Q, C, p, p) by the Triton kernels (module docstring); names for
    ``padding`` ("zeros", "border", "reflection") and ``derivatives`` ("gradient", "laplacian",
    "hessian")."""
    if padding not in PADDING_CODES:
        raise ValueError(f"padding must be one of {sorted(PADDING_CODES)}, got {padding!r}")
    if derivatives not in _MODE_NAMES:
        raise ValueError(
            f"derivatives must be one of {sorted(_MODE_NAMES)}, got {derivatives!r}"
        )
    return forward_op(
        image, coords, step, int(patch_size), PADDING_CODES[padding], _MODE_NAMES[derivatives]
    )
