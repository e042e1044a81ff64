"""The GPU inference engines (funknn_fast/models/gpu_inference.py) against the models they wrap.

Without a GPU the same code runs on CPU tensors (chunk loop, channels-last CNN pass, precision
modes with CPU autocast; no CUDA graphs): it must give the model's function, exactly in float32,
within bfloat16 rounding in bfloat16. With a GPU the CUDA-graph path is checked against the
eager one (partial last chunk, a changed image) and against the model.
"""

import pytest
import torch

from funknn_fast.models.checkpoint import DERIVATIVES_WEIGHTS, WEIGHTS_DIR, load_model
from funknn_fast.models.funknn import FunkNN
from funknn_fast.models.gpu_inference import FunkNNInference, LIIFInference, precision_mode
from funknn_fast.models.liif import cell_for_size, load_liif
from funknn_fast.superres.inference import render, render_liif

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def smooth_image(batch=1, channels=3, size=20, seed=0):
    """A smooth random image in [0, 1] (the models were trained on photographs)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, size // 4, size // 4, generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                            align_corners=False)
    return (image + 0.05 * torch.rand(image.shape, generator=generator)).clamp(0, 1).to(DEVICE)


def queries(count, seed=1, batch=1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, count, 2, generator=generator) * 2.2 - 1.1).to(DEVICE)


@pytest.fixture(scope="module")
def funknn():
    return load_model(DERIVATIVES_WEIGHTS).to(DEVICE)  # the paper's cnn


@pytest.fixture(scope="module")
def liif():
    return load_liif(WEIGHTS_DIR / "liif_140k.safetensors").to(DEVICE).eval()


def psnr(a, b):
    return float(10 * torch.log10(1 / (a.double() - b.double()).square().mean()))


@pytest.mark.parametrize("precision", ["float32", "tf32"])
def test_funknn_float32_equals_the_model(funknn, precision):
    image, coords = smooth_image(batch=2), queries(45, batch=2)
    with torch.inference_mode():
        want = funknn(coords, image)
    engine = FunkNNInference(funknn, chunk=16, precision=precision, graphs=False)
    got = engine(coords, image)  # three chunks, the last one partial
    tol = 1e-5 if precision == "float32" or DEVICE.type == "cpu" else 2e-3  # TF32: 10-bit inputs
    torch.testing.assert_close(got, want, rtol=0, atol=tol)


def test_funknn_bfloat16_within_its_rounding(funknn):
    image, coords = smooth_image(), queries(300)
    with torch.inference_mode():
        want = funknn(coords, image)
    got = FunkNNInference(funknn, chunk=128, precision="bfloat16", graphs=False)(coords, image)
    assert got.dtype == torch.float32
    # bfloat16 keeps 8 bits: the CNN's correction (~0.1 of the intensity) to ~1e-3
    assert float((got - want).abs().max()) < 2e-2
    assert psnr(got, want) > 40


def test_funknn_variants_and_activations():
    torch.manual_seed(3)
    image, coords = smooth_image(channels=1), queries(33)
    for variant, activation in (("cnn", "sin"), ("mlp", "relu")):
        model = FunkNN(channels=1, variant=variant, activation=activation).to(DEVICE).eval()
        with torch.inference_mode():
            want = model(coords, image)
        got = FunkNNInference(model, chunk=10, precision="float32", graphs=False)(coords, image)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_render_with_the_engine_equals_render_with_the_model(funknn):
    image = smooth_image(size=12)
    want = render(funknn, image[0], scale=2.0, chunk=100)
    engine = FunkNNInference(funknn, chunk=100, precision="float32")
    got = render(engine, image[0], scale=2.0, chunk=engine.chunk)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert not engine.training and not funknn.training


def test_float64_and_empty_queries():
    torch.manual_seed(4)
    model = FunkNN(channels=2).double().to(DEVICE).eval()
    image = smooth_image(channels=2).double()
    coords = queries(9).double()
    with torch.inference_mode():
        want = model(coords, image)
    engine = FunkNNInference(model, chunk=4, precision="float32", graphs=False)
    got = engine(coords, image)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert engine(coords[:, :0], image).shape == (1, 0, 2)


def test_liif_engine_equals_the_model(liif):
    image, coords = smooth_image(size=16), queries(70)
    cell = (2 / 40, 2 / 40)
    with torch.inference_mode():
        want = liif.evaluate(coords, image, cell)
    got = LIIFInference(liif, chunk=32, precision="float32", graphs=False)(coords, image, cell)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    low = LIIFInference(liif, chunk=32, precision="bfloat16", graphs=False)(coords, image, cell)
    assert psnr(low, want) > 35
    rendered = render_liif(LIIFInference(liif, precision="float32", graphs=False), image[0],
                           scale=2.0, chunk=64)
    torch.testing.assert_close(rendered, render_liif(liif, image[0], scale=2.0, chunk=64),
                               rtol=0, atol=1e-5)
    assert torch.equal(cell_for_size(40, 40), torch.tensor(cell, dtype=torch.float32))


def test_argument_errors(funknn):
    with pytest.raises(ValueError, match="precision"):
        FunkNNInference(funknn, precision="float16")
    with pytest.raises(ValueError, match="chunk"):
        FunkNNInference(funknn, chunk=0)
    engine = FunkNNInference(funknn, graphs=False)
    with pytest.raises(ValueError, match="coords"):
        engine(queries(3)[0], smooth_image())
    with pytest.raises(ValueError, match="precision"), precision_mode("half", "cpu"):
        pass


def test_precision_mode_restores_the_tf32_flags():
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with precision_mode("tf32", "cuda"):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    with precision_mode("float32", "cuda"):
        assert not (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


# ------------------------------------------------------------------ CUDA graphs (GPU only)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_graphs_equal_eager_and_follow_the_image(funknn, precision):
    image, coords = smooth_image(batch=2), queries(1000, batch=2)
    eager = FunkNNInference(funknn, chunk=384, precision=precision, graphs=False)
    graphed = FunkNNInference(funknn, chunk=384, precision=precision, graphs=True)
    tol = 1e-5 if precision == "float32" else 1e-3  # same kernels; cuDNN may pick others
    torch.testing.assert_close(graphed(coords, image), eager(coords, image), rtol=0, atol=tol)
    image.mul_(0.5)  # in place: the static copy must follow (version counter)
    torch.testing.assert_close(graphed(coords, image), eager(coords, image), rtol=0, atol=tol)
    other = smooth_image(batch=2, seed=9)
    torch.testing.assert_close(graphed(coords, other), eager(coords, other), rtol=0, atol=tol)
    with torch.inference_mode():  # inference tensors: no version counter, copied every call
        frozen = smooth_image(batch=2, seed=10)
    torch.testing.assert_close(graphed(coords, frozen), eager(coords, frozen), rtol=0, atol=tol)


@needs_cuda
def test_liif_graphs_equal_eager(liif):
    image, coords = smooth_image(size=32), queries(2000)
    cell = (2 / 64, 2 / 64)
    eager = LIIFInference(liif, chunk=512, precision="bfloat16", graphs=False)
    graphed = LIIFInference(liif, chunk=512, precision="bfloat16", graphs=True)
    torch.testing.assert_close(graphed(coords, image, cell), eager(coords, image, cell),
                               rtol=0, atol=1e-3)
