"""`funknn superres` with lattice weights: shipped models by name, shared engine and --no-shared."""

import numpy as np
import pytest
from PIL import Image

from funknn_fast.cli import main
from funknn_fast.models.checkpoint import resolve_weights, shipped_models
from funknn_fast.superres import grid_render

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shipped_names_resolve():
    names = shipped_models()
    assert "funknn_cnn_continuous" in names and "funknn_lattice_bundled" in names
    assert resolve_weights("funknn_lattice_bundled").is_file()
    assert str(resolve_weights("some/other.safetensors")) == "some/other.safetensors"


def test_superres_lattice_shared_and_per_query(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)).save(photo)
    calls = []
    original = grid_render.render_grid

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(grid_render, "render_grid", spy)
    outputs = []
    for extra in ([], ["--no-shared"]):
        out = tmp_path / f"out{len(extra)}.png"
        assert main(["superres", str(photo), "-o", str(out), "--scale", "3", "--quiet",
                     "--model", "funknn_lattice_bundled", *extra]) == 0
        outputs.append(np.asarray(Image.open(out)).astype(int))
        assert len(calls) == 1  # only the first run used the engine
    assert outputs[0].shape == (21, 27, 3)
    # the two paths agree to float rounding: at most one 8-bit level where a value sits at .5
    assert np.abs(outputs[0] - outputs[1]).max() <= 1
