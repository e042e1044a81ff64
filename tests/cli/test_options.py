"""One option vocabulary across the ``funknn`` commands: -o/--output, --device, --dtype, help
without markup, output checks before work, missing extras named."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from _entry_point import funknn, one_line_error
from PIL import Image

from funknn_fast.cli import COMMANDS, build_parser, main
from funknn_fast.models.checkpoint import save_model
from funknn_fast.models.funknn import FunkNN


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "``" not in text
    parser = build_parser([command])
    sub = parser._subparsers._group_actions[0].choices[command]
    options = {s for action in sub._actions for s in action.option_strings}
    if command != "eval":  # eval's two optional outputs are --results and --figure
        assert "--output" in options and "-o" in options
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    assert "--device" in options


@pytest.fixture()
def weights(tmp_path):
    torch.manual_seed(0)
    save_model(FunkNN(3, "cnn"), tmp_path / "w")
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 6, 3), np.uint8)).save(photo)
    return tmp_path / "w", photo


def test_device_and_dtype(tmp_path, weights):
    stem, photo = weights
    outputs = {}
    for dtype in ("float32", "float64"):
        outputs[dtype] = tmp_path / f"{dtype}.png"
        result = funknn("superres", str(photo), "-o", str(outputs[dtype]), "--scale", "2",
                        "--weights", str(stem), "--device", "cpu", "--dtype", dtype, "--quiet")
        assert result.returncode == 0, result.stderr
    pair = [np.asarray(Image.open(outputs[d]), dtype=np.int16) for d in outputs]
    assert np.abs(pair[0] - pair[1]).max() <= 1
    maps = tmp_path / "new" / "folder" / "maps.png"  # folders are created
    result = funknn("derivatives", str(photo), "-o", str(maps), "--weights", str(stem),
                    "--dtype", "float64", "--quiet")
    assert result.returncode == 0 and maps.is_file(), result.stderr
    if not torch.cuda.is_available():
        result = funknn("superres", str(photo), "-o", str(tmp_path / "c.png"), "--scale", "2",
                        "--weights", str(stem), "--device", "cuda")
        assert one_line_error(result, "--device cuda", "no CUDA device")


def test_outputs_checked_before_work(tmp_path, weights, capsys):
    stem, photo = weights
    for argv in (["sample", "-o", str(tmp_path / "s.txt")],
                 ["derivatives", str(photo), "-o", str(tmp_path / "d.jpg"), "--weights",
                  str(stem)],
                 ["eval", "--results", str(tmp_path / "r.txt"), "--weights", str(stem)]):
        assert main(argv) == 2
        assert "must end in" in capsys.readouterr().err
    assert not list(tmp_path.glob("[sdr].*"))


def test_a_missing_extra_names_the_pip_extra(tmp_path):
    code = ("import sys\nsys.modules['zuko'] = None\nfrom funknn_fast.cli import main\n"
            f"sys.exit(main(['sample', '-o', {str(tmp_path / 's.png')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert one_line_error(result, 'pip install "funknn_fast[prior]"'), result.stderr


def test_progress_bars_and_quiet(tmp_path, weights, capsys):
    stem, photo = weights
    maps = str(tmp_path / "maps.png")
    for quiet in ([], ["--quiet"]):
        assert main(["derivatives", str(photo), "-o", maps, "--weights", str(stem), *quiet]) == 0
        assert ("derivatives 10x12" in capsys.readouterr().err) != bool(quiet)
        assert main(["eval", "--images", str(photo), "--scales", "2", "--recursive-scales",
                     "--crop", "4", "--weights", str(stem), *quiet]) == 0
        assert ("eval:" in capsys.readouterr().err) != bool(quiet)
