"""Tests for funknn_fast.models.checkpoint: round trip, format version, refused files."""

from __future__ import annotations

import json

import pytest
import torch

from funknn_fast.models.checkpoint import (
    DEFAULT_WEIGHTS,
    DERIVATIVES_WEIGHTS,
    FORMAT_VERSION,
    WeightsError,
    load_model,
    read_metadata,
    save_model,
)
from funknn_fast.models.funknn import FunkNN


def test_round_trip_keeps_weights_config_and_metadata(tmp_path):
    torch.manual_seed(0)
    model = FunkNN(3, "mlp", patch_size=5)
    tensor_path, json_path = save_model(model, tmp_path / "w", {"step": 7})
    loaded = load_model(tensor_path)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    info = json.loads(json_path.read_text())
    assert info["format_version"] == FORMAT_VERSION and info["step"] == 7
    assert info["model"]["patch_size"] == 5
    assert not list(tmp_path.glob(".*tmp"))


def test_metadata_cannot_override_the_format_version(tmp_path):
    _, json_path = save_model(FunkNN(3, "mlp"), tmp_path / "w", {"format_version": 1})
    assert json.loads(json_path.read_text())["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("version", [None, 1, 3, "2"])
def test_other_format_versions_are_refused(tmp_path, version):
    _, json_path = save_model(FunkNN(3, "mlp"), tmp_path / "w")
    info = json.loads(json_path.read_text())
    if version is None:
        del info["format_version"]  # files written before the field existed are version 1
    else:
        info["format_version"] = version
    json_path.write_text(json.dumps(info))
    with pytest.raises(WeightsError, match="format_version"):
        load_model(tmp_path / "w")


def test_shipped_weights_are_current():
    for path in (DEFAULT_WEIGHTS, DERIVATIVES_WEIGHTS):
        assert read_metadata(path)["format_version"] == FORMAT_VERSION
    model = load_model()  # rendering default: the lattice variant (121,091 trained + step)
    assert model.variant == "lattice"
    assert sum(p.numel() for p in model.parameters()) == 121_093
    cnn = load_model(DERIVATIVES_WEIGHTS)
    assert cnn.variant == "cnn" and sum(p.numel() for p in cnn.parameters()) == 140_933
