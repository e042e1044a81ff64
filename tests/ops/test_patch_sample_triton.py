"""Triton kernels of ``patch_sample`` (kernels/patch_sample_triton.py) vs the float64 reference.

Without a GPU the kernels run through Triton's interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET=1); with one they run on CUDA. Shapes are tiny: the interpreter is slow.
"""

import pytest
import torch
from _backend_cases import (
    DEVICE,
    PADDINGS,
    aot_check,
    assert_close_scaled,
    first_and_second_order,
    make_inputs,
    skip_unless_triton_runs,
)
from _backend_cases import patch_reference as reference

skip_unless_triton_runs()

import funknn_fast  # noqa: E402
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

    assert torch.autograd.gradcheck(fn, (image, coords, step), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (image, coords, step), fast_mode=True)


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
    # 3 channels x 16 padded samples x 16 taps per query: chunks of 4 of the 8 queries.
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


def test_kernels_compile_for_sm90_without_spills():
    """Ahead-of-time compile (no GPU needed) of a representative set of the compiled kernels
    (a pass is remembered: ``_backend_cases.aot_check``)."""

    def check(report):
        assert len(report) == 8
        for row in report:
            assert row["registers"] > 0 and row["spill_bytes"] == 0, row
            if row["variant"].startswith("forward"):
                assert row["vector_loads"] > 0, row  # one vector load per tap and channel chunk
            if "det=False" in row["variant"]:
                assert row["atomics"] > 0, row

    aot_check([], b"", (pst,), check)
