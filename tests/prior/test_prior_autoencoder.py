"""Auto-encoder shapes, the Laplacian-pyramid loss and a few training steps."""

import pytest
import torch

from funknn_fast.prior.autoencoder import (
    AutoEncoder,
    laplacian_pyramid,
    laplacian_pyramid_l1,
    reconstruction_loss,
)
from funknn_fast.prior.phantoms import phantom_parameters, rasterize


def test_shapes_and_config_round_trip():
    model = AutoEncoder(size=16, channels=(4, 8), latent=5)
    images = torch.randn(3, 1, 16, 16)
    assert model.encoder(images).shape == (3, 5)
    assert model(images).shape == (3, 1, 16, 16)
    assert AutoEncoder(**model.config()).config() == model.config()
    with pytest.raises(ValueError, match="multiple"):
        AutoEncoder(size=12, channels=(4, 8, 8), latent=5)
    with pytest.raises(ValueError, match="image must have shape"):
        model(torch.randn(1, 1, 8, 8))


def test_laplacian_pyramid_bands_and_its_loss():
    """Band j is ``I_j - blur(I_j)``, ``I_{j+1} = avgpool(blur(I_j))`` (not invertible: the
    pyramid does not sum back). The normalised symmetric binomial blur keeps constants (every
    band 0, the low-pass = the constant) and linear ramps away from the border (band 0 = 0
    there); the loss is ``sum_j 2^j mean |L_j(a) - L_j(b)|``."""
    constant = torch.full((1, 1, 32, 32), 0.7, dtype=torch.float64)
    bands = laplacian_pyramid(constant, levels=3)
    assert [b.shape[-1] for b in bands] == [32, 16, 8, 4]
    for band in bands[:-1]:
        assert band.abs().max() < 1e-12
    torch.testing.assert_close(bands[-1], torch.full((1, 1, 4, 4), 0.7, dtype=torch.float64))
    rows = torch.arange(32, dtype=torch.float64)
    ramp = (0.3 * rows[:, None] - 0.2 * rows[None, :]).expand(1, 1, 32, 32)
    assert laplacian_pyramid(ramp, levels=1)[0][..., 2:-2, 2:-2].abs().max() < 1e-12
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 32, 32, generator=generator, dtype=torch.float64)
    other = image + 0.1 * torch.randn(image.shape, generator=generator, dtype=torch.float64)
    expected = sum(2.0**j * (a - b).abs().mean() for j, (a, b) in enumerate(
        zip(laplacian_pyramid(image), laplacian_pyramid(other), strict=True)))
    torch.testing.assert_close(laplacian_pyramid_l1(image, other), expected)
    assert laplacian_pyramid_l1(image, image) == 0
    assert reconstruction_loss(other, image) > reconstruction_loss(image, image)


def test_a_few_adam_steps_reduce_the_loss():
    torch.manual_seed(0)
    images = rasterize(phantom_parameters(range(8)), 16, 0.1)
    model = AutoEncoder(size=16, channels=(8, 8), latent=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(10):
        loss = reconstruction_loss(model(images), images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.7 * losses[0]
