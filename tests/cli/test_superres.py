"""`funknn superres`, `funknn eval`, `funknn train` through the CLI, errors included."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from funknn_fast.cli import main
from funknn_fast.models.checkpoint import load_model, save_model
from funknn_fast.models.funknn import FunkNN
from funknn_fast.superres.data import load_image


@pytest.fixture()
def weights(tmp_path):
    torch.manual_seed(0)
    model = FunkNN(3, "cnn")
    save_model(model, tmp_path / "w", {"train": {"mode": "continuous"}})
    return tmp_path / "w.safetensors"


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(path)
    return path


def test_superres_scale_and_size(tmp_path, weights, photo, capsys):
    out = tmp_path / "big.png"
    assert main(["superres", str(photo), "-o", str(out), "--scale", "2.5",
                 "--weights", str(weights)]) == 0
    image = load_image(out)
    assert image.shape == (3, 15, 20)
    assert main(["superres", str(photo), "-o", str(out), "--size", "13x9",
                 "--weights", str(weights)]) == 0
    assert load_image(out).shape == (3, 9, 13)
    assert not list(tmp_path.glob(".*tmp"))
    # the output is the model's rendering
    from funknn_fast.superres.inference import render

    expected = render(load_model(weights), load_image(photo), size=(9, 13)).clamp(0, 1)
    assert (load_image(out) - expected).abs().max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.png", "--scale", "2"], "image file not found"),
        (["{photo}", "--scale", "0"], "scale"),
        (["{photo}", "--scale", "-2"], "scale"),
        (["{photo}", "--size", "10"], "WIDTHxHEIGHT"),
        (["{photo}", "--size", "0x5"], "at least 1x1"),
        (["{photo}"], "--scale S or --size"),
        (["{bad}", "--scale", "2"], "cannot read image"),
    ],
)
def test_superres_user_errors(tmp_path, weights, photo, capsys, args, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    args = [a.format(photo=photo, bad=bad) for a in args]
    out = tmp_path / "o.png"
    assert main(["superres", *args, "-o", str(out), "--weights", str(weights)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_superres_weight_errors(tmp_path, weights, photo, capsys):
    out = str(tmp_path / "o.png")
    assert main(["superres", str(photo), "-o", out, "--scale", "2",
                 "--weights", str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 40)
    (tmp_path / "corrupt.json").write_text(weights.with_suffix(".json").read_text())
    assert main(["superres", str(photo), "-o", out, "--scale", "2",
                 "--weights", str(corrupt)]) == 2
    assert "corrupt" in capsys.readouterr().err
    (tmp_path / "corrupt.json").write_text("{not json")
    assert main(["superres", str(photo), "-o", out, "--scale", "2",
                 "--weights", str(corrupt)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    mlp = tmp_path / "mlp"
    save_model(FunkNN(3, "mlp"), mlp)
    info = json.loads((tmp_path / "mlp.json").read_text())
    info["model"]["variant"] = "cnn"
    (tmp_path / "mlp.json").write_text(json.dumps(info))
    assert main(["superres", str(photo), "-o", out, "--scale", "2",
                 "--weights", str(mlp)]) == 2
    assert "does not match" in capsys.readouterr().err
    assert main(["superres", str(photo), "-o", str(tmp_path / "o.gif"), "--scale", "2",
                 "--weights", str(weights)]) == 2
    # missing output folders are created (as by every funknn command)
    assert main(["superres", str(photo), "-o", str(tmp_path / "no" / "o.png"), "--scale", "2",
                 "--weights", str(weights)]) == 0
    assert (tmp_path / "no" / "o.png").is_file()


def test_demo_writes_pngs_and_figure(tmp_path, weights, capsys):
    out = tmp_path / "demo"
    assert main(["superres", "--demo", "-o", str(out), "--weights", str(weights),
                 "--demo-crop", "28"]) == 0
    text = capsys.readouterr().out
    assert "x3.5" in text and "x4" in text and "PSNR" in text
    names = {p.name for p in out.iterdir()}
    assert {"superres_demo.png", "astronaut_truth.png", "astronaut_x3.5_funknn.png",
            "astronaut_x4_bicubic.png", "astronaut_x4_input.png"} <= names
    assert load_image(out / "astronaut_x3.5_input.png").shape == (3, 8, 8)


def test_demo_gains_of_the_shipped_default(tmp_path, capsys):
    """The README's demo numbers with the default weights (Pillow-bicubic inputs, held-out
    astronaut crop): measured +1.02 / +0.92 dB; the previous default gave +0.98 / +0.87."""
    assert main(["superres", "--demo", "-o", str(tmp_path), "--quiet", "--threads", "1"]) == 0
    gains = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("x") and cells[0] != "x":
            gains[cells[0]] = float(cells[4])
    assert gains["x3.5"] >= 1.00 and gains["x4"] >= 0.90, gains


def test_eval_writes_table_and_figure(tmp_path, weights, capsys):
    results = tmp_path / "quality.md"
    figure = tmp_path / "side.png"
    assert main(["eval", "--weights", str(weights), "--images", "coffee", "--scales", "2",
                 "--recursive-scales", "4", "--crop", "16", "--results", str(results),
                 "--figure", str(figure)]) == 0
    text = results.read_text()
    assert "| x2 | bicubic |" in text and "| x4 | funknn |" in text
    assert figure.stat().st_size > 0
    assert main(["eval", "--weights", str(weights), "--recursive-scales", "3"]) == 2
    assert "powers of 2" in capsys.readouterr().err


def _table_row(text: str, scale: int, method: str) -> list[float]:
    """The numbers of the ``| x<scale> | <method> | ...`` row of a Markdown table in ``text``."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[:2] == [f"x{scale}", method]:
            return [float(cell) for cell in cells[2:]]
    raise AssertionError(f"no x{scale} {method} row in:\n{text}")


def test_eval_numbers_are_the_metrics_of_the_protocol(tmp_path, weights, capsys):
    """The PSNR and SNR that ``funknn eval`` prints and writes for bilinear and bicubic equal
    the protocol computed here with torch alone: centre crop, antialiased bilinear downscale,
    upsampling, clamp, ``10 log10(1 / MSE)`` and ``10 log10(|x|^2 / |x - y|^2)``."""
    rng = np.random.default_rng(3)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(22, 20, 3)), 0), 1)
    pixels = np.uint8(255 * (smooth - smooth.min()) / np.ptp(smooth))
    path = tmp_path / "smooth.png"
    Image.fromarray(pixels).save(path)
    results = tmp_path / "quality.md"
    assert main(["eval", "--weights", str(weights), "--images", str(path), "--scales", "2",
                 "--recursive-scales", "--crop", "16", "--results", str(results),
                 "--quiet"]) == 0
    printed, written = capsys.readouterr().out, results.read_text()
    truth = torch.from_numpy(pixels[3:19, 2:18]).double().permute(2, 0, 1).unsqueeze(0) / 255
    low = torch.nn.functional.interpolate(truth.float(), size=(8, 8), mode="bilinear",
                                          antialias=True, align_corners=False)
    for method in ("bilinear", "bicubic"):
        up = torch.nn.functional.interpolate(low, size=(16, 16), mode=method,
                                             align_corners=False).clamp(0, 1).double()
        psnr = 10 * np.log10(1 / (up - truth).pow(2).mean().item())
        snr = 10 * np.log10(truth.pow(2).sum().item() / (up - truth).pow(2).sum().item())
        for text in (printed, written):
            row = _table_row(text, 2, method)
            assert row[:2] == pytest.approx([psnr, snr], abs=0.006), (method, row)
    assert 10 < psnr < 60  # a meaningful number, not a degenerate image
