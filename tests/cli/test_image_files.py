"""``funknn superres`` on real-world files, through the installed ``funknn`` entry point.

16-bit grey, EXIF-rotated JPEG, RGBA, grey and palette images, a corrupt file, downscaling,
batch (several inputs and a folder), output checks. The weights are a FunkNN whose last layer is
zero, so the model is exactly Keys-cubic interpolation (its centre-sample residual): the expected
outputs come from ``render`` on independently decoded pixels.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _entry_point import funknn as run_funknn
from _entry_point import one_line_error
from PIL import Image

from funknn_fast.models.checkpoint import save_model
from funknn_fast.models.funknn import FunkNN
from funknn_fast.superres.inference import render


def funknn(*args: str):
    """The installed ``funknn``; one torch thread, no progress bars."""
    return run_funknn(*args, "--threads", "1", "--quiet")


@pytest.fixture(scope="module")
def interpolator(tmp_path_factory) -> tuple[Path, FunkNN]:
    """Weights of a FunkNN that is Keys-cubic interpolation (last layer zero)."""
    torch.manual_seed(0)
    model = FunkNN(3, "cnn")
    with torch.no_grad():
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.zero_()
        last.bias.zero_()
    path = tmp_path_factory.mktemp("weights") / "interp"
    save_model(model, path, {"train": {"mode": "continuous"}})
    return path, model.eval()


def keys_cubic(model: FunkNN, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) or (H, W) in [0, 1] rendered at size (H', W') by the model, clamped."""
    image = torch.from_numpy(np.atleast_3d(pixels).astype(np.float32)).permute(2, 0, 1)
    out = render(model, image.expand(3, -1, -1).contiguous() if image.shape[0] == 1 else image,
                 size=size).clamp(0, 1)
    return out.permute(1, 2, 0).numpy()


def write_inputs(folder: Path) -> dict[str, np.ndarray]:
    """The test images; returns each file's decoded pixels in [0, 1] (as stored, not rotated)."""
    rng = np.random.default_rng(1)
    smooth = np.clip(0.25 + 0.1 * rng.standard_normal((12, 10)), 0, 1)
    Image.fromarray(np.round(smooth * 65535).astype(np.uint16)).save(folder / "deep.png")
    colour = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    Image.fromarray(colour).save(folder / "phone.jpg", exif=exif, quality=95)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 1] = 255  # hidden green under the transparent half
    rgba[:, :4] = (200, 30, 30, 255)
    Image.fromarray(rgba, "RGBA").save(folder / "logo.png")
    grey = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    Image.fromarray(grey).save(folder / "grey.png")
    palette = Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)).quantize(8)
    palette.save(folder / "palette.png")
    return {name: np.asarray(Image.open(folder / name), dtype=np.float64)
            for name in ("deep.png", "phone.jpg", "grey.png")}


def test_image_kinds_in_one_batch(tmp_path, interpolator):
    weights, model = interpolator
    inputs = tmp_path / "in"
    inputs.mkdir()
    stored = write_inputs(inputs)
    out = tmp_path / "out"
    result = funknn("superres", str(inputs), "-o", str(out), "--scale", "2",
                    "--weights", str(weights))
    assert result.returncode == 0, result.stderr
    # 16-bit grey stays 16-bit grey, with its values (not 92% white)
    deep = Image.open(out / "deep.png")
    assert deep.mode == "I;16" and deep.size == (20, 24)
    expected = keys_cubic(model, stored["deep.png"] / 65535, (24, 20))[..., 0]
    np.testing.assert_allclose(np.asarray(deep) / 65535, expected, atol=2e-5)
    # EXIF orientation 6: stored 12 wide x 8 high, displayed 8 wide x 12 high
    phone = Image.open(out / "phone.jpg")
    assert phone.size == (16, 24)
    upright = np.rot90(stored["phone.jpg"], k=-1) / 255
    expected = keys_cubic(model, upright, (24, 16))
    assert np.abs(np.asarray(phone) / 255 - expected).mean() < 0.03
    # grey stays one channel
    grey = Image.open(out / "grey.png")
    assert grey.mode == "L"
    expected = keys_cubic(model, stored["grey.png"] / 255, (14, 18))[..., 0]
    assert np.abs(np.asarray(grey) / 255 - expected).max() <= 1 / 255 + 1e-6
    # alpha carried; the hidden green does not bleed into the opaque red half
    logo = np.asarray(Image.open(out / "logo.png"))
    assert logo.shape == (16, 16, 4)
    assert (logo[:, :6, 3] == 255).all() and (logo[:, 10:, 3] == 0).all()
    assert (logo[:, :5, :3] == (200, 30, 30)).all()
    visible = logo[..., 3] > 0
    assert (logo[..., 1][visible] <= 40).all()
    # palette images are expanded to colour
    assert Image.open(out / "palette.png").mode == "RGB"


def test_downscale_is_antialiased(tmp_path, interpolator):
    weights, _ = interpolator
    board = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    source = tmp_path / "board.png"
    Image.fromarray(board).save(source)
    out = tmp_path / "small.png"
    result = funknn("superres", str(source), "-o", str(out), "--scale", "0.25",
                    "--weights", str(weights))
    assert result.returncode == 0, result.stderr
    small = np.asarray(Image.open(out), dtype=np.float64) / 255
    assert small.shape == (8, 8)
    assert np.abs(small - 0.5).max() <= 0.01


def test_outputs_checked_before_any_work(tmp_path, interpolator):
    weights, _ = interpolator
    source = tmp_path / "a.png"
    Image.fromarray(np.full((6, 6, 3), 90, np.uint8)).save(source)
    before = source.read_bytes()
    # the input is never overwritten unless asked
    result = funknn("superres", str(source), "-o", str(source), "--scale", "2",
                    "--weights", str(weights))
    assert result.returncode == 2 and "is an input" in result.stderr
    assert source.read_bytes() == before
    result = funknn("superres", str(source), "-o", str(source), "--scale", "2",
                    "--weights", str(weights), "--if-exists", "overwrite")
    assert result.returncode == 0 and Image.open(source).size == (12, 12)
    # an output folder that cannot be written: one line naming it, before rendering
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = funknn("superres", str(source), "-o", str(blocker / "x.png"), "--size",
                    "20000x20000", "--weights", str(weights))
    assert one_line_error(result, "cannot write in", str(blocker)), result.stderr
    # a corrupt (truncated) file: one line naming it
    broken = tmp_path / "broken.png"
    broken.write_bytes(before[: len(before) // 2])
    result = funknn("superres", str(broken), "-o", str(tmp_path / "o.png"), "--scale", "2",
                    "--weights", str(weights))
    assert one_line_error(result, "cannot read image", "broken.png"), result.stderr
    # --if-exists error / skip, several inputs into a folder
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(before)
    result = funknn("superres", str(source), str(broken), "-o", str(out), "--scale", "2",
                    "--weights", str(weights), "--if-exists", "error")
    assert result.returncode == 2 and "exists" in result.stderr
    result = funknn("superres", str(source), "-o", str(out), "--scale", "2",
                    "--weights", str(weights), "--if-exists", "skip")
    assert result.returncode == 0 and "skipped" in result.stdout
    assert (out / "a.png").read_bytes() == before


def test_a_read_only_existing_folder_is_refused_before_work(tmp_path, interpolator):
    read_only = Path("/sys")  # a folder even root cannot create files in (where it is so)
    try:
        tempfile.NamedTemporaryFile(dir=read_only).close()
        pytest.skip(f"{read_only} is writable here")
    except OSError:
        pass
    weights, _ = interpolator
    source = tmp_path / "a.png"
    Image.fromarray(np.full((6, 6, 3), 90, np.uint8)).save(source)
    result = funknn("superres", str(source), "-o", str(read_only / "x.png"), "--scale", "2",
                    "--weights", str(weights))
    assert one_line_error(result, "cannot write in /sys"), result.stderr


def test_jpeg_quality(tmp_path, interpolator):
    weights, _ = interpolator
    source = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (16, 16, 3), np.uint8)).save(source)
    sizes = {}
    for quality in ("20", "95"):
        out = tmp_path / f"q{quality}.jpg"
        result = funknn("superres", str(source), "-o", str(out), "--scale", "2",
                        "--weights", str(weights), "--jpeg-quality", quality)
        assert result.returncode == 0, result.stderr
        sizes[quality] = out.stat().st_size
    assert sizes["20"] < sizes["95"] / 2
