"""VAE: a variational autoencoder over mixed real-valued and discrete slots.

An encoder q(z | x, c) = N(mu, diag sigma^2) reads [x, one-hot(c)]; a decoder maps z ~ N(0, I) to a
Gaussian per real-valued slot and a categorical per discrete slot, independent given z:

    p(x, c | z) = prod_d N(x_d; m_d(z), s_d(z)^2) * prod_k Cat(c_k; softmax(l_k(z))).

Training maximises the ELBO (beta = 1, so it is an honest bound). ``log_prob`` is the
importance-weighted bound (IWAE) with ``iw_samples`` samples: a stochastic *lower bound* on
log p(x, c) in expectation, tighter than the ELBO and converging to log p as the number of samples
grows; hence ``likelihood = "bound"``.

References:
    | Auto-Encoding Variational Bayes (Kingma & Welling, 2014)
    | https://arxiv.org/abs/1312.6114
    | Importance Weighted Autoencoders (Burda et al., 2016)
    | https://arxiv.org/abs/1509.00519

Example:
    >>> vae = VAE(Spec(n_continuous=2, cardinalities=(3,)), latent_dim=4, hidden=(32, 32))
    >>> batch = vae.sample(4, generator=torch.Generator().manual_seed(0))
    >>> vae.log_prob(batch).shape            # IWAE lower bound, nats
    torch.Size([4])
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from ..core import (Batch, GenerativeModule, Likelihood, Spec, check_int, check_sample_args, check_spec,
                    check_widths, unpack)
from ..nets.mlp import mlp, one_hot_slots, soft_clamp

# Decoder log-scales live in [LOG_SCALE_MIN, LOG_SCALE_MAX] (tensor units are standardised): the lower
# end stops the density of a slot collapsing onto single training values, the upper end is loose.
LOG_SCALE_MIN, LOG_SCALE_MAX = -6.0, 3.0
_LOG_2PI = math.log(2 * math.pi)


def normal_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    return -0.5 * ((x - mean) * torch.exp(-log_scale)) ** 2 - log_scale - 0.5 * _LOG_2PI


class VAE(GenerativeModule):
    """Gaussian-latent VAE with a Gaussian/categorical decoder; log_prob is the IWAE lower bound.

    Arguments:
        spec: the codec's description of the tensors.
        latent_dim: width of the latent z (>= 1).
        hidden: hidden widths of the encoder and of the decoder MLPs.
        iw_samples: importance samples used by ``log_prob`` (>= 1; 1 gives the ELBO).

    References:
        | Importance Weighted Autoencoders (Burda et al., 2016)
        | https://arxiv.org/abs/1509.00519
    """

    likelihood: ClassVar[Likelihood] = "bound"
    closed_form: ClassVar[bool] = False
    modalities: ClassVar[tuple[str, ...]] = ("tabular",)

    def __init__(self, spec: Spec, latent_dim: int = 8, hidden: Sequence[int] = (128, 128), iw_samples: int = 64):
        check_spec(spec, "vae")
        latent_dim = check_int("latent_dim", latent_dim, 1)
        iw_samples = check_int("iw_samples", iw_samples, 1)
        hidden = check_widths("hidden", hidden)
        super().__init__(spec, latent_dim=latent_dim, hidden=hidden, iw_samples=iw_samples)

        self.latent_dim, self.iw_samples = latent_dim, iw_samples
        D, cards = spec.n_continuous, tuple(spec.cardinalities)
        self.offsets = [2 * D]                                      # decoder output: means, log-scales, logits
        for m in cards:
            self.offsets.append(self.offsets[-1] + m)
        self.encoder = mlp(D + sum(cards), 2 * latent_dim, hidden)
        self.decoder = mlp(latent_dim, self.offsets[-1], hidden)

    # -- the two networks -------------------------------------------------------------------------

    def encode(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std of q(z | x, c), each (B, L)."""
        x = x.to(next(self.parameters()).dtype)
        h = torch.cat([x, one_hot_slots(c, self.spec.cardinalities).to(x)], dim=-1)   # (B, D + sum m)
        mu, log_std = self.encoder(h).chunk(2, dim=-1)
        return mu, log_std

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Decoder outputs for z (..., L): means (..., D), log-scales (..., D), logits per slot (..., m_k)."""
        out = self.decoder(z)
        D = self.spec.n_continuous
        mean, log_scale = out[..., :D], soft_clamp(out[..., D:2 * D], LOG_SCALE_MIN, LOG_SCALE_MAX)
        logits = [out[..., a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]
        return mean, log_scale, logits

    def log_likelihood(self, z: Tensor, x: Tensor, c: Tensor) -> Tensor:
        """log p(x, c | z) for z (S, B, L) and data (B, ·): (S, B)."""
        mean, log_scale, logits = self.decode(z)
        ll = normal_log_prob(x, mean, log_scale).sum(dim=-1)                # (S, B)
        for k, lg in enumerate(logits):
            idx = c[:, k].expand(lg.shape[:-1]).unsqueeze(-1)               # (S, B, 1)
            ll = ll + lg.log_softmax(dim=-1).gather(-1, idx).squeeze(-1)
        return ll

    # -- bounds on log p --------------------------------------------------------------------------

    def elbo(self, batch: Batch, n_samples: int = 1) -> Tensor:
        """ELBO per example, (B,): Monte Carlo E_q[log p(x, c | z)] minus the analytic KL(q || N(0, I))."""
        x, c = unpack(self.spec, batch)
        mu, log_std = self.encode(x, c)                                     # (B, L)
        eps = torch.randn((n_samples, *mu.shape), dtype=mu.dtype, device=mu.device)
        z = mu + log_std.exp() * eps                                        # (S, B, L) reparametrised
        rec = self.log_likelihood(z, x, c).mean(dim=0)                      # (B,)
        kl = 0.5 * (mu ** 2 + torch.exp(2 * log_std) - 1 - 2 * log_std).sum(dim=-1)
        return rec - kl

    def iwae(self, batch: Batch, n_samples: int | None = None) -> Tensor:
        """Importance-weighted bound log (1/S) sum_s p(x, c, z_s) / q(z_s | x, c), (B,).

        A lower bound on log p(x, c) in expectation over z_s ~ q; computed in chunks of samples so
        memory stays bounded (about 2**15 decoder rows at a time).
        """
        S = self.iw_samples if n_samples is None else check_int("n_samples", n_samples, 1)
        x, c = unpack(self.spec, batch)
        mu, log_std = self.encode(x, c)                                     # (B, L)
        std = log_std.exp()
        chunk = max(1, min(S, 2 ** 15 // max(1, x.shape[0])))
        log_w = []
        for start in range(0, S, chunk):
            s = min(chunk, S - start)
            eps = torch.randn((s, *mu.shape), dtype=mu.dtype, device=mu.device)
            z = mu + std * eps                                              # (s, B, L)
            log_pz = (-0.5 * z ** 2 - 0.5 * _LOG_2PI).sum(dim=-1)           # (s, B)
            log_qz = (-0.5 * eps ** 2 - log_std - 0.5 * _LOG_2PI).sum(dim=-1)
            log_w.append(self.log_likelihood(z, x, c) + log_pz - log_qz)
        return torch.logsumexp(torch.cat(log_w, dim=0), dim=0) - math.log(S)

    # -- the GenerativeModule interface -----------------------------------------------------------

    def loss(self, batch: Batch) -> Tensor:
        return -self.elbo(batch).mean()

    def log_prob(self, batch: Batch) -> Tensor:
        """IWAE lower bound on log p(x, c) with ``iw_samples`` samples (uses the global torch RNG)."""
        return self.iwae(batch)

    @torch.no_grad()
    def sample(self, n: int, *, condition: Batch | None = None,
               generator: torch.Generator | None = None) -> Batch:
        n = check_sample_args("vae", n, condition)
        p = next(self.parameters())
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype, device=p.device)   # (n, L)
        mean, log_scale, logits = self.decode(z)
        x = mean + log_scale.exp() * torch.randn(mean.shape, generator=generator, dtype=p.dtype, device=p.device)
        c = torch.zeros(n, len(logits), dtype=torch.long, device=p.device)
        for k, lg in enumerate(logits):
            c[:, k] = torch.multinomial(lg.softmax(dim=-1), 1, generator=generator).squeeze(1)
        return {"x": x, "c": c}
