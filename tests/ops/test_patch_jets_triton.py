"""Triton kernels of ``patch_sample_jets`` (kernels/patch_jets_triton.py) vs the float64 reference.

Without a GPU the kernels run through Triton's interpreter on CPU tensors (tests/conftest.py sets
TRITON_INTERPRET=1 before anything imports the kernels); with one they run on CUDA. Oracles:
``funknn_fast.ops.jets.patch_sample_jets_reference`` (plain PyTorch) and autograd through it for the
backward. Shapes are tiny: the interpreter is slow.
"""

import pytest
import torch
from _backend_cases import (
    ATOMIC_NONDET_TOL,
    DEVICE,
    PADDINGS,
    aot_check,
    make_inputs,
    odd_layouts,
    permuted_like,
    skip_unless_triton_runs,
)
from _backend_cases import JET_MODE_NAMES as MODES
from _backend_cases import assert_jets_close_scaled as assert_close_scaled
from _backend_cases import jets_reference as reference

skip_unless_triton_runs()

from funknn_fast import backends  # noqa: E402
from funknn_fast.kernels import patch_jets_triton as pjt  # noqa: E402
from funknn_fast.kernels import patch_sample_triton as pst  # noqa: E402
from funknn_fast.ops import jets  # noqa: E402
from funknn_fast.ops.backends import BackendUnavailableError  # noqa: E402
from funknn_fast.ops.jets import JET_MODES, patch_sample_jets  # noqa: E402

# (B, C, H, W, Q, p, coordinate half-range): H or W in {1, 2, 3}, p in {1, 2, 3, 5}, non-square
# images, coordinates far outside [-1, 1], 1 to 5 channels (the forward reads chunks of 4).
CASES = (
    (2, 3, 5, 7, 4, 3, 1.3),
    (1, 1, 1, 2, 3, 1, 4.0),
    (2, 2, 3, 1, 2, 5, 30.0),
    (1, 4, 6, 2, 3, 2, 2.0),
    (1, 5, 2, 3, 2, 5, 1.1),
)


@pytest.mark.parametrize("padding", PADDINGS)
def test_forward_matches_reference_float64(padding):
    # Every case in the Hessian mode; the two other modes (own code paths) on alternate cases.
    for index, case in enumerate(CASES):
        image, coords, step = make_inputs(case, torch.float64, seed=index)
        p = case[5]
        for mode in ("hessian", MODES[index % 2]):
            out = pjt.triton_patch_sample_jets(image, coords, step, p, padding, mode)
            expected = reference(image, coords, step, p, padding, mode)
            assert out.dtype == torch.float64 and out.shape == expected.shape
            assert_close_scaled(out, expected, 1e-10, f"{mode} {case}")
    # the value component is patch_sample itself
    plain = pst.triton_patch_sample(image, coords, step, p, padding)
    assert_close_scaled(out[0], plain, 1e-12, f"value vs patch_sample {case}")


@pytest.mark.parametrize("padding", PADDINGS)
def test_forward_matches_reference_float32(padding):
    for seed, case in enumerate(CASES):
        image, coords, step = make_inputs(case, torch.float32, seed=seed)
        mode = MODES[seed % 3] if padding == "reflection" else "hessian"
        out = pjt.triton_patch_sample_jets(image, coords, step, case[5], padding, mode)
        assert out.dtype == torch.float32
        assert_close_scaled(out, reference(image, coords, step, case[5], padding, mode), 1e-4,
                            f"float32 {mode} {case}")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # interpreter
def test_nan_inf_and_far_coordinates_and_empty_queries():
    image, coords, step = make_inputs(CASES[0], torch.float64)
    coords = coords.clone()
    coords[0, 1, 0] = float("nan")
    coords[1, 2, 1] = float("inf")
    for padding in PADDINGS:
        out = pjt.triton_patch_sample_jets(image, coords, step, 3, padding, "hessian")
        assert torch.isnan(out[:, 0, 1]).all() and torch.isnan(out[:, 1, 2]).all()
        finite = torch.ones(out.shape[1:3], dtype=torch.bool, device=out.device)
        finite[0, 1] = finite[1, 2] = False
        assert torch.isfinite(out[:, finite]).all()
    # Beyond the 2^40-pixel clamp the samples are constant: derivatives vanish, as on "cpu".
    far = torch.full_like(coords, 1e15)
    far[0, 0] = -1e15
    for padding in PADDINGS:
        out = pjt.triton_patch_sample_jets(image, far, step, 3, padding, "laplacian")
        assert torch.isfinite(out).all() and (out[1:] == 0).all()
        assert_close_scaled(out, reference(image, far, step, 3, padding, "laplacian"), 1e-12,
                            f"far {padding}")
    empty = pjt.triton_patch_sample_jets(image, coords[:, :0], step, 3, "border", "gradient")
    assert empty.shape == (3, 2, 0, 3, 3, 3)


def reference_grads(inputs, p, padding, mode, cotangent):
    ref_inputs = tuple(t.detach().double().requires_grad_() for t in inputs)
    out = reference(*ref_inputs, p, padding, mode)
    return torch.autograd.grad(out, ref_inputs, cotangent.double())


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("mode", MODES)
def test_backward_matches_reference_autograd(mode, padding):
    # p = 5 with W = 1 far outside for one padding, the 3 x 5 x 7 case for the others.
    case = CASES[2] if padding == "zeros" else CASES[0]
    p = case[5]
    inputs = make_inputs(case, torch.float64, seed=3, requires_grad=True)
    out = pjt.triton_patch_sample_jets(*inputs, p, padding, mode)
    generator = torch.Generator().manual_seed(4)
    cotangent = torch.randn(out.shape, dtype=torch.float64, generator=generator)
    got = torch.autograd.grad(out, inputs, cotangent.to(DEVICE))
    want = reference_grads(inputs, p, padding, mode, cotangent)
    for name, a, b in zip(("image", "coords", "step"), got, want, strict=True):
        assert a.dtype == torch.float64 and a.shape == b.shape
        assert_close_scaled(a, b, 1e-10, f"{mode} {padding} d/d{name}")


def test_backward_float32_and_output_mask_subsets():
    case = CASES[4]
    p = case[5]
    image, coords, step = make_inputs(case, torch.float32, seed=5)
    generator = torch.Generator().manual_seed(6)
    for mode in MODES:
        code = JET_MODES[mode]
        cotangent = torch.randn((3, 4, 6)[code], 1, case[4], case[1], p, p, generator=generator)
        cotangent = cotangent.to(DEVICE)
        full = pjt.backward_op(cotangent, image, coords, step, p, 2, code, [True, True, True])
        want = reference_grads((image, coords, step), p, "reflection", mode, cotangent)
        for name, a, b in zip(("image", "coords", "step"), full, want, strict=True):
            assert a.dtype == torch.float32
            assert_close_scaled(a, b, 1e-4, f"float32 {mode} d/d{name}")
        for k in range(3):
            mask = [k == m for m in range(3)]
            grads = pjt.backward_op(cotangent, image, coords, step, p, 2, code, mask)
            for m in range(3):
                if m == k:
                    torch.testing.assert_close(grads[m], full[m], rtol=1e-6, atol=1e-6)
                else:
                    assert grads[m].shape == full[m].shape and (grads[m] == 0).all()


def test_gradcheck():
    # The Hessian mode (the other modes are held to autograd through the reference above).
    inputs = make_inputs((1, 2, 3, 4, 2, 2, 1.4), torch.float64, seed=7, requires_grad=True)

    def fn(i, c, s):
        return pjt.triton_patch_sample_jets(i, c, s, 2, "reflection", "hessian")

    assert torch.autograd.gradcheck(fn, inputs, fast_mode=True, nondet_tol=ATOMIC_NONDET_TOL)


def test_opcheck_forward_and_backward():
    image, coords, step = make_inputs((1, 2, 3, 2, 2, 2, 1.5), torch.float64, requires_grad=True)
    torch.library.opcheck(pjt.forward_op, (image, coords, step, 2, 0, 1))
    grad = torch.randn(6, 1, 2, 2, 2, 2, dtype=torch.float64, device=DEVICE)
    with torch.no_grad():
        torch.library.opcheck(
            pjt.backward_op,
            (grad, image.detach(), coords.detach(), step.detach(), 2, 2, 2, [True, False, True]),
        )


@pytest.mark.parametrize("layout", ["channels_last", "strided", "expanded"])
def test_opcheck_on_odd_layouts(layout):
    """Fake and real results agree in strides (contiguous) whatever the input layout."""
    base = make_inputs((2, 2, 3, 4, 2, 2, 1.5), torch.float64, requires_grad=True)
    image, coords, step = odd_layouts(*base)[layout]
    torch.library.opcheck(pjt.forward_op, (image, coords, step, 2, 2, 0))
    grad = permuted_like(torch.randn(3, 2, 2, 2, 2, 2, dtype=torch.float64, device=DEVICE))
    with torch.no_grad():
        for mask in ([True, True, True], [False, True, False]):
            torch.library.opcheck(
                pjt.backward_op,
                (grad, image.detach(), coords.detach(), step.detach(), 2, 2, 0, mask),
            )


def test_deterministic_image_gradient_equals_atomics(monkeypatch):
    """torch.use_deterministic_algorithms: ordered sums over several query chunks."""
    case = CASES[0]
    image, coords, step = make_inputs(case, torch.float32, requires_grad=True)
    cotangent = torch.randn(6, 2, 4, 3, 3, 3, generator=torch.Generator().manual_seed(8))
    cotangent = cotangent.to(DEVICE)

    def run():
        out = pjt.triton_patch_sample_jets(image, coords, step, 3, "reflection", "hessian")
        return torch.autograd.grad(out, (image, coords, step), cotangent)

    atomic = run()
    # 3 channels x 16 padded samples x 16 taps per query: chunks of 3 of the 8 queries.
    monkeypatch.setattr(pst, "_CONTRIBUTIONS_PER_CHUNK", 3 * 3 * 16 * 16)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        # Reproducibility only means something on a GPU (the interpreter has no races).
        runs = [run() for _ in range(2 if DEVICE.type == "cuda" else 1)]
    finally:
        torch.use_deterministic_algorithms(previous)
    for k, expected in enumerate(atomic):
        assert_close_scaled(runs[0][k], expected.double(), 1e-5, "deterministic")
        assert all(torch.equal(r[k], runs[0][k]) for r in runs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_images(dtype):
    """float32 accumulation: jets in the image dtype, off the float64 jets of the rounded image
    by about the output rounding; gradients in the input dtypes."""
    image, coords, step = make_inputs(CASES[0], torch.float64, seed=9)
    low = image.to(dtype).requires_grad_()
    coords32 = coords.float().requires_grad_()
    step32 = step.float().requires_grad_()
    out = pjt.triton_patch_sample_jets(low, coords32, step32, 3, "border", "laplacian")
    assert out.dtype == dtype
    expected = reference(low.detach(), coords32.detach(), step32.detach(), 3, "border",
                         "laplacian")
    eps = torch.finfo(dtype).eps
    assert_close_scaled(out, expected, 2 * eps, f"{dtype} forward")
    grads = torch.autograd.grad(out.float().square().sum(), (low, coords32, step32))
    assert [g.dtype for g in grads] == [dtype, torch.float32, torch.float32]
    assert all(torch.isfinite(g).all() for g in grads)


def test_compiled_backward_is_first_order_only():
    image, coords, step = make_inputs(CASES[1], torch.float64, requires_grad=True)
    out = pjt.triton_patch_sample_jets(image, coords, step, 1, "border", "gradient")
    (grad,) = torch.autograd.grad(out.square().sum(), coords, create_graph=True)
    with pytest.raises(RuntimeError, match="first order"):
        grad.sum().backward()


def test_bad_input_errors(monkeypatch):
    image, coords, step = make_inputs(CASES[0], torch.float64)
    with pytest.raises(ValueError, match="padding"):
        pjt.triton_patch_sample_jets(image, coords, step, 3, "wrap")
    with pytest.raises(ValueError, match="derivatives"):
        pjt.triton_patch_sample_jets(image, coords, step, 3, "zeros", "third")
    with pytest.raises(ValueError, match="triton_patch_sample_jets: mode"):
        pjt.forward_op(image, coords, step, 3, 0, 3)
    with pytest.raises(TypeError, match="triton_patch_sample_jets: coords"):
        pjt.triton_patch_sample_jets(image, coords.float(), step, 3, "zeros")
    with pytest.raises(ValueError, match="patch_size"):
        pjt.triton_patch_sample_jets(image, coords, step, 0, "zeros")
    with pytest.raises(ValueError, match="grad_jets"):
        pjt.backward_op(torch.zeros(3, 2, 4, 3, 3, 3, dtype=torch.float64, device=DEVICE),
                        image, coords, step, 3, 0, 2, [True, True, True])
    if DEVICE.type == "cpu":
        backends()  # the availability of triton is cached: settle it with the interpreter on
        monkeypatch.delenv("TRITON_INTERPRET")
        with pytest.raises(RuntimeError, match="CUDA"):
            pjt.triton_patch_sample_jets(image, coords, step, 3, "zeros")
        with pytest.raises(BackendUnavailableError, match="patch_sample_jets.*triton"):
            patch_sample_jets(image, coords, step, 3, backend="triton")


def test_dispatch_triton_auto_and_cuda_fallback(monkeypatch):
    case = CASES[0]
    image, coords, step = make_inputs(case, torch.float64)
    direct = pjt.triton_patch_sample_jets(image, coords, step, 3, "zeros", "laplacian")
    via_api = patch_sample_jets(image, coords, step, 3, "zeros", "laplacian", backend="triton")
    assert torch.equal(direct, via_api)
    if DEVICE.type == "cpu":
        # "auto" never picks the interpreter for CPU tensors.
        expected = "cpu" if backends()["cpu"].available else "torch"
        assert jets._select_jets_backend("auto", image) == expected
        with pytest.raises(BackendUnavailableError, match="patch_sample_jets"):
            patch_sample_jets(image, coords, step, 3, backend="cuda")
        if backends()["cpu"].available:
            cpu = patch_sample_jets(image, coords, step, 3, "zeros", "laplacian", backend="cpu")
            assert_close_scaled(direct, cpu, 1e-12, "triton vs cpu")
    # Without CUDA jets kernels in the extension, "cuda" is refused and "auto" uses torch.
    monkeypatch.setattr(jets, "select_backend", lambda requested, image: "cuda")
    monkeypatch.setattr(jets, "has_cuda_jets_kernels", lambda: False)
    assert jets._select_jets_backend("auto", image) == "torch"
    with pytest.raises(BackendUnavailableError, match="CUDA jets kernels"):
        jets._select_jets_backend("cuda", image)
    monkeypatch.setattr(jets, "has_cuda_jets_kernels", lambda: True)
    assert jets._select_jets_backend("auto", image) == "cuda"


def test_kernels_compile_for_sm90_without_spills():
    """Ahead-of-time compile (no GPU needed) of the jets launches the host code makes, every mode
    in float32 and the Hessian mode in bfloat16 and float64, with the int types Triton gives
    them: ``component_stride`` = B Q C p^2 is i32 below 2^31, so the kernels must widen it
    before k * component_stride (k <= 5) passes 2^31 (issue 14). Relaxed atomics: no fences. A
    pass is remembered: ``_backend_cases.aot_check``."""

    def check(report):
        labels = [row["variant"] for row in report]
        assert len(report) == 11 and all(label.startswith("jets") for label in labels), labels
        for mode in range(3):
            assert any(f"forward fp32 mode={mode}" in label for label in labels)
            assert any(f"backward fp32 mode={mode}" in label for label in labels)
        for row in report:
            assert row["registers"] > 0 and row["spill_bytes"] == 0, row
            assert row["ints"]["component_stride"] == "i32", row
            assert "component_stride" in row["widened"], row
            assert row["membars"] == 0 and row["cctl"] == 0, row
            if "forward" in row["variant"]:
                assert row["vector_loads"] > 0, row  # one vector load per tap and channel chunk
            if "backward" in row["variant"] and "det=False" in row["variant"]:
                assert row["reds"] > 0, row
            if "det=True" in row["variant"]:
                assert row["reds"] + row["atoms"] == 0, row

    aot_check(["--jets"], b"jets", (pjt, pst), check)


def test_funknn_derivatives_on_the_triton_backend():
    """End to end: forward-mode FunkNN derivatives on Triton jets equal those on the reference,
    and so do the gradients of a loss on them w.r.t. the image and every parameter (step too)."""
    from funknn_fast.derivatives import funknn_derivatives
    from funknn_fast.models.funknn import FunkNN

    torch.manual_seed(12)
    model = FunkNN(channels=1, variant="cnn", activation="relu", patch_size=5, backend="torch",
                   fused=False).double().to(DEVICE)
    with torch.no_grad():
        model.step.copy_(torch.tensor([0.8, 1.3]))
    image, coords, _ = make_inputs((1, 1, 6, 7, 3, 5, 1.1), torch.float64, seed=13)
    image.requires_grad_()
    params = [image, *model.parameters()]
    results = []
    for backend in ("torch", "triton"):
        d = funknn_derivatives(model, coords, image, order="laplacian", backend=backend)
        loss = d.value.sum() + d.gradient.square().sum() + d.laplacian.square().sum()
        results.append(((d.value, d.gradient, d.laplacian), torch.autograd.grad(loss, params)))
    (want, want_grads), (got, got_grads) = results
    for a, b in zip(got + got_grads, want + want_grads, strict=True):
        assert_close_scaled(a, b, 1e-10, "funknn_derivatives triton vs torch")
    assert float(want_grads[1 + [n for n, _ in model.named_parameters()].index("step")]
                 .abs().sum()) > 0
