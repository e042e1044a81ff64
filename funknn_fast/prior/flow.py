"""RealNVP normalizing flow on auto-encoder latents, built from ``zuko`` (a maintained library).

``LatentFlow(features=L)`` models latents ``w (B, L)``; its base variable is ``z ~ N(0, I_L)``.
Layers, data side first: a fixed standardisation ``(w - mean) / std`` (buffers set from training
latents by :meth:`LatentFlow.set_normalization`, the data-dependent ActNorm initialisation), then
``couplings`` times an ActNorm (learnable per-feature affine map, zuko's
``MonotonicAffineTransform`` made unconditional, initialised to the identity) followed by an
affine coupling layer (``zuko.flows.GeneralCouplingTransform``; alternating masks; MLP with
``hidden`` layers). zuko supplies the couplings, the exact log-determinants and the analytic
inverses; nothing is hand-written but the standardisation.

* :meth:`log_prob` ``w (B, L) -> (B,)`` exact log-likelihood (the standardisation included).
* :meth:`to_base` ``w -> z`` and :meth:`from_base` ``z -> w`` (inverse of each other, both
  differentiable; ``from_base`` is the generator's first stage in the inverse problems).
* :meth:`sample` ``n -> w (n, L)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import zuko
from torch import nn
from zuko.flows import Flow, GeneralCouplingTransform, UnconditionalDistribution
from zuko.flows.core import UnconditionalTransform
from zuko.transforms import MonotonicAffineTransform


class LatentFlow(nn.Module):
    def __init__(
        self, features: int, couplings: int = 5, hidden: Sequence[int] = (256, 256)
    ) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"features must be >= 2 for coupling layers, got {features}")
        if couplings < 1:
            raise ValueError(f"couplings must be >= 1, got {couplings}")
        self.features, self.couplings, self.hidden = features, couplings, tuple(hidden)
        transforms = []
        for k in range(couplings):
            transforms.append(
                UnconditionalTransform(
                    MonotonicAffineTransform, torch.zeros(features), torch.zeros(features)
                )
            )
            mask = torch.arange(features) % 2 == k % 2
            transforms.append(
                GeneralCouplingTransform(features, mask=mask, hidden_features=tuple(hidden))
            )
        base = UnconditionalDistribution(
            zuko.distributions.DiagNormal,
            torch.zeros(features),
            torch.ones(features),
            buffer=True,
        )
        self.flow = Flow(transforms, base)
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def config(self) -> dict[str, Any]:
        return {"features": self.features, "couplings": self.couplings, "hidden": list(self.hidden)}

    def _check(self, x: torch.Tensor, name: str) -> None:
        if x.dim() != 2 or x.shape[1] != self.features:
            raise ValueError(f"{name} must have shape (B, {self.features}), got {tuple(x.shape)}")

    @torch.no_grad()
    def set_normalization(self, latents: torch.Tensor) -> None:
        """Standardise with the per-feature mean and std of training ``latents (N, L)``."""
        self._check(latents, "latents")
        self.mean.copy_(latents.mean(0))
        self.std.copy_(latents.std(0).clamp_min(1e-6))

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        self._check(w, "w")
        standard = (w - self.mean) / self.std
        return self.flow().log_prob(standard) - self.std.log().sum()

    def to_base(self, w: torch.Tensor) -> torch.Tensor:
        self._check(w, "w")
        return self.flow().transform((w - self.mean) / self.std)

    def from_base(self, z: torch.Tensor) -> torch.Tensor:
        self._check(z, "z")
        return self.flow().transform.inv(z) * self.std + self.mean

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` latents ``(count, L)`` on the flow's device; the base draw is made on the
        device of ``generator`` (the CPU by default), so a seed gives the same draw everywhere."""
        source = "cpu" if generator is None else generator.device
        z = torch.randn(count, self.features, generator=generator, dtype=self.mean.dtype,
                        device=source)
        z = z.to(self.mean.device)
        return self.from_base(z)
