"""Triton kernels of ``patch_sample`` (kernels/patch_sample_triton.py) vs the float64 reference.

Without a GPU the kernels run through Triton's interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET=1); with one they run on CUDA. Shapes are tiny: the interpreter is slow.
"""

import contextlib

import pytest
import torch
from _backend_cases import (
    DEVICE,
    PADDINGS,
    aot_check,
    assert_close_scaled,
    first_and_second_order,
    gradcheck_atomic,
    make_inputs,
    odd_layouts,
    permuted_like,
    skip_unless_triton_runs,
)
from _backend_cases import patch_reference as reference
from torch.autograd.gradcheck import GradcheckError

skip_unless_triton_runs()

import funknn_fast  # noqa: E402
from funknn_fast.kernels import patch_jets_triton as pjt  # noqa: E402
from funknn_fast.kernels import patch_sample_triton as pst  # noqa: E402

# (B, C, H, W, Q, p, coordinate half-range): H or W in {1, 2, 3}, p in {1, 2, 3, 9}, non-square
# images, coordinates far outside [-1, 1], 1 to 5 channels (the forward reads chunks of 4).
CASES = (
    (2, 3, 5, 7, 4, 3, 1.3),
    (1, 1, 1, 2, 3, 1, 4.0),
    (2, 2, 3, 1, 2, 9, 30.0),
    (1, 4, 6, 2, 3, 2, 2.0),
    (1, 5, 2, 3, 2, 3, 1.1),
)


def tolerance(dtype):
    return 1e-12 if dtype == torch.float64 else 2e-5


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("padding", PADDINGS)
def test_forward_matches_reference(padding, dtype):
    for case in CASES:
        image, coords, step = make_inputs(case, dtype)
        out = pst.triton_patch_sample(image, coords, step, case[5], padding)
        assert out.dtype == dtype and out.shape == (case[0], case[4], case[1], case[5], case[5])
        assert_close_scaled(out, reference(image, coords, step, case[5], padding),
                            tolerance(dtype), f"forward {case}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("padding", PADDINGS)
def test_first_and_second_order_match_reference(padding, dtype):
    # One case per dtype (the interpreter is slow): p = 9 with W = 1 far outside, and p = 3.
    case = CASES[2] if dtype == torch.float64 else CASES[0]
    inputs = make_inputs(case, dtype, requires_grad=True)
    ref_inputs = tuple(t.detach().double().requires_grad_() for t in inputs)
    p = case[5]
    got = first_and_second_order(lambda i, c, s: pst.triton_patch_sample(i, c, s, p, padding),
                                 *inputs)
    want = first_and_second_order(lambda i, c, s: reference(i, c, s, p, padding), *ref_inputs)
    tol = 1e-11 if dtype == torch.float64 else 2e-4
    for order, (g_got, g_want) in enumerate(zip(got, want, strict=True), start=1):
        for name, a, b in zip(("image", "coords", "step"), g_got, g_want, strict=True):
            assert a.dtype == dtype
            assert_close_scaled(a, b, tol, f"order {order} d/d{name} {case}")


def test_coordinate_hessian_only_path():
    """The PDE use: grad w.r.t. coords with create_graph, then grad w.r.t. coords again."""
    case = CASES[3]
    image, coords, step = make_inputs(case, torch.float64)
    coords.requires_grad_()
    ref_coords = coords.detach().clone().requires_grad_()
    results = []
    for fn, c in ((pst.triton_patch_sample, coords), (reference, ref_coords)):
        out = fn(image, c, step, case[5], "reflection")
        (grad,) = torch.autograd.grad(out.sum(), c, create_graph=True)
        (hess,) = torch.autograd.grad((grad * grad).sum(), c)
        results.append((grad, hess))
    for got, want in zip(results[0], results[1], strict=True):
        assert_close_scaled(got, want, 1e-11, "coordinate Hessian")


@pytest.mark.parametrize("padding", ["reflection"])
def test_gradcheck_and_gradgradcheck(padding):
    # One padding: the others are held to the reference's first and second derivatives above.
    image, coords, step = make_inputs((1, 1, 3, 2, 2, 2, 1.5), torch.float64, requires_grad=True)

    def fn(i, c, s):
        return pst.triton_patch_sample(i, c, s, 2, padding)

    gradcheck_atomic(fn, (image, coords, step), fast_mode=True)


def test_gradcheck_of_atomic_sums_tolerates_reordering():
    """On a GPU the image gradient sums by atomics in a varying order: gradcheck's reentrancy
    check (two backward runs must agree to the bit) fails without ``nondet_tol``, which the GPU
    tests pass through ``gradcheck_atomic`` (issue 14). Simulated by a backward with
    rounding-sized jitter."""

    class Jittery(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad * (1 + 1e-15 * torch.randn_like(grad))

    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradcheckError, match="reentrant"):
        torch.autograd.gradcheck(Jittery.apply, (x,))
    gradcheck_atomic(Jittery.apply, (x,))


def test_opcheck_forward_backward_double_backward():
    image, coords, step = make_inputs((1, 2, 3, 2, 2, 2, 1.5), torch.float64, requires_grad=True)
    torch.library.opcheck(pst.forward_op, (image, coords, step, 2, 2))
    grad_out = torch.randn(1, 2, 2, 2, 2, dtype=torch.float64, device=DEVICE)
    with torch.no_grad():
        args = (grad_out, image.detach(), coords.detach(), step.detach(), 2, 0)
        torch.library.opcheck(pst.backward_op, args + ([True, True, True],))
        directions = (torch.randn_like(image), torch.randn_like(coords), torch.randn_like(step))
        torch.library.opcheck(
            pst.double_backward_op, args[:4] + directions + (2, 1, [True, True, True, True])
        )


def test_deterministic_image_gradient_in_chunks(monkeypatch):
    """torch.use_deterministic_algorithms: ordered sums over several query chunks."""
    case = CASES[0]
    image, coords, step = make_inputs(case, torch.float32, requires_grad=True)

    def run():
        return first_and_second_order(
            lambda i, c, s: pst.triton_patch_sample(i, c, s, 3, "reflection"), image, coords, step
        )

    first_atomic, second_atomic = run()
    # Records per query: backward 3 columns x 3 channels x 4 (p + 1) sub-steps x 4 taps = 576,
    # double backward 3 channels x 16 padded samples x 16 taps = 768: chunks of 5 and 4 of the
    # 8 queries.
    monkeypatch.setattr(pst, "_CONTRIBUTIONS_PER_CHUNK", 4 * 3 * 16 * 16)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        # Reproducibility only means something on a GPU (the interpreter has no races).
        runs = [run() for _ in range(2 if DEVICE.type == "cuda" else 1)]
    finally:
        torch.use_deterministic_algorithms(previous)
    for order, atomic in ((0, first_atomic), (1, second_atomic)):
        for k, expected in enumerate(atomic):
            assert_close_scaled(runs[0][order][k], expected.double(), 1e-5, "deterministic")
            assert all(torch.equal(r[order][k], runs[0][order][k]) for r in runs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_error_within_twice_grid_sample(dtype):
    """fp32 accumulation: error vs float64 at most 2x grid_sample's in the same dtype."""
    image, coords, step = make_inputs((2, 3, 9, 8, 6, 3, 0.9), torch.float64)
    out = pst.triton_patch_sample(image.to(dtype), coords.float(), step.float(), 3, "border")
    assert out.dtype == dtype
    ours = float((out.double() - reference(image, coords, step, 3, "border")).abs().max())
    grid = (coords[:, :, None, :] + 0.0).expand(-1, -1, 4, -1)
    grid = grid + torch.randn(grid.shape, dtype=torch.float64).to(grid) * 0.05

    def grid_sample(img, g):
        return torch.nn.functional.grid_sample(
            img, g, mode="bicubic", padding_mode="border", align_corners=False
        )

    theirs = float((grid_sample(image.to(dtype), grid.to(dtype)).double()
                    - grid_sample(image, grid)).abs().max())
    assert ours <= 2 * theirs, f"{dtype}: error {ours:.3g} vs grid_sample {theirs:.3g}"


def test_low_precision_gradients_have_input_dtypes():
    image, coords, step = make_inputs(CASES[0], torch.float64)
    image = image.to(torch.bfloat16).requires_grad_()
    coords = coords.float().requires_grad_()
    step = step.float().requires_grad_()
    out = pst.triton_patch_sample(image, coords, step, 3, "reflection")
    grads = torch.autograd.grad(out.float().square().sum(), (image, coords, step))
    assert [g.dtype for g in grads] == [torch.bfloat16, torch.float32, torch.float32]
    ref_inputs = tuple(t.detach().double().requires_grad_() for t in (image, coords, step))
    ref_out = reference(*ref_inputs, 3, "reflection")
    ref_grads = torch.autograd.grad(ref_out.square().sum(), ref_inputs)
    for got, want in zip(grads, ref_grads, strict=True):
        assert_close_scaled(got, want, 3e-2, "bfloat16 gradient")


def test_nan_coordinates_empty_queries_and_bad_input():
    image, coords, step = make_inputs(CASES[0], torch.float64)
    coords = coords.clone()
    coords[0, 1, 0] = float("nan")
    coords[1, 2, 1] = float("inf")
    out = pst.triton_patch_sample(image, coords, step, 3, "zeros")
    assert torch.isnan(out[0, 1]).all() and torch.isnan(out[1, 2]).all()
    finite = torch.ones(out.shape[:2], dtype=torch.bool)
    finite[0, 1] = finite[1, 2] = False
    assert torch.isfinite(out[finite]).all()

    empty = pst.triton_patch_sample(image, coords[:, :0], step, 3, "border")
    assert empty.shape == (2, 0, 3, 3, 3)
    with pytest.raises(ValueError, match="padding"):
        pst.triton_patch_sample(image, coords, step, 3, "wrap")
    with pytest.raises(TypeError, match="coords"):
        pst.triton_patch_sample(image, coords.float(), step, 3, "zeros")
    with pytest.raises(ValueError, match="patch_size"):
        pst.triton_patch_sample(image, coords, step, 0, "zeros")


def test_third_order_raises_clearly():
    image, coords, step = make_inputs(CASES[1], torch.float64, requires_grad=True)
    out = pst.triton_patch_sample(image, coords, step, 1, "border")
    (g,) = torch.autograd.grad(out.sum(), coords, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), coords, create_graph=True)
    with pytest.raises(RuntimeError, match="third-order"):
        torch.autograd.grad(h.sum(), coords)


def test_patch_sample_backend_triton_and_forward_config(monkeypatch):
    case = CASES[4]
    image, coords, step = make_inputs(case, torch.float32)
    direct = pst.triton_patch_sample(image, coords, step, 3, "reflection")
    via_api = funknn_fast.patch_sample(image, coords, step, 3, "reflection", backend="triton")
    assert torch.equal(direct, via_api)
    monkeypatch.setenv("FUNKNN_TRITON_FORWARD_CONFIG", "32,1")
    assert torch.equal(pst.triton_patch_sample(image, coords, step, 3, "reflection"), direct)
    monkeypatch.setenv("FUNKNN_TRITON_FORWARD_CONFIG", "48,1")
    with pytest.raises(ValueError, match="FUNKNN_TRITON_FORWARD_CONFIG"):
        pst.triton_patch_sample(image, coords, step, 3, "reflection")


def test_kernels_compile_for_sm90_within_128_registers_without_fences():
    """Ahead-of-time compile (no GPU needed) of the launches the host code makes (int arguments
    typed as Triton types them; ``--wide``: the i64 variants of huge inputs too). Forward and
    backward: no spills, at most 128 registers (issue 14). Image-gradient atomics are relaxed:
    REDs without the MEMBAR and L1 invalidation (CCTL) that acq_rel atomics carry (16 each per
    sample before). A pass is remembered: ``_backend_cases.aot_check``."""

    def check(report):
        labels = [row["variant"] for row in report]
        assert len(report) == 16, labels
        for row in report:
            assert row["registers"] > 0 and row["spill_bytes"] == 0, row
            assert row["membars"] == 0 and row["cctl"] == 0 and row["fences"] == 0, row
            if not row["variant"].startswith("double"):
                assert row["registers"] <= 128, row
            if row["variant"].startswith("forward"):
                assert row["vector_loads"] > 0, row  # CB channels per tap read
            if "det=False" in row["variant"]:
                assert row["reds"] > 0 and row["atoms"] == 0, row
            if "det=True" in row["variant"]:
                assert row["reds"] + row["atoms"] == 0, row
            if not row["variant"].endswith("wide"):
                assert set(row["ints"].values()) == {"i32"}, row  # what small launches pass

    aot_check(["--wide"], b"wide", (pst,), check)


# ------------------------------------------------------------------ issue 14: the GPU review


def test_launch_device_is_the_tensors_cuda_device(monkeypatch):
    """Triton launches on the current device: the kernels must run under the tensors' one."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        on_second_gpu = torch.empty(1, device="cuda:1")
    entered = []
    monkeypatch.setattr(torch.cuda, "device",
                        lambda device: entered.append(device) or contextlib.nullcontext())
    with pst.launch_device(on_second_gpu):
        pass
    assert entered == [torch.device("cuda:1")]
    with pst.launch_device(torch.empty(1)):  # CPU (interpreter): nothing to switch
        pass
    assert len(entered) == 1


def test_every_launch_runs_under_the_launch_device(monkeypatch):
    """Forward, backward, double backward and both jets kernels launch inside
    ``launch_device(image)``."""
    inside = []
    launches = []

    class Guard:
        def __init__(self, tensor):
            self.device = tensor.device

        def __enter__(self):
            inside.append(self.device)

        def __exit__(self, *exc):
            inside.pop()

    class Recorded:
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launches.append((self.name, list(inside)))
                return self.kernel[grid](*args, **kwargs)

            return launch

    monkeypatch.setattr(pst, "launch_device", Guard)
    names = [(pst, "_forward_kernel"), (pst, "_backward_kernel"),
             (pst, "_double_backward_kernel"), (pjt, "_jets_forward_kernel"),
             (pjt, "_jets_backward_kernel")]
    for module, name in names:
        monkeypatch.setattr(module, name, Recorded(name, getattr(module, name)))
    image, coords, step = make_inputs(CASES[0], torch.float64, requires_grad=True)
    first_and_second_order(lambda i, c, s: pst.triton_patch_sample(i, c, s, 3, "border"),
                           image, coords, step)
    jets = pjt.triton_patch_sample_jets(image, coords, step, 3, "border", "gradient")
    torch.autograd.grad(jets.sum(), (image, coords))
    assert {name for name, _ in launches} == {name for _, name in names}
    assert all(stack == [image.device] for _, stack in launches), launches


@pytest.mark.parametrize("layout", ["channels_last", "strided", "expanded"])
def test_opcheck_on_odd_layouts(layout):
    """The fake (meta) results have the real results' strides whatever the input layout: all
    contiguous (empty_like would keep a channels-last layout the kernels do not produce)."""
    base = make_inputs((2, 3, 3, 4, 2, 2, 1.5), torch.float64, requires_grad=True)
    image, coords, step = odd_layouts(*base)[layout]
    torch.library.opcheck(pst.forward_op, (image, coords, step, 2, 2))
    grad_out = permuted_like(torch.randn(2, 2, 3, 2, 2, dtype=torch.float64, device=DEVICE))
    with torch.no_grad():
        args = (grad_out, image.detach(), coords.detach(), step.detach(), 2, 0)
        for mask in ([True, True, True], [False, True, True], [True, False, False]):
            torch.library.opcheck(pst.backward_op, args + (mask,))
        directions = odd_layouts(torch.randn_like(base[0]), torch.randn_like(base[1]),
                                 torch.randn_like(base[2]))[layout]
        for mask in ([True] * 4, [False, False, True, False]):
            torch.library.opcheck(pst.double_backward_op,
                                  args[:4] + tuple(directions) + (2, 1, mask))


def test_zero_channels_in_deterministic_mode():
    """C = 0: empty patches and zero gradients (the deterministic chunking divided by the
    contributions per query, zero here)."""
    image = torch.zeros(1, 0, 3, 4, dtype=torch.float64, device=DEVICE, requires_grad=True)
    _, coords, step = make_inputs((1, 1, 3, 4, 2, 3, 1.0), torch.float64, requires_grad=True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        out = pst.triton_patch_sample(image, coords, step, 3, "reflection")
        assert out.shape == (1, 2, 0, 3, 3)
        grads = torch.autograd.grad(out, (image, coords, step), torch.ones_like(out),
                                    create_graph=True)
        second = torch.autograd.grad(sum(g.sum() for g in grads), (image, coords, step),
                                     allow_unused=True)
    finally:
        torch.use_deterministic_algorithms(previous)
    assert all(float(g.detach().abs().sum()) == 0 for g in grads)
    assert all(g is None or float(g.abs().sum()) == 0 for g in second)


def test_incoming_gradients_must_be_on_the_image_device():
    image, coords, step = make_inputs(CASES[0], torch.float64)
    grad = torch.empty(2, 4, 3, 3, 3, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="grad_output is on meta"):
        pst._backward(grad, image, coords, step, 3, 2, [True, True, True])
    ones = torch.ones(2, 4, 3, 3, 3, dtype=torch.float64, device=DEVICE)
    with pytest.raises(ValueError, match="grad_grad_coords is on meta"):
        pst._double_backward(ones, image, coords, step, None,
                             torch.empty(coords.shape, dtype=coords.dtype, device="meta"), None,
                             3, 2, [True] * 4)
    with pytest.raises(ValueError, match="grad_jets is on meta"):
        pjt._backward(torch.empty(3, 2, 4, 3, 3, 3, dtype=torch.float64, device="meta"), image,
                      coords, step, 3, 2, 0, [True] * 3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_coordinates_are_refused(dtype):
    """16-bit coordinates resolve ~1/512 of the image: 16-bit images need float32 coords."""
    image, coords, step = make_inputs(CASES[0], torch.float32)
    with pytest.raises(TypeError, match="float32"):
        pst.triton_patch_sample(image.to(dtype), coords.to(dtype), step.to(dtype), 3, "zeros")
    with pytest.raises(TypeError, match="float32"):
        pjt.triton_patch_sample_jets(image.to(dtype), coords.to(dtype), step, 3, "zeros")
    with pytest.warns(UserWarning, match="1/512"):  # the public op converts them
        out = funknn_fast.patch_sample(image.to(dtype), coords.to(dtype), 1.0, 3,
                                       backend="triton")
    want = pst.triton_patch_sample(image.to(dtype), coords.to(dtype).float(), step.new_ones(2),
                                   3, "reflection")
    assert torch.equal(out, want)


def test_patch_size_upper_bound():
    image, coords, step = make_inputs(CASES[1], torch.float64)
    limit = pst.MAX_PATCH_SIZE
    with pytest.raises(ValueError, match=f"patch_size must be in \\[1, {limit}\\]"):
        pst.triton_patch_sample(image, coords, step, limit + 1, "zeros")
    with pytest.raises(ValueError, match="patch_size"):
        pjt.triton_patch_sample_jets(image, coords, step, limit + 1, "zeros")


# ------------------------------------------------------------------ issue 14: separable kernels


@pytest.mark.parametrize("steps", [(1.0, 1.0), (-0.7, 2.3), (0.0, 0.45), (4.6, -5.2)])
def test_separable_kernels_any_step(steps):
    """The tap-row window moves by any shift (down, up, none, past its 4 rows) between patch
    rows: forward and first order against the reference, every padding, p = 5."""
    case = (2, 2, 6, 5, 3, 5, 1.2)
    for padding in PADDINGS:
        image, coords, _ = make_inputs(case, torch.float64, requires_grad=True)
        step = torch.tensor(steps, dtype=torch.float64, device=DEVICE, requires_grad=True)
        out = pst.triton_patch_sample(image, coords, step, 5, padding)
        ref_inputs = [t.detach().clone().requires_grad_() for t in (image, coords, step)]
        want = reference(*ref_inputs, 5, padding)
        assert_close_scaled(out, want, 1e-12, f"forward {steps} {padding}")
        weights = torch.randn(out.shape, dtype=torch.float64, device=DEVICE)
        got = torch.autograd.grad(out, (image, coords, step), weights)
        expected = torch.autograd.grad(want, ref_inputs, weights)
        for name, a, b in zip(("image", "coords", "step"), got, expected, strict=True):
            assert_close_scaled(a, b, 1e-11, f"d/d{name} {steps} {padding}")


def test_positions_past_2_to_30_pixels_take_64_bit_taps():
    """A program with a position beyond 2^30 pixels takes reflection's modulo in 64 bits (the
    others in 32): both against the reference, in one launch and in separate ones."""
    image, _, step = make_inputs((1, 2, 5, 6, 1, 3, 1.0), torch.float64)
    coords = torch.tensor([[[3e9, -2e9], [0.1, 0.2], [1e13, -1e14], [-0.4, 0.9]]],
                          dtype=torch.float64, device=DEVICE)
    for padding in PADDINGS:
        for part in (coords, coords[:, 1:2], coords[:, :1]):
            inputs = [t.clone().requires_grad_() for t in (image, part, step)]
            out = pst.triton_patch_sample(*inputs, 3, padding)
            refs = [t.detach().clone().requires_grad_() for t in inputs]
            want = reference(*refs, 3, padding)
            assert_close_scaled(out, want, 1e-12, f"far forward {padding}")
            got = torch.autograd.grad(out.square().sum(), inputs)
            expected = torch.autograd.grad(want.square().sum(), refs)
            for a, b in zip(got, expected, strict=True):
                assert_close_scaled(a, b, 1e-11, f"far first order {padding}")


@pytest.mark.skipif(DEVICE.type != "cpu", reason="counts the interpreter's accesses")
def test_reads_and_atomics_per_sample_at_unit_step():
    """The point of the separable kernels: at step 1 a column of p samples reads p + 3 tap rows
    (4 taps each) instead of 4 p, so 4 (p + 3) / p = 5.33 tap reads and image-gradient atomics
    per sample at p = 9 instead of 16 (measured by the interpreter)."""
    from funknn_fast.kernels.access_counts import count_accesses

    generator = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 32, 32, generator=generator).bfloat16()
    coords = torch.rand(1, 16, 2, generator=generator) * 1.6 - 0.8
    step = torch.tensor([1.0, 1.0])
    samples = 16 * 81
    with count_accesses() as forward:
        pst.triton_patch_sample(image, coords, step, 9, "reflection")
    assert forward.loads["bf16"] / 4 / samples == pytest.approx(4 * 12 / 9)  # 4-channel vectors
    image.requires_grad_()
    out = pst.triton_patch_sample(image, coords, step, 9, "reflection")
    with count_accesses() as backward:
        torch.autograd.grad(out, image, torch.ones_like(out))
    assert backward.atomics / (samples * 3) == pytest.approx(4 * 12 / 9)
