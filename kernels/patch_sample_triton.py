"""Fused Triton kernels of ``patch_sample``: forward, backward and double backward.

Shapes and conventions are those of ``funknn_fast.patch_sample``: image (B, C, H, W), coords
(B, Q, 2) holding (x, y) in the ``grid_sample`` convention with ``align_corners=False`` (pixel
position px = ((x + 1) W - 1) / 2), step (2,) = (step_x, step_y) in input pixels, result
(B, Q, C, p, p) with out[b, q, c, i, j] = I_c(px + (j - (p-1)/2) step_x,
py + (i - (p-1)/2) step_y), I_c the Keys cubic (a = -0.5) interpolant over the taps
floor(.) - 1 .. floor(.) + 2. The math is the one of ``csrc/patch_sample.cpp`` /
``csrc/patch_sample_math.h`` (same padding, NaN and 2^40 clamp rules).

Three ``torch.library`` custom ops, usable on CUDA tensors and, under ``TRITON_INTERPRET=1``, on
CPU tensors (that is how CI checks the kernels):

* ``funknn_fast::triton_patch_sample`` -- forward, separable. A program handles BLOCK lanes, one
  lane per (query, patch column j): the column's x taps and Keys weights are computed once; the
  lane then walks down the p patch rows. Each patch row i needs 4 tap rows of the image, filtered
  horizontally (4 taps, one vector load of up to 4 channels of a channels-last copy each); the
  window of the current 4 filtered tap rows stays in registers, keyed by unpadded row index, and
  moving to the next patch row reads only the rows that enter it, one per sub-step (as many
  sub-steps as the most rows any lane of the program needs): a tap row shared by consecutive
  patch rows is read once, the column footprint of about (p-1) step + 4 rows instead of 4 p, so
  4 (p + 3) tap reads per column at step 1 instead of 16 p. The vertical filter (4 row weights,
  computed once per row) then gives the sample.
* ``funknn_fast::triton_patch_sample_backward`` -- gradients w.r.t. image, coords and step, the
  adjoint of the same structure: a lane per (query, column) walks down the rows, the coordinate
  terms reuse the filtered tap rows (value and x derivative) like the forward, and the image
  gradient of a tap row is accumulated in registers while the row is in the window and scattered
  (4 atomics per row and column) once when it leaves: about 4 (p + 3) atomics per column instead
  of 16 p. Its autograd is the double backward, so ``create_graph=True`` gives exact second
  derivatives.
* ``funknn_fast::triton_patch_sample_double_backward`` -- the backward's backward (Hessian terms
  in the positions, mixed image terms), per (query, sample) tiles; third order is not provided
  (use ``backend="torch"``).

Deterministic sums: per-lane coordinate partials are summed over the patch columns on the host
(fixed order), the step gradient has one partial per program summed on the host; the double
backward reduces per query in registers. Image gradient: relaxed (fence-free) float atomics into
an fp32 (fp64 for float64 images) buffer by default, fast but not bitwise reproducible run to
run; under ``torch.use_deterministic_algorithms(True)`` every contribution is written with its
image index and summed by PyTorch's deterministic ``index_put_(accumulate=True)``, in chunks of
queries (slower, bounded extra memory).

Integers: image offsets in 32 bits (H W < 2^29), query and output offsets in 64 bits whatever
width Triton gives the int arguments (32 bits below 2^31). Unpadded tap indices are 64-bit
(positions are clamped at 2^40); reflection's modulo, a long emulated sequence in 64 bits, runs
in 32 bits when every position of the program is within 2^30 pixels (one test per program).
Patch sizes up to ``MAX_PATCH_SIZE``.

Launches run on the tensors' device and its current stream (``torch.cuda.device`` guard), not on
the current device.

Low precision: float16/bfloat16 images need float32 coords and step; weights and accumulation
in float32, the result in the image dtype.
"""

import contextlib
import os

import torch
import triton
import triton.language as tl

from funknn_fast.ops import op_autograd
from funknn_fast.ops.padding import PADDING_CODES

MAX_POSITION: tl.constexpr = tl.constexpr(1099511627776.0)  # 2^40 pixels, as the C++ kernels
# Programs whose positions all lie within this many pixels use 32-bit tap indices.
NARROW_LIMIT: tl.constexpr = tl.constexpr(1073741824.0)  # 2^30
MAX_PATCH_SIZE = 64  # the per-sample tiles of the double backward hold next_pow2(p^2) samples

_COMPUTE_DTYPES = (torch.float32, torch.float64)
_IMAGE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_CONTRIBUTIONS_PER_CHUNK = 1 << 24


def launch_device(tensor: torch.Tensor):
    """Context of a kernel launch for ``tensor``: its CUDA device (Triton launches on the current
    device and its current stream), nothing for CPU tensors (the interpreter)."""
    if tensor.device.type == "cuda":
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


# ------------------------------------------------------------------------------------ device math


@triton.jit
def _axis_position(u):
    """(first, t, inside) of pixel positions u: the unpadded index floor(u) - 1 of the first tap
    (int64), the fraction t in [0, 1) (NaN for non-finite u, whose index is then -1) and whether
    u is within the 2^40 clamp."""
    nan_or_zero = u - u
    finite = nan_or_zero == 0
    inside = (~finite) | ((u <= MAX_POSITION) & (u >= -MAX_POSITION))
    clamped = tl.where(u < -MAX_POSITION, -MAX_POSITION, u)
    clamped = tl.where(u > MAX_POSITION, MAX_POSITION, clamped)
    base = tl.where(finite, tl.floor(clamped), 0.0)
    t = tl.where(finite, clamped - base, nan_or_zero)
    return base.to(tl.int64) - 1, t, inside


@triton.jit
def _pad_taps(first, n, narrow, PADDING: tl.constexpr):
    """Indices (int32) in [0, n) of the taps first .. first + 3 of an axis of length n and their
    validity (False only for taps outside under zeros padding, whose index is then 0).
    ``narrow`` (a scalar: every |first| of the program below 2^30) takes reflection's modulo in
    32 bits instead of 64 (a 64-bit remainder is a long emulated sequence on GPUs)."""
    n = n.to(tl.int32)  # H, W < 2^29 (Triton types them i64 in launches of huge inputs)
    if PADDING == 2:  # reflection, half-sample symmetric, period 2n
        period = 2 * n
        if narrow:
            m0 = first.to(tl.int32) % period
        else:
            m0 = (first % period).to(tl.int32)
        m0 = tl.where(m0 < 0, m0 + period, m0)
        m1 = tl.where(m0 + 1 >= period, m0 + 1 - period, m0 + 1)
        m2 = tl.where(m1 + 1 >= period, m1 + 1 - period, m1 + 1)
        m3 = tl.where(m2 + 1 >= period, m2 + 1 - period, m2 + 1)
        i0 = tl.where(m0 >= n, period - 1 - m0, m0)
        i1 = tl.where(m1 >= n, period - 1 - m1, m1)
        i2 = tl.where(m2 >= n, period - 1 - m2, m2)
        i3 = tl.where(m3 >= n, period - 1 - m3, m3)
        v0 = m0 == m0
        v1 = v0
        v2 = v0
        v3 = v0
    else:
        f = tl.minimum(tl.maximum(first, -8), n + 8).to(tl.int32)
        if PADDING == 1:  # border
            i0 = tl.minimum(tl.maximum(f, 0), n - 1)
            i1 = tl.minimum(tl.maximum(f + 1, 0), n - 1)
            i2 = tl.minimum(tl.maximum(f + 2, 0), n - 1)
            i3 = tl.minimum(tl.maximum(f + 3, 0), n - 1)
            v0 = f == f
            v1 = v0
            v2 = v0
            v3 = v0
        else:  # zeros
            v0 = (f >= 0) & (f < n)
            v1 = (f + 1 >= 0) & (f + 1 < n)
            v2 = (f + 2 >= 0) & (f + 2 < n)
            v3 = (f + 3 >= 0) & (f + 3 < n)
            i0 = tl.where(v0, f, 0)
            i1 = tl.where(v1, f + 1, 0)
            i2 = tl.where(v2, f + 2, 0)
            i3 = tl.where(v3, f + 3, 0)
    return i0, i1, i2, i3, v0, v1, v2, v3


@triton.jit
def _keys(t, v0, v1, v2, v3):
    """Keys weights (a = -0.5) of the 4 taps at fraction t, zero for invalid taps."""
    t2 = t * t
    t3 = t2 * t
    w0 = tl.where(v0, 0.5 * (-t3 + 2.0 * t2 - t), 0.0)
    w1 = tl.where(v1, 0.5 * (3.0 * t3 - 5.0 * t2 + 2.0), 0.0)
    w2 = tl.where(v2, 0.5 * (-3.0 * t3 + 4.0 * t2 + t), 0.0)
    w3 = tl.where(v3, 0.5 * (t3 - t2), 0.0)
    return w0, w1, w2, w3


@triton.jit
def _keys_d1(t, v0, v1, v2, v3):
    """d/dt of the Keys weights, zero for invalid taps (pass ``valid & inside``)."""
    t2 = t * t
    d0 = tl.where(v0, 0.5 * (-3.0 * t2 + 4.0 * t - 1.0), 0.0)
    d1 = tl.where(v1, 0.5 * (9.0 * t2 - 10.0 * t), 0.0)
    d2 = tl.where(v2, 0.5 * (-9.0 * t2 + 8.0 * t + 1.0), 0.0)
    d3 = tl.where(v3, 0.5 * (3.0 * t2 - 2.0 * t), 0.0)
    return d0, d1, d2, d3


@triton.jit
def _keys_d2(t, v0, v1, v2, v3):
    """d2/dt2 of the Keys weights, zero for invalid taps (pass ``valid & inside``)."""
    e0 = tl.where(v0, -3.0 * t + 2.0, 0.0)
    e1 = tl.where(v1, 9.0 * t - 5.0, 0.0)
    e2 = tl.where(v2, -9.0 * t + 4.0, 0.0)
    e3 = tl.where(v3, 3.0 * t - 1.0, 0.0)
    return e0, e1, e2, e3


@triton.jit
def _axis_taps(u, n, PADDING: tl.constexpr):
    """Taps of positions u on an axis of length n: 4 indices (int32) and, per tap, the Keys weight
    and its first and second derivatives in u (zeroed for taps outside with zeros padding;
    derivatives zeroed past the 2^40 clamp). Non-finite u: NaN weights, index 0. 64-bit index
    arithmetic (the per-sample kernels: double backward and jets)."""
    first, t, inside = _axis_position(u)
    i0, i1, i2, i3, v0, v1, v2, v3 = _pad_taps(first, n, False, PADDING)
    w0, w1, w2, w3 = _keys(t, v0, v1, v2, v3)
    d0, d1, d2, d3 = _keys_d1(t, v0 & inside, v1 & inside, v2 & inside, v3 & inside)
    e0, e1, e2, e3 = _keys_d2(t, v0 & inside, v1 & inside, v2 & inside, v3 & inside)
    return i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, e0, e1, e2, e3


@triton.jit
def _narrow(px, py, sx, sy, mask, P: tl.constexpr):
    """True (a scalar) when every masked-in lane's patch stays within 2^30 pixels: the program
    can then take reflection's modulo in 32 bits."""
    radius = (P - 1) * 0.5 * tl.maximum(tl.abs(sx), tl.abs(sy)) + 8.0
    reach = tl.maximum(tl.abs(px), tl.abs(py)) + radius
    far = (~(reach < NARROW_LIMIT)) & mask & (reach == reach)  # NaN: index -1, narrow
    return tl.max(far.to(tl.int32), axis=0) == 0


@triton.jit
def _row_sums(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, e0, e1, e2, e3, mask):
    """Sums over the 4 x taps of one tap row: value, d/dx and d2/dx2 (in the weights' dtype)."""
    a0 = tl.load(row_ptr + i0, mask=mask, other=0.0).to(w0.dtype)
    a1 = tl.load(row_ptr + i1, mask=mask, other=0.0).to(w0.dtype)
    a2 = tl.load(row_ptr + i2, mask=mask, other=0.0).to(w0.dtype)
    a3 = tl.load(row_ptr + i3, mask=mask, other=0.0).to(w0.dtype)
    value = w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3
    d_value = d0 * a0 + d1 * a1 + d2 * a2 + d3 * a3
    dd_value = e0 * a0 + e1 * a1 + e2 * a2 + e3 * a3
    return value, d_value, dd_value


@triton.jit
def _row_value_and_slope(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, d0, d1, d2, d3, mask):
    """One tap row filtered horizontally: value and d/dx (4 loads of one channel plane)."""
    a0 = tl.load(row_ptr + i0, mask=mask, other=0.0).to(w0.dtype)
    a1 = tl.load(row_ptr + i1, mask=mask, other=0.0).to(w0.dtype)
    a2 = tl.load(row_ptr + i2, mask=mask, other=0.0).to(w0.dtype)
    a3 = tl.load(row_ptr + i3, mask=mask, other=0.0).to(w0.dtype)
    return w0 * a0 + w1 * a1 + w2 * a2 + w3 * a3, d0 * a0 + d1 * a1 + d2 * a2 + d3 * a3


@triton.jit
def _vector_row(row_ptr, i0, i1, i2, i3, w0, w1, w2, w3, channel, mask, CB: tl.constexpr):
    """Forward: weighted sum of 4 taps of one row of the channels-last image, CB channels each."""
    a0 = tl.load(row_ptr + (i0 * CB)[:, None] + channel[None, :], mask=mask, other=0.0)
    a1 = tl.load(row_ptr + (i1 * CB)[:, None] + channel[None, :], mask=mask, other=0.0)
    a2 = tl.load(row_ptr + (i2 * CB)[:, None] + channel[None, :], mask=mask, other=0.0)
    a3 = tl.load(row_ptr + (i3 * CB)[:, None] + channel[None, :], mask=mask, other=0.0)
    return (
        w0[:, None] * a0.to(w0.dtype)
        + w1[:, None] * a1.to(w0.dtype)
        + w2[:, None] * a2.to(w0.dtype)
        + w3[:, None] * a3.to(w0.dtype)
    )


@triton.jit
def _scatter_row(gimg_ptr, val_ptr, idx_ptr, row_index, i0, i1, i2, i3, v0, v1, v2, v3, mask,
                 slot, slot_mask, DETERMINISTIC: tl.constexpr):
    """Adds v_k to the image gradient at row_index + i_k (relaxed atomics: no fences, the sums
    need atomicity only), or, deterministic, records the 4 (value, index) pairs at slot ..
    slot + 3 for a later ordered sum."""
    if DETERMINISTIC:
        tl.store(val_ptr + slot, tl.where(mask, v0, 0.0), mask=slot_mask)
        tl.store(val_ptr + slot + 1, tl.where(mask, v1, 0.0), mask=slot_mask)
        tl.store(val_ptr + slot + 2, tl.where(mask, v2, 0.0), mask=slot_mask)
        tl.store(val_ptr + slot + 3, tl.where(mask, v3, 0.0), mask=slot_mask)
        tl.store(idx_ptr + slot, tl.where(mask, row_index + i0, 0), mask=slot_mask)
        tl.store(idx_ptr + slot + 1, tl.where(mask, row_index + i1, 0), mask=slot_mask)
        tl.store(idx_ptr + slot + 2, tl.where(mask, row_index + i2, 0), mask=slot_mask)
        tl.store(idx_ptr + slot + 3, tl.where(mask, row_index + i3, 0), mask=slot_mask)
    else:
        tl.atomic_add(gimg_ptr + row_index + i0, v0, mask=mask, sem="relaxed")
        tl.atomic_add(gimg_ptr + row_index + i1, v1, mask=mask, sem="relaxed")
        tl.atomic_add(gimg_ptr + row_index + i2, v2, mask=mask, sem="relaxed")
        tl.atomic_add(gimg_ptr + row_index + i3, v3, mask=mask, sem="relaxed")


# ------------------------------------------------------------------------------------ kernels


@triton.jit
def _lane_positions(coords_ptr, step_ptr, lane, mask, Q, H, W, P: tl.constexpr):
    """Lanes (query, column): flat query bq = b Q + q, batch b, column j, the query's pixel
    position (px, py), the column's x position ux and offset ox, and the step."""
    bq = lane // P
    j = (lane - bq * P).to(tl.int32)
    b = bq // Q
    cx = tl.load(coords_ptr + 2 * bq, mask=mask, other=0.0)
    cy = tl.load(coords_ptr + 2 * bq + 1, mask=mask, other=0.0)
    sx = tl.load(step_ptr)
    sy = tl.load(step_ptr + 1)
    px = ((cx + 1.0) * W - 1.0) * 0.5
    py = ((cy + 1.0) * H - 1.0) * 0.5
    ox = j.to(cx.dtype) - (P - 1) * 0.5
    return bq, j, b, px, py, px + ox * sx, ox, sx, sy


@triton.jit
def _pad_index(v, n, narrow, PADDING: tl.constexpr):
    """Index (int32) in [0, n) of the unpadded tap index v (int64); taps outside under zeros
    padding map to 0 (their weight is zero). ``narrow`` as in ``_pad_taps``."""
    n = n.to(tl.int32)
    if PADDING == 2:
        period = 2 * n
        if narrow:
            m = v.to(tl.int32) % period
        else:
            m = (v % period).to(tl.int32)
        m = tl.where(m < 0, m + period, m)
        index = tl.where(m >= n, period - 1 - m, m)
    else:
        f = tl.minimum(tl.maximum(v, -1), n).to(tl.int32)
        if PADDING == 1:
            index = tl.minimum(tl.maximum(f, 0), n - 1)
        else:
            index = tl.where((f >= 0) & (f < n), f, 0)
    return index


@triton.jit
def _row_weights(py, i, sy, H, P: tl.constexpr, PADDING: tl.constexpr):
    """Patch row i: its offset oy, the unpadded first tap row, the fraction, the clamp flag, the
    validity of its 4 tap rows (zeros padding) and their Keys weights."""
    oy = i - (P - 1) * 0.5
    first, t, inside = _axis_position(py + oy * sy)
    if PADDING == 0:
        f = tl.minimum(tl.maximum(first, -8), H + 8).to(tl.int32)
        v0 = (f >= 0) & (f < H)
        v1 = (f + 1 >= 0) & (f + 1 < H)
        v2 = (f + 2 >= 0) & (f + 2 < H)
        v3 = (f + 3 >= 0) & (f + 3 < H)
    else:
        v0 = first == first
        v1 = v0
        v2 = v0
        v3 = v0
    w0, w1, w2, w3 = _keys(t, v0, v1, v2, v3)
    return oy, first, t, inside, v0, v1, v2, v3, w0, w1, w2, w3


@triton.jit
def _window_start(py, sy, P: tl.constexpr):
    """Unpadded first tap row of the window before patch row 0: 4 rows above row 0's, so row 0
    reads its 4 tap rows."""
    first, _, _ = _axis_position(py - (P - 1) * 0.5 * sy)
    return first - 4


@triton.jit
def _most_new_rows(py, sy, mask, P: tl.constexpr):
    """The most tap rows (at most 4) any masked-in lane of the program reads between two
    consecutive patch rows: max |first tap row of row i - that of row i - 1| (a scalar)."""
    previous, _, _ = _axis_position(py - (P - 1) * 0.5 * sy)
    most = previous - previous
    for i in range(1, P):
        first, _, _ = _axis_position(py + (i - (P - 1) * 0.5) * sy)
        most = tl.maximum(most, tl.abs(first - previous))
        previous = first
    return tl.max(tl.where(mask, tl.minimum(most, 4), 0).to(tl.int32), axis=0)


@triton.jit
def _entering_row(first, shift, k):
    """Unpadded tap row entering the window at sub-step k of a move by ``shift`` (clamped to
    [-4, 4]) to the window first .. first + 3: downwards (shift > 0) rows enter at the bottom,
    upwards at the top."""
    return tl.where(shift > 0, first + 4 - shift + k, first - shift - 1 - k)


@triton.jit
def _shift_window(h0, h1, h2, h3, new, down, up):
    """The 4-slot window after one sub-step: down, slot 0 leaves and ``new`` enters as slot 3;
    up, slot 3 leaves and ``new`` enters as slot 0; else unchanged."""
    n0 = tl.where(down, h1, tl.where(up, new, h0))
    n1 = tl.where(down, h2, tl.where(up, h0, h1))
    n2 = tl.where(down, h3, tl.where(up, h1, h2))
    n3 = tl.where(down, new, tl.where(up, h2, h3))
    return n0, n1, n2, n3


@triton.jit(do_not_specialize=["total", "Q", "C", "H", "W", "NCH"])
def _forward_kernel(
    image_ptr, coords_ptr, step_ptr, out_ptr, total, Q, C, H, W, NCH,
    P: tl.constexpr, CB: tl.constexpr, PADDING: tl.constexpr, BLOCK: tl.constexpr,
):
    # Lane (query, column j): x taps once; down the rows, a window of the 4 tap rows of the
    # current patch row, each filtered horizontally (CB channels of a channels-last copy per
    # vector load); moving to the next row reads only the tap rows that enter the window, one
    # per sub-step (as many sub-steps as the most rows any lane of the program needs).
    PP: tl.constexpr = P * P
    lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    emask = lane < total
    bq, j, b, px, py, ux, _, sx, sy = _lane_positions(coords_ptr, step_ptr, lane, emask, Q, H, W,
                                                      P)
    narrow = _narrow(px, py, sx, sy, emask, P)
    fx, tx, _ = _axis_position(ux)
    x0, x1, x2, x3, vx0, vx1, vx2, vx3 = _pad_taps(fx, W, narrow, PADDING)
    wx0, wx1, wx2, wx3 = _keys(tx, vx0, vx1, vx2, vx3)
    most = _most_new_rows(py, sy, emask, P)
    start = _window_start(py, sy, P)
    channel = tl.arange(0, CB)
    lane_mask = emask[:, None] & (channel[None, :] < CB)
    row_stride = W * CB
    out_lane = out_ptr + (bq * C * PP + j)[:, None]
    for chunk in range(0, NCH):
        plane = image_ptr + ((b * NCH + chunk) * H * row_stride)[:, None]
        c = chunk * CB + channel
        out_c = out_lane + (c * PP)[None, :]
        smask = emask[:, None] & (c < C)[None, :]
        previous = start
        h0 = tl.zeros([BLOCK, CB], dtype=wx0.dtype)
        h1 = h0
        h2 = h0
        h3 = h0
        for i in range(0, P):
            _, first, _, _, _, _, _, _, wy0, wy1, wy2, wy3 = _row_weights(py, i, sy, H, P,
                                                                          PADDING)
            shift = tl.minimum(tl.maximum(first - previous, -4), 4).to(tl.int32)
            previous = first
            for k in range(0, tl.where(i == 0, 4, most)):
                down = shift > k
                up = -shift > k
                row = _pad_index(_entering_row(first, shift, k), H, narrow, PADDING)
                new = _vector_row(plane + (row * row_stride)[:, None], x0, x1, x2, x3, wx0, wx1,
                                  wx2, wx3, channel, lane_mask & (down | up)[:, None], CB)
                h0, h1, h2, h3 = _shift_window(h0, h1, h2, h3, new, down[:, None], up[:, None])
            acc = wy0[:, None] * h0 + wy1[:, None] * h1 + wy2[:, None] * h2 + wy3[:, None] * h3
            tl.store(out_c + i * P, acc.to(out_ptr.dtype.element_ty), mask=smask)


@triton.jit(do_not_specialize=["lane_begin", "lane_end", "partial_offset", "Q", "C", "H", "W"])
def _backward_kernel(
    go_ptr, image_ptr, coords_ptr, step_ptr, gimg_ptr, glane_ptr, partial_ptr, val_ptr, idx_ptr,
    lane_begin, lane_end, partial_offset, Q, C, H, W,
    P: tl.constexpr, PADDING: tl.constexpr, BLOCK: tl.constexpr, NEED_IMAGE: tl.constexpr,
    NEED_POS: tl.constexpr, DETERMINISTIC: tl.constexpr,
):
    # The adjoint of the forward, per lane (query, column), summed over channels and rows:
    # d/dpx, d/dpy and d/dstep_y of <grad, out> (stored per lane, reduced over the columns on
    # the host, and per program for the step) from the same window of filtered tap rows (values
    # and x slopes); the image gradient of a tap row is accumulated while the row is in the
    # window and scattered (4 taps) when it leaves.
    PP: tl.constexpr = P * P
    pid = tl.program_id(0)
    local = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    lane = lane_begin + local
    emask = lane < lane_end
    bq, j, b, px, py, ux, ox, sx, sy = _lane_positions(coords_ptr, step_ptr, lane, emask, Q, H,
                                                       W, P)
    narrow = _narrow(px, py, sx, sy, emask, P)
    fx, tx, inside_x = _axis_position(ux)
    x0, x1, x2, x3, vx0, vx1, vx2, vx3 = _pad_taps(fx, W, narrow, PADDING)
    wx0, wx1, wx2, wx3 = _keys(tx, vx0, vx1, vx2, vx3)
    dx0, dx1, dx2, dx3 = _keys_d1(tx, vx0 & inside_x, vx1 & inside_x, vx2 & inside_x,
                                  vx3 & inside_x)
    most = _most_new_rows(py, sy, emask, P)
    start = _window_start(py, sy, P)
    zero = tl.zeros([BLOCK], dtype=wx0.dtype)
    gpx = zero
    gpy = zero
    gsy = zero
    # Deterministic records: 4 per (lane, channel, sub-step); at most 4 (P + 1) sub-steps.
    slot_base = local * C * ((P + 1) * 16)
    for c in range(0, C):
        plane = (b * C + c) * H * W
        go_lane = go_ptr + (bq * C + c) * PP + j
        slot = slot_base + c * ((P + 1) * 16)
        previous = start
        h0 = zero
        h1 = zero
        h2 = zero
        h3 = zero
        g0 = zero
        g1 = zero
        g2 = zero
        g3 = zero
        a0 = zero
        a1 = zero
        a2 = zero
        a3 = zero
        y0 = tl.zeros([BLOCK], dtype=tl.int32)
        y1 = y0
        y2 = y0
        y3 = y0
        for i in range(0, P):
            oy, first, ty, inside_y, vy0, vy1, vy2, vy3, wy0, wy1, wy2, wy3 = _row_weights(
                py, i, sy, H, P, PADDING)
            shift = tl.minimum(tl.maximum(first - previous, -4), 4).to(tl.int32)
            previous = first
            for k in range(0, tl.where(i == 0, 4, most)):
                down = shift > k
                up = -shift > k
                row = _pad_index(_entering_row(first, shift, k), H, narrow, PADDING)
                if NEED_IMAGE:
                    # The leaving row's gradient is complete (nothing leaves before row 0).
                    _scatter_row(gimg_ptr, val_ptr, idx_ptr, plane + tl.where(down, y0, y3) * W,
                                 x0, x1, x2, x3, tl.where(down, a0, a3) * wx0,
                                 tl.where(down, a0, a3) * wx1, tl.where(down, a0, a3) * wx2,
                                 tl.where(down, a0, a3) * wx3, emask & (down | up) & (i > 0),
                                 slot, emask, DETERMINISTIC)
                    slot += 4
                    a0, a1, a2, a3 = _shift_window(a0, a1, a2, a3, zero, down, up)
                    y0, y1, y2, y3 = _shift_window(y0, y1, y2, y3, row, down, up)
                if NEED_POS:
                    h, g = _row_value_and_slope(image_ptr + plane + row * W, x0, x1, x2, x3, wx0,
                                                wx1, wx2, wx3, dx0, dx1, dx2, dx3,
                                                emask & (down | up))
                    h0, h1, h2, h3 = _shift_window(h0, h1, h2, h3, h, down, up)
                    g0, g1, g2, g3 = _shift_window(g0, g1, g2, g3, g, down, up)
            go = tl.load(go_lane + i * P, mask=emask, other=0.0).to(wx0.dtype)
            if NEED_POS:
                dy0, dy1, dy2, dy3 = _keys_d1(ty, vy0 & inside_y, vy1 & inside_y,
                                              vy2 & inside_y, vy3 & inside_y)
                gpx += go * (wy0 * g0 + wy1 * g1 + wy2 * g2 + wy3 * g3)
                slope_y = go * (dy0 * h0 + dy1 * h1 + dy2 * h2 + dy3 * h3)
                gpy += slope_y
                gsy += oy * slope_y
            if NEED_IMAGE:
                a0 += go * wy0
                a1 += go * wy1
                a2 += go * wy2
                a3 += go * wy3
        if NEED_IMAGE:
            for _ in range(0, 4):  # the rows still in the window leave
                _scatter_row(gimg_ptr, val_ptr, idx_ptr, plane + y0 * W, x0, x1, x2, x3,
                             a0 * wx0, a0 * wx1, a0 * wx2, a0 * wx3, emask, slot, emask,
                             DETERMINISTIC)
                slot += 4
                a0 = a1
                a1 = a2
                a2 = a3
                y0 = y1
                y1 = y2
                y2 = y3
    if NEED_POS:
        gpx = tl.where(emask, gpx, 0.0)
        tl.store(glane_ptr + 2 * lane, gpx, mask=emask)
        tl.store(glane_ptr + 2 * lane + 1, gpy, mask=emask)
        partial = partial_ptr + 2 * (partial_offset + pid)
        tl.store(partial, tl.sum(gpx * ox, axis=0))
        tl.store(partial + 1, tl.sum(tl.where(emask, gsy, 0.0), axis=0))


# ---------------------------------------------- per-sample kernels (double backward; jets)


@triton.jit
def _element_positions(coords_ptr, step_ptr, total, Q, H, W, P: tl.constexpr,
                       BLOCK: tl.constexpr):
    """Forward: this program's BLOCK (query, sample) elements e (mask emask), their flat query
    index bq = b Q + q, sample s = i P + j, batch b, and pixel positions (ux, uy)."""
    PP: tl.constexpr = P * P
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    emask = e < total
    bq = e // PP
    s = (e - bq * PP).to(tl.int32)
    i = s // P
    j = s - i * P
    b = bq // Q
    cx = tl.load(coords_ptr + 2 * bq, mask=emask, other=0.0)
    cy = tl.load(coords_ptr + 2 * bq + 1, mask=emask, other=0.0)
    sx = tl.load(step_ptr)
    sy = tl.load(step_ptr + 1)
    ux = ((cx + 1.0) * W - 1.0) * 0.5 + (j.to(cx.dtype) - (P - 1) * 0.5) * sx
    uy = ((cy + 1.0) * H - 1.0) * 0.5 + (i.to(cy.dtype) - (P - 1) * 0.5) * sy
    return e, emask, bq, s, b, ux, uy


@triton.jit
def _tile_geometry(coords_ptr, step_ptr, q, qmask, s, H, W, P: tl.constexpr):
    """Positions of the (query, sample) tile and their taps on both axes."""
    i = s // P
    j = s - i * P
    cx = tl.load(coords_ptr + 2 * q, mask=qmask, other=0.0)
    cy = tl.load(coords_ptr + 2 * q + 1, mask=qmask, other=0.0)
    sx = tl.load(step_ptr)
    sy = tl.load(step_ptr + 1)
    ox = j.to(cx.dtype) - (P - 1) * 0.5
    oy = i.to(cy.dtype) - (P - 1) * 0.5
    ux = (((cx + 1.0) * W - 1.0) * 0.5)[:, None] + (ox * sx)[None, :]
    uy = (((cy + 1.0) * H - 1.0) * 0.5)[:, None] + (oy * sy)[None, :]
    return ox, oy, ux, uy


@triton.jit(do_not_specialize=["q_begin", "q_end", "partial_offset", "Q", "C", "H", "W"])
def _double_backward_kernel(
    go_ptr, image_ptr, coords_ptr, step_ptr, vimg_ptr, vcoords_ptr, vstep_ptr,
    ggo_ptr, gimg_ptr, gcoords_ptr, partial_ptr, val_ptr, idx_ptr,
    q_begin, q_end, partial_offset, Q, C, H, W,
    P: tl.constexpr, PPAD: tl.constexpr, PADDING: tl.constexpr, BLOCK_Q: tl.constexpr,
    HAS_VIMAGE: tl.constexpr, HAS_DIRECTION: tl.constexpr, NEED_GO: tl.constexpr,
    NEED_IMAGE: tl.constexpr, NEED_POS: tl.constexpr, DETERMINISTIC: tl.constexpr,
):
    PP: tl.constexpr = P * P
    pid = tl.program_id(0)
    q_local = pid.to(tl.int64) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q = q_begin + q_local
    qmask = q < q_end
    s = tl.arange(0, PPAD)
    mask = qmask[:, None] & (s < PP)[None, :]
    ox, oy, ux, uy = _tile_geometry(coords_ptr, step_ptr, q, qmask, s, H, W, P)
    x0, x1, x2, x3, wx0, wx1, wx2, wx3, dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3 = _axis_taps(
        ux, W, PADDING)
    y0, y1, y2, y3, wy0, wy1, wy2, wy3, dy0, dy1, dy2, dy3, ey0, ey1, ey2, ey3 = _axis_taps(
        uy, H, PADDING)
    # Displacement of every sample along the direction (v_coords, v_step), in pixels.
    dux = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
    duy = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
    if HAS_DIRECTION:
        vcx = tl.load(vcoords_ptr + 2 * q, mask=qmask, other=0.0) * (W * 0.5)
        vcy = tl.load(vcoords_ptr + 2 * q + 1, mask=qmask, other=0.0) * (H * 0.5)
        dux += vcx[:, None] + (ox * tl.load(vstep_ptr))[None, :]
        duy += vcy[:, None] + (oy * tl.load(vstep_ptr + 1))[None, :]
    b = q // Q
    gpx = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
    gpy = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
    slot = (q_local * C)[:, None] * (PPAD * 16) + (s * 16)[None, :]
    slot_mask = qmask[:, None] & (s < PPAD)[None, :]
    for c in range(0, C):
        plane = ((b * C + c) * H * W)[:, None]
        out_offset = ((q * C + c) * PP)[:, None] + s[None, :]
        go = tl.load(go_ptr + out_offset, mask=mask, other=0.0).to(ux.dtype)
        fx = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
        fy = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
        fxx = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
        fxy = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
        fyy = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
        gv = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
        gvx = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
        gvy = tl.zeros([BLOCK_Q, PPAD], dtype=ux.dtype)
        if HAS_DIRECTION:
            a0, ax0, axx0 = _row_sums(image_ptr + plane + y0 * W, x0, x1, x2, x3, wx0, wx1, wx2,
                                      wx3, dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3, mask)
            a1, ax1, axx1 = _row_sums(image_ptr + plane + y1 * W, x0, x1, x2, x3, wx0, wx1, wx2,
                                      wx3, dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3, mask)
            a2, ax2, axx2 = _row_sums(image_ptr + plane + y2 * W, x0, x1, x2, x3, wx0, wx1, wx2,
                                      wx3, dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3, mask)
            a3, ax3, axx3 = _row_sums(image_ptr + plane + y3 * W, x0, x1, x2, x3, wx0, wx1, wx2,
                                      wx3, dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3, mask)
            fx += wy0 * ax0 + wy1 * ax1 + wy2 * ax2 + wy3 * ax3
            fy += dy0 * a0 + dy1 * a1 + dy2 * a2 + dy3 * a3
            fxx += wy0 * axx0 + wy1 * axx1 + wy2 * axx2 + wy3 * axx3
            fxy += dy0 * ax0 + dy1 * ax1 + dy2 * ax2 + dy3 * ax3
            fyy += ey0 * a0 + ey1 * a1 + ey2 * a2 + ey3 * a3
        if HAS_VIMAGE:
            b0, bx0, _ = _row_sums(vimg_ptr + plane + y0 * W, x0, x1, x2, x3, wx0, wx1, wx2, wx3,
                                   dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3, mask)
            b1, bx1, _ = _row_sums(vimg_ptr + plane + y1 * W, x0, x1, x2, x3, wx0, wx1, wx2, wx3,
                                   dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3, mask)
            b2, bx2, _ = _row_sums(vimg_ptr + plane + y2 * W, x0, x1, x2, x3, wx0, wx1, wx2, wx3,
                                   dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3, mask)
            b3, bx3, _ = _row_sums(vimg_ptr + plane + y3 * W, x0, x1, x2, x3, wx0, wx1, wx2, wx3,
                                   dx0, dx1, dx2, dx3, ex0, ex1, ex2, ex3, mask)
            gv += wy0 * b0 + wy1 * b1 + wy2 * b2 + wy3 * b3
            gvx += wy0 * bx0 + wy1 * bx1 + wy2 * bx2 + wy3 * bx3
            gvy += dy0 * b0 + dy1 * b1 + dy2 * b2 + dy3 * b3
        if NEED_GO:
            ggo = gv + fx * dux + fy * duy
            tl.store(ggo_ptr + out_offset, ggo.to(ggo_ptr.dtype.element_ty), mask=mask)
        if NEED_POS:
            gpx += go * (gvx + fxx * dux + fxy * duy)
            gpy += go * (gvy + fxy * dux + fyy * duy)
        if NEED_IMAGE:
            cslot = slot + c * (PPAD * 16)
            gx = go * dux
            gy = go * duy
            g = gx * wy0
            h = gy * dy0
            _scatter_row(gimg_ptr, val_ptr, idx_ptr, plane + y0 * W, x0, x1, x2, x3,
                         g * dx0 + h * wx0, g * dx1 + h * wx1, g * dx2 + h * wx2,
                         g * dx3 + h * wx3, mask, cslot, slot_mask, DETERMINISTIC)
            g = gx * wy1
            h = gy * dy1
            _scatter_row(gimg_ptr, val_ptr, idx_ptr, plane + y1 * W, x0, x1, x2, x3,
                         g * dx0 + h * wx0, g * dx1 + h * wx1, g * dx2 + h * wx2,
                         g * dx3 + h * wx3, mask, cslot + 4, slot_mask, DETERMINISTIC)
            g = gx * wy2
            h = gy * dy2
            _scatter_row(gimg_ptr, val_ptr, idx_ptr, plane + y2 * W, x0, x1, x2, x3,
                         g * dx0 + h * wx0, g * dx1 + h * wx1, g * dx2 + h * wx2,
                         g * dx3 + h * wx3, mask, cslot + 8, slot_mask, DETERMINISTIC)
            g = gx * wy3
            h = gy * dy3
            _scatter_row(gimg_ptr, val_ptr, idx_ptr, plane + y3 * W, x0, x1, x2, x3,
                         g * dx0 + h * wx0, g * dx1 + h * wx1, g * dx2 + h * wx2,
                         g * dx3 + h * wx3, mask, cslot + 12, slot_mask, DETERMINISTIC)
    if NEED_POS:
        gpx = tl.where(mask, gpx, 0.0)
        gpy = tl.where(mask, gpy, 0.0)
        tl.store(gcoords_ptr + 2 * q, tl.sum(gpx, axis=1) * (W * 0.5), mask=qmask)
        tl.store(gcoords_ptr + 2 * q + 1, tl.sum(gpy, axis=1) * (H * 0.5), mask=qmask)
        partial = partial_ptr + 2 * (partial_offset + pid)
        tl.store(partial, tl.sum(tl.sum(gpx * ox[None, :], axis=1), axis=0))
        tl.store(partial + 1, tl.sum(tl.sum(gpy * oy[None, :], axis=1), axis=0))


# ------------------------------------------------------------------------------------ launchers


def _compute_dtype(image: torch.Tensor) -> torch.dtype:
    """Weights, positions and accumulation dtype: float64 for float64 images, else float32."""
    return torch.float64 if image.dtype == torch.float64 else torch.float32


def _check_inputs(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int, padding: int
) -> None:
    if image.dim() != 4:
        raise ValueError(
            f"triton_patch_sample: image must be (B, C, H, W), got {tuple(image.shape)}"
        )
    if coords.dim() != 3 or coords.shape[2] != 2 or coords.shape[0] != image.shape[0]:
        raise ValueError(
            f"triton_patch_sample: coords must be (B, Q, 2) with B = {image.shape[0]}, "
            f"got {tuple(coords.shape)}"
        )
    if step.shape != (2,):
        raise ValueError(f"triton_patch_sample: step must have shape (2,), got {tuple(step.shape)}")
    if image.dtype not in _IMAGE_DTYPES:
        raise TypeError(f"triton_patch_sample: image dtype {image.dtype} is not supported")
    compute = _compute_dtype(image)
    if coords.dtype != compute or step.dtype != compute:
        low = " (16-bit coordinates resolve only about 1/512 of the image)"
        raise TypeError(
            f"triton_patch_sample: coords ({coords.dtype}) and step ({step.dtype}) must be "
            f"{compute} for a {image.dtype} image"
            + (low if image.dtype not in _COMPUTE_DTYPES else "")
        )
    if not 1 <= patch_size <= MAX_PATCH_SIZE:
        raise ValueError(
            f"triton_patch_sample: patch_size must be in [1, {MAX_PATCH_SIZE}], got {patch_size} "
            "(larger patches: backend='cuda' or 'torch')"
        )
    if padding not in PADDING_CODES.values():
        raise ValueError(f"triton_patch_sample: padding code must be 0, 1 or 2, got {padding}")
    if image.shape[2] < 1 or image.shape[3] < 1:
        raise ValueError("triton_patch_sample: image height and width must be >= 1")
    if 4 * image.shape[2] * image.shape[3] >= 2**31:
        raise ValueError("triton_patch_sample: H * W must be below 2^29 (32-bit in-plane indices)")
    devices = {image.device, coords.device, step.device}
    if len(devices) != 1:
        raise ValueError(f"triton_patch_sample: tensors are on several devices: {devices}")
    if image.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            f"triton_patch_sample: tensors on {image.device} need a CUDA device, or "
            "TRITON_INTERPRET=1 set before funknn_fast.kernels is imported"
        )


def _check_on_device(op: str, image: torch.Tensor, **tensors: torch.Tensor | None) -> None:
    """Incoming gradients must be on the image's device (a kernel would read another GPU's
    memory as its own)."""
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != image.device:
            raise ValueError(f"{op}: {name} is on {tensor.device} but image is on {image.device}")


def _launch_config(variable: str, default: tuple[int, int]) -> tuple[int, int]:
    """(lanes per program, warps) from environment variable ``variable`` ('block,warps', powers
    of two), else ``default``."""
    text = os.environ.get(variable, "")
    if not text:
        return default
    try:
        block, warps = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"{variable} must be 'block,warps' (powers of two), got {text!r}"
        ) from None
    if block < 16 or block & (block - 1) or warps < 1 or warps & (warps - 1):
        raise ValueError(f"{variable} needs powers of two, got {text!r}")
    return block, warps


FORWARD_CONFIG = (128, 4)  # one (query, column) lane per thread, CB channels in registers
BACKWARD_CONFIG = (128, 4)


def _forward_launch_config() -> tuple[int, int]:
    """(lanes per program, warps) of the forward; FUNKNN_TRITON_FORWARD_CONFIG='block,warps'."""
    return _launch_config("FUNKNN_TRITON_FORWARD_CONFIG", FORWARD_CONFIG)


def _backward_launch_config() -> tuple[int, int]:
    """(lanes per program, warps) of the backward; FUNKNN_TRITON_BACKWARD_CONFIG='block,warps'."""
    return _launch_config("FUNKNN_TRITON_BACKWARD_CONFIG", BACKWARD_CONFIG)


def _channel_chunk(channels: int, dtype: torch.dtype) -> int:
    """Channels per vector load of the forward's channels-last copy (at most 16 bytes)."""
    widest = 2 if dtype == torch.float64 else 4
    return min(triton.next_power_of_2(max(channels, 1)), widest)


def _channels_last_chunks(image: torch.Tensor, chunk: int) -> tuple[torch.Tensor, int]:
    """(B, C, H, W) -> (B, ceil(C / chunk), H, W, chunk) contiguous, missing channels zero."""
    batch, channels, height, width = image.shape
    chunks = -(-channels // chunk)
    if chunks * chunk != channels:
        image = torch.nn.functional.pad(image, (0, 0, 0, 0, 0, chunks * chunk - channels))
    image = image.reshape(batch, chunks, chunk, height, width).permute(0, 1, 3, 4, 2)
    return image.contiguous(), chunks


def _tile_config(patch_size: int, target: int) -> tuple[int, int, int]:
    """(padded samples per query, queries per program, warps) of the per-sample tile kernels
    (double backward, jets backward): about ``target`` (query, sample) pairs per program."""
    padded = triton.next_power_of_2(patch_size * patch_size)
    per_program = max(1, target // padded)
    return padded, per_program, max(1, min(8, padded * per_program // 32))


def _forward(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int, padding: int
) -> torch.Tensor:
    _check_inputs(image, coords, step, patch_size, padding)
    batch, channels = image.shape[:2]
    p = patch_size
    out = torch.empty(
        (batch, coords.shape[1], channels, p, p), dtype=image.dtype, device=image.device
    )
    block, warps = _forward_launch_config()
    return _launch_forward(_forward_kernel, out, image, coords, step, p, padding,
                           lanes_per_query=p, block=block, warps=warps)


def _launch_forward(
    kernel, out: torch.Tensor, image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor,
    patch_size: int, padding: int, *extra_args, lanes_per_query: int, block: int, warps: int,
    **extra_meta,
) -> torch.Tensor:
    """Host side of a forward kernel (this module's or the jets'), inputs already checked: one
    program per ``block`` lanes (``lanes_per_query`` per query) over a channels-last copy of the
    image, on the image's device, launched as ``kernel[grid](image_cl, coords, step, out, lanes,
    Q, C, H, W, chunks, *extra_args, P=, CB=, PADDING=, BLOCK=, num_warps=, **extra_meta)``;
    returns ``out``."""
    if out.numel() == 0:
        return out
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    compute = _compute_dtype(image)
    with launch_device(image):
        coords_c = coords.to(compute).contiguous()
        step_c = step.to(compute).contiguous()
        chunk = _channel_chunk(channels, image.dtype)
        image_cl, chunks = _channels_last_chunks(image, chunk)
        total = batch * queries * lanes_per_query
        kernel[(triton.cdiv(total, block),)](
            image_cl, coords_c, step_c, out, total, queries, channels, height, width, chunks,
            *extra_args, P=patch_size, CB=chunk, PADDING=padding, BLOCK=block, num_warps=warps,
            **extra_meta,
        )
    return out


class _Scratch:
    """Per-call buffers of the backward kernels: the image-gradient accumulator, or, in
    deterministic mode, the (value, index) contribution buffers of one chunk of queries."""

    def __init__(self, image: torch.Tensor, compute: torch.dtype, need_image: bool, taps: int):
        self.deterministic = need_image and torch.are_deterministic_algorithms_enabled()
        self.need_image = need_image
        self.taps_per_query = max(1, taps)  # C = 0: no contributions, one-query chunks
        self.grad_image = (
            torch.zeros(image.shape, dtype=compute, device=image.device) if need_image else None
        )
        self.dummy = torch.zeros(1, dtype=compute, device=image.device)

    def chunk_size(self, total_queries: int) -> int:
        if not self.deterministic:
            return max(1, total_queries)
        return max(1, _CONTRIBUTIONS_PER_CHUNK // self.taps_per_query)

    def buffers(self, queries: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.deterministic:
            return self.dummy, self.dummy
        count = queries * self.taps_per_query
        device = self.dummy.device
        values = torch.zeros(count, dtype=self.dummy.dtype, device=device)
        return values, torch.zeros(count, dtype=torch.int64, device=device)

    def accumulate(self, values: torch.Tensor, indices: torch.Tensor) -> None:
        if self.deterministic:
            self.grad_image.view(-1).index_put_((indices,), values, accumulate=True)

    def image_gradient(self) -> torch.Tensor | None:
        return self.grad_image if self.need_image else None


def _query_chunks(total: int, chunk: int, per_program: int, lanes_per_query: int = 1):
    """(first query, end query, index of the chunk's first program, programs) of every launch:
    ``per_program`` lanes per program, ``lanes_per_query`` lanes per query."""
    offset = 0
    for begin in range(0, total, chunk):
        end = min(total, begin + chunk)
        programs = triton.cdiv((end - begin) * lanes_per_query, per_program)
        yield begin, end, offset, programs
        offset += programs


def _zeros(like: torch.Tensor) -> torch.Tensor:
    """Contiguous zeros of ``like``'s shape, dtype and device (the layout of every result)."""
    return torch.zeros(like.shape, dtype=like.dtype, device=like.device)


def _backward(
    grad_output: torch.Tensor,
    image: torch.Tensor,
    coords: torch.Tensor,
    step: torch.Tensor,
    patch_size: int,
    padding: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_inputs(image, coords, step, patch_size, padding)
    _check_on_device("triton_patch_sample_backward", image, grad_output=grad_output)
    batch, channels = image.shape[:2]
    queries = coords.shape[1]
    p = patch_size
    if grad_output.shape != (batch, queries, channels, p, p):
        expected = (batch, queries, channels, p, p)
        raise ValueError(
            f"triton_patch_sample_backward: grad_output must be {expected}, "
            f"got {tuple(grad_output.shape)}"
        )
    need_image, need_coords, need_step = (bool(m) for m in output_mask)
    need_pos = need_coords or need_step
    compute = _compute_dtype(image)
    block, warps = _backward_launch_config()
    total = batch * queries
    with launch_device(image):
        # Deterministic records: per lane (p per query) and channel, 16 per row step (p + 1).
        scratch = _Scratch(image, compute, need_image, p * channels * (p + 1) * 16)
        chunk = scratch.chunk_size(total)
        launches = list(_query_chunks(total, chunk, block, p))
        programs = sum(launch[3] for launch in launches)
        partials = torch.zeros((max(programs, 1), 2), dtype=compute, device=image.device)
        lane_sums = torch.zeros((total * p, 2), dtype=compute, device=image.device)
        if grad_output.numel() > 0 and (need_image or need_pos):
            go = grad_output.contiguous()
            image_c = image.contiguous()
            coords_c = coords.to(compute).contiguous()
            step_c = step.to(compute).contiguous()
            grad_image = scratch.grad_image if need_image else scratch.dummy
            for begin, end, offset, count in launches:
                values, indices = scratch.buffers(end - begin)
                _backward_kernel[(count,)](
                    go, image_c, coords_c, step_c, grad_image, lane_sums, partials, values,
                    indices, begin * p, end * p, offset, queries, channels, image.shape[2],
                    image.shape[3], P=p, PADDING=padding, BLOCK=block, NEED_IMAGE=need_image,
                    NEED_POS=need_pos, DETERMINISTIC=scratch.deterministic, num_warps=warps,
                )
                scratch.accumulate(values, indices)
        grad_image = scratch.image_gradient()
        scale = torch.tensor([image.shape[3] * 0.5, image.shape[2] * 0.5], dtype=compute,
                             device=image.device)
        grad_coords = (lane_sums.view(total, p, 2).sum(1) * scale).view(coords.shape)
        return (
            _zeros(image) if grad_image is None else grad_image.to(image.dtype),
            grad_coords.to(coords.dtype) if need_coords else _zeros(coords),
            partials.sum(0).to(step.dtype) if need_step else _zeros(step),
        )


def _launch_tile_backward(
    kernel, grad: torch.Tensor, image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor,
    patch_size: int, padding: int, output_mask: list[bool], *extra_args, **extra_meta,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Host side of a per-sample first-order backward kernel (the jets'), inputs already
    checked: tiles of queries x padded samples on the image's device, image gradient by atomics
    or (deterministic) contribution records, step gradient from per-program partials summed in
    a fixed order. Launched as ``kernel[grid](grad, image, coords, step, grad_image,
    grad_coords, partials, values, indices, q_begin, q_end, partial_offset, Q, C, H, W,
    *extra_args, P=, PPAD=, PADDING=, BLOCK_Q=, NEED_IMAGE=, NEED_POS=, DETERMINISTIC=,
    num_warps=, **extra_meta)``; returns the gradients w.r.t. (image, coords, step), zeros where
    ``output_mask`` is False (all contiguous)."""
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    p = patch_size
    need_image, need_coords, need_step = (bool(m) for m in output_mask)
    need_pos = need_coords or need_step
    compute = _compute_dtype(image)
    padded, per_program, warps = _tile_config(p, 256)
    total = batch * queries
    with launch_device(image):
        scratch = _Scratch(image, compute, need_image, channels * padded * 16)
        grad_coords = torch.zeros(coords.shape, dtype=compute, device=image.device)
        launches = list(_query_chunks(total, scratch.chunk_size(total), per_program))
        programs = sum(launch[3] for launch in launches)
        partials = torch.zeros((max(programs, 1), 2), dtype=compute, device=image.device)
        if grad.numel() > 0 and (need_image or need_pos):
            go = grad.contiguous()
            image_c = image.contiguous()
            coords_c = coords.to(compute).contiguous()
            step_c = step.to(compute).contiguous()
            grad_image = scratch.grad_image if need_image else scratch.dummy
            for begin, end, offset, count in launches:
                values, indices = scratch.buffers(end - begin)
                kernel[(count,)](
                    go, image_c, coords_c, step_c, grad_image, grad_coords, partials, values,
                    indices, begin, end, offset, queries, channels, height, width, *extra_args,
                    P=p, PPAD=padded, PADDING=padding, BLOCK_Q=per_program,
                    NEED_IMAGE=need_image, NEED_POS=need_pos,
                    DETERMINISTIC=scratch.deterministic, num_warps=warps, **extra_meta,
                )
                scratch.accumulate(values, indices)
        grad_image = scratch.image_gradient()
        return (
            _zeros(image) if grad_image is None else grad_image.to(image.dtype),
            grad_coords.to(coords.dtype) if need_coords else _zeros(coords),
            partials.sum(0).to(step.dtype) if need_step else _zeros(step),
        )


def _double_backward(
    grad_output: torch.Tensor,
    image: torch.Tensor,
    coords: torch.Tensor,
    step: torch.Tensor,
    grad_grad_image: torch.Tensor | None,
    grad_grad_coords: torch.Tensor | None,
    grad_grad_step: torch.Tensor | None,
    patch_size: int,
    padding: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    _check_inputs(image, coords, step, patch_size, padding)
    _check_on_device("triton_patch_sample_double_backward", image, grad_output=grad_output,
                     grad_grad_image=grad_grad_image, grad_grad_coords=grad_grad_coords,
                     grad_grad_step=grad_grad_step)
    batch, channels, height, width = image.shape
    queries = coords.shape[1]
    p = patch_size
    if grad_output.shape != (batch, queries, channels, p, p):
        raise ValueError(
            f"triton_patch_sample_double_backward: grad_output must be "
            f"{(batch, queries, channels, p, p)}, got {tuple(grad_output.shape)}"
        )
    for name, tensor, like in (
        ("grad_grad_image", grad_grad_image, image),
        ("grad_grad_coords", grad_grad_coords, coords),
        ("grad_grad_step", grad_grad_step, step),
    ):
        if tensor is not None and tensor.shape != like.shape:
            raise ValueError(
                f"triton_patch_sample_double_backward: {name} must have shape "
                f"{tuple(like.shape)}, got {tuple(tensor.shape)}"
            )
    need_go, need_image, need_coords, need_step = (bool(m) for m in output_mask)
    has_vimage = grad_grad_image is not None
    has_direction = grad_grad_coords is not None or grad_grad_step is not None
    need_pos = need_coords or need_step
    image_terms = need_image and has_direction
    compute = _compute_dtype(image)
    padded, per_program, warps = _tile_config(p, 128)
    total = batch * queries
    with launch_device(image):
        scratch = _Scratch(image, compute, image_terms, channels * padded * 16)
        grad_grad_output = torch.zeros(grad_output.shape, dtype=image.dtype, device=image.device)
        grad_coords = torch.zeros(coords.shape, dtype=compute, device=image.device)
        launches = list(_query_chunks(total, scratch.chunk_size(total), per_program))
        programs = sum(launch[3] for launch in launches)
        partials = torch.zeros((max(programs, 1), 2), dtype=compute, device=image.device)
        work = need_go or need_pos or image_terms
        if grad_output.numel() > 0 and (has_vimage or has_direction) and work:
            go = grad_output.contiguous()
            image_c = image.contiguous()
            coords_c = coords.to(compute).contiguous()
            step_c = step.to(compute).contiguous()
            v_image = grad_grad_image.to(image.dtype).contiguous() if has_vimage else scratch.dummy
            v_coords = scratch.dummy
            v_step = scratch.dummy
            if has_direction:
                v_coords = (
                    grad_grad_coords.to(compute).contiguous()
                    if grad_grad_coords is not None
                    else torch.zeros(coords.shape, dtype=compute, device=image.device)
                )
                v_step = (
                    grad_grad_step.to(compute).contiguous()
                    if grad_grad_step is not None
                    else torch.zeros(2, dtype=compute, device=image.device)
                )
            grad_image = scratch.grad_image if image_terms else scratch.dummy
            for begin, end, offset, count in launches:
                values, indices = scratch.buffers(end - begin)
                _double_backward_kernel[(count,)](
                    go, image_c, coords_c, step_c, v_image, v_coords, v_step,
                    grad_grad_output, grad_image, grad_coords, partials, values, indices,
                    begin, end, offset, queries, channels, height, width,
                    P=p, PPAD=padded, PADDING=padding, BLOCK_Q=per_program,
                    HAS_VIMAGE=has_vimage, HAS_DIRECTION=has_direction, NEED_GO=need_go,
                    NEED_IMAGE=image_terms, NEED_POS=need_pos,
                    DETERMINISTIC=scratch.deterministic, num_warps=warps,
                )
                scratch.accumulate(values, indices)
        grad_image = scratch.image_gradient()
        return (
            grad_grad_output,
            _zeros(image) if grad_image is None else grad_image.to(image.dtype),
            grad_coords.to(coords.dtype) if need_coords else _zeros(coords),
            partials.sum(0).to(step.dtype) if need_step else _zeros(step),
        )


# ------------------------------------------------------------------------------------ ops

_FORWARD_SCHEMA = (
    "(Tensor image, Tensor coords, Tensor step, int patch_size, int padding) -> Tensor"
)
_BACKWARD_SCHEMA = (
    "(Tensor grad_output, Tensor image, Tensor coords, Tensor step, int patch_size, int padding, "
    "bool[] output_mask) -> (Tensor, Tensor, Tensor)"
)
_DOUBLE_BACKWARD_SCHEMA = (
    "(Tensor grad_output, Tensor image, Tensor coords, Tensor step, Tensor? grad_grad_image, "
    "Tensor? grad_grad_coords, Tensor? grad_grad_step, int patch_size, int padding, "
    "bool[] output_mask) -> (Tensor, Tensor, Tensor, Tensor)"
)

forward_op = torch.library.custom_op(
    "funknn_fast::triton_patch_sample", _forward, mutates_args=(), schema=_FORWARD_SCHEMA
)
backward_op = torch.library.custom_op(
    "funknn_fast::triton_patch_sample_backward", _backward, mutates_args=(),
    schema=_BACKWARD_SCHEMA,
)
double_backward_op = torch.library.custom_op(
    "funknn_fast::triton_patch_sample_double_backward", _double_backward, mutates_args=(),
    schema=_DOUBLE_BACKWARD_SCHEMA,
)


def contiguous_empty(like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Fake result of ``like``'s shape: contiguous, as every real result of these ops (whatever
    the layout of the inputs: channels-last, strided, expanded)."""
    return torch.empty(like.shape, dtype=dtype or like.dtype, device=like.device)


@forward_op.register_fake
def _fake_forward(image, coords, step, patch_size, padding):
    batch, channels = image.shape[:2]
    return image.new_empty((batch, coords.shape[1], channels, patch_size, patch_size))


@backward_op.register_fake
def _fake_backward(grad_output, image, coords, step, patch_size, padding, output_mask):
    return contiguous_empty(image), contiguous_empty(coords), contiguous_empty(step)


@double_backward_op.register_fake
def _fake_double_backward(
    grad_output, image, coords, step, gg_image, gg_coords, gg_step, patch_size, padding, mask
):
    return (
        contiguous_empty(grad_output, image.dtype),
        contiguous_empty(image),
        contiguous_empty(coords),
        contiguous_empty(step),
    )


def _third_order(ctx, *grads):
    raise RuntimeError(
        "patch_sample: the Triton backend provides exact first and second derivatives; "
        "third-order derivatives need backend='torch'"
    )


forward_op.register_autograd(
    op_autograd.first_order_backward(backward_op), setup_context=op_autograd.save_tensor_inputs
)
backward_op.register_autograd(
    op_autograd.second_order_backward(double_backward_op),
    setup_context=op_autograd.save_backward_inputs,
)
double_backward_op.register_autograd(_third_order, setup_context=op_autograd.no_setup)


def triton_patch_sample(
    image: torch.Tensor, coords: torch.Tensor, step: torch.Tensor, patch_size: int, padding: str
) -> torch.Tensor:
    """Patch sampling by the Triton kernels (see the module docstring); padding by name."""
    if padding not in PADDING_CODES:
        raise ValueError(f"padding must be one of {sorted(PADDING_CODES)}, got {padding!r}")
    return forward_op(image, coords, step, int(patch_size), PADDING_CODES[padding])
