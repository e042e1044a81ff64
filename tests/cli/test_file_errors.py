"""Corrupt or inconsistent weights and prior files: one line naming the file, exit status 2."""

from __future__ import annotations

import json

import numpy as np
import torch
from _entry_point import funknn, one_line_error
from PIL import Image

from funknn_fast.models.checkpoint import save_model
from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior.generator import DEFAULT_PRIOR


def test_weights_json_with_wrong_fields(tmp_path):
    torch.manual_seed(0)
    save_model(FunkNN(3, "cnn"), tmp_path / "w")
    config = tmp_path / "w.json"
    photo = tmp_path / "p.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(photo)
    info = json.loads(config.read_text())
    for field, value, message in (("train", "factor", "'train' must be a JSON object"),
                                  ("model", {**info["model"], "padding": "mirror"},
                                   "padding must be one of")):
        config.write_text(json.dumps({**info, field: value}))
        result = funknn("superres", str(photo), "-o", str(tmp_path / "o.png"), "--scale", "2",
                        "--weights", str(tmp_path / "w"))
        assert one_line_error(result, str(config), message), result.stderr
        assert not (tmp_path / "o.png").exists()


def test_prior_files_garbage_and_truncated(tmp_path):
    prior = tmp_path / "prior"
    prior.with_suffix(".json").write_text("{garbage")
    result = funknn("sample", "--weights", str(prior), "-o", str(tmp_path / "s.png"))
    assert one_line_error(result, str(prior.with_suffix(".json")), "not valid JSON")
    prior.with_suffix(".json").write_text(DEFAULT_PRIOR.with_suffix(".json").read_text())
    prior.with_suffix(".safetensors").write_bytes(b"\x08" + b"\x00" * 20)
    result = funknn("sample", "--weights", str(prior), "-o", str(tmp_path / "s.png"))
    assert one_line_error(result, str(prior.with_suffix(".safetensors")), "corrupt")
