"""The continuous prior bundle: generation, rendering, files."""

import pytest
import torch

from funknn_fast.models.funknn import FunkNN
from funknn_fast.prior.autoencoder import AutoEncoder
from funknn_fast.prior.flow import LatentFlow
from funknn_fast.prior.generator import (
    ContinuousPrior,
    PriorFileError,
    load_prior,
    save_parts,
)
from funknn_fast.prior.phantoms import pixel_centers


def tiny_prior() -> ContinuousPrior:
    torch.manual_seed(0)
    return ContinuousPrior(AutoEncoder(16, (4, 4), 4), LatentFlow(4, 1, (8,)),
                           FunkNN(channels=1, variant="mlp")).eval()


def test_generate_render_and_sample_shapes():
    prior = tiny_prior()
    z = torch.randn(2, 4)
    images = prior.generate(z)
    assert images.shape == (2, 1, 16, 16)
    with torch.no_grad():
        rendered = prior.render(images, 12, chunk=50)
        direct = prior.field(pixel_centers(12, 2), images)
        torch.testing.assert_close(rendered.reshape(2, 144), direct[..., 0])
        assert prior.sample(3, 8).shape == (3, 1, 8, 8)


def test_files_round_trip(tmp_path):
    prior = tiny_prior()
    save_parts(tmp_path / "p", {"autoencoder": prior.autoencoder, "flow": prior.flow,
                                "funknn": prior.funknn}, {"phantoms": {"size": 16}})
    loaded = load_prior(tmp_path / "p.safetensors")
    assert loaded.info["phantoms"] == {"size": 16}
    for written in ("p.safetensors", "p.json"):  # readable by all, like any installed data file
        assert (tmp_path / written).stat().st_mode & 0o044 == 0o044, written
    z = torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded.render(loaded.generate(z), 8),
                                   prior.render(prior.generate(z), 8))


def test_missing_or_mismatched_files(tmp_path):
    with pytest.raises(PriorFileError, match="no prior"):
        load_prior(tmp_path / "absent")
    prior = tiny_prior()
    save_parts(tmp_path / "p", {"autoencoder": prior.autoencoder, "flow": prior.flow,
                                "funknn": prior.funknn}, {})
    text = (tmp_path / "p.json").read_text().replace('"latent": 4', '"latent": 5')
    (tmp_path / "p.json").write_text(text)
    with pytest.raises(PriorFileError, match="do not match"):
        load_prior(tmp_path / "p")
    with pytest.raises(ValueError, match="latent size"):
        ContinuousPrior(AutoEncoder(16, (4, 4), 4), LatentFlow(5, 1, (8,)), FunkNN(channels=1))
