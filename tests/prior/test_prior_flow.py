"""The zuko RealNVP latent flow: exact likelihood, inverse consistency, fitting."""

import pytest
import torch

from funknn_fast.prior.flow import LatentFlow


def _flow() -> LatentFlow:
    torch.manual_seed(0)
    flow = LatentFlow(6, couplings=3, hidden=(16,)).double()
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(64, 6, generator=generator, dtype=torch.float64) * 2.0 + 0.5
    flow.set_normalization(latents)
    # move away from the identity initialisation
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator,
                                             dtype=parameter.dtype))
    return flow


def test_log_prob_is_the_change_of_variables_formula():
    flow = _flow()
    generator = torch.Generator().manual_seed(2)
    w = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    for k in range(3):
        point = w[k : k + 1]
        jacobian = torch.autograd.functional.jacobian(flow.to_base, point)[0, :, 0, :]
        z = flow.to_base(point)[0]
        expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum() + torch.logdet(jacobian)
        torch.testing.assert_close(flow.log_prob(point)[0], expected)


def test_to_base_and_from_base_are_inverse():
    flow = _flow()
    generator = torch.Generator().manual_seed(3)
    w = torch.randn(10, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(flow.from_base(flow.to_base(w)), w)
    z = torch.randn(10, 6, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(flow.to_base(flow.from_base(z)), z)
    assert flow.sample(4, generator).shape == (4, 6)


def test_maximum_likelihood_steps_raise_the_likelihood():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(4)
    base = torch.randn(256, 4, generator=generator)
    latents = torch.stack([base[:, 0], base[:, 0] ** 2 + 0.3 * base[:, 1], base[:, 2],
                           -base[:, 2] + 0.2 * base[:, 3]], dim=1)
    flow = LatentFlow(4, couplings=4, hidden=(32, 32))
    flow.set_normalization(latents)
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    first = -flow.log_prob(latents).mean().item()
    for _ in range(40):
        loss = -flow.log_prob(latents).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert -flow.log_prob(latents).mean().item() < first - 0.3


def test_bad_shapes():
    flow = LatentFlow(4, couplings=1, hidden=(8,))
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        flow.log_prob(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="features"):
        LatentFlow(1)
