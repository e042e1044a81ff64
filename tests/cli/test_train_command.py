"""``funknn train`` run folders through the installed entry point: no silent overwrite, resume
only a readable checkpoint with the recorded settings (``superres.run_folder``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _entry_point import funknn, one_line_error
from PIL import Image

TINY = ["--crop-size", "8", "--batch-size", "2", "--queries", "3", "--warmup", "1",
        "--checkpoint-every", "1", "--threads", "1", "--quiet"]


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "a.png")
    return folder


def train(run, images, *extra: str):
    return funknn("train", "-o", str(run), "--data", str(images), *TINY, *extra)


def test_resume_refuses_changes_and_runs_are_not_overwritten(tmp_path, images):
    run = tmp_path / "run"
    assert train(run, images, "--steps", "1").returncode == 0
    first_log = (run / "log.jsonl").read_text()
    # a new run into it: refused, nothing touched
    assert one_line_error(train(run, images, "--steps", "1"), "already holds a training run")
    assert (run / "log.jsonl").read_text() == first_log
    # resume with another setting: refused unless --allow-changes
    changed = funknn("train", "-o", str(run), "--resume", "--lr", "0.5", "--steps", "2",
                     "--threads", "1", "--quiet")
    assert one_line_error(changed, "other settings", "lr: 0.001 -> 0.5"), changed.stderr
    # resume without options takes the recorded ones (--steps 2 is a change, accepted here)
    result = funknn("train", "-o", str(run), "--resume", "--steps", "2", "--allow-changes",
                    "--threads", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    info = json.loads((run / "checkpoint.json").read_text())
    assert info["step"] == 2 and info["train"]["crop_size"] == 8
    assert info["train"]["data"] == str(images)
    # --overwrite starts again
    assert train(run, images, "--steps", "1", "--overwrite").returncode == 0
    assert json.loads((run / "checkpoint.json").read_text())["step"] == 1


def test_resume_needs_a_readable_matching_checkpoint(tmp_path, images):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_line_error(train(empty, images, "--resume"), "no checkpoint", str(empty))
    run = tmp_path / "run"
    assert train(run, images, "--steps", "1", "--variant", "mlp").returncode == 0
    # another variant's checkpoint: the recorded variant differs...
    assert one_line_error(train(run, images, "--resume", "--variant", "cnn", "--steps", "1"),
                          "variant: 'mlp' -> 'cnn'")
    # ... and forcing it gives one line, not a state_dict traceback
    forced = train(run, images, "--resume", "--variant", "cnn", "--allow-changes")
    assert one_line_error(forced, "checkpoint.safetensors", "does not match"), forced.stderr
    # truncated tensors, then an empty JSON object
    tensors = run / "checkpoint.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])
    assert one_line_error(train(run, images, "--resume"), str(tensors), "corrupt")
    (run / "checkpoint.json").write_text("{}")
    assert one_line_error(train(run, images, "--resume"), "checkpoint.json", "step")
